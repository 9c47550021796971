import type { z } from 'zod';
import { formatBytes, formatEta, formatHms, formatSpeed } from '../../core/format.js';
import type { JobProgress } from '../../services/updates/job-types.js';
import type { progressOutputSchema } from '../schemas/updates.js';

/** GET /progress as documented: "8.2 MB/s", "452 MB", an ETA of "00:30", elapsed "HH:MM:SS". */
export function presentProgress(p: JobProgress): z.output<typeof progressOutputSchema> {
  return {
    status: p.status,
    job_id: p.jobId,
    progress: {
      percentage: p.percentage,
      current_operation: p.currentOperation,
      speed: formatSpeed(p.speedBps),
      downloaded: formatBytes(p.bytesDone),
      total: formatBytes(p.totalBytes),
      eta: formatEta(p.etaSeconds),
    },
    update: p.update,
    elapsed_time: formatHms(p.elapsedMs / 1000),
    target_partition: p.targetSlot,
    error: p.error,
    blocked_by: p.blockedBy,
    delivery: p.delivery
      ? {
          path: p.delivery.path,
          planned: formatBytes(p.delivery.plannedBytes),
          planned_bytes: p.delivery.plannedBytes,
          wire: formatBytes(p.delivery.wireBytes),
          wire_bytes: p.delivery.wireBytes,
        }
      : null,
  };
}
