import { formatBytes, formatHms } from '../../core/format.js';
import type { SlotId } from '../../core/vocabulary.js';
import type { FeedServer, UpdateListing } from '../../services/updates/catalog.js';
import type { z } from 'zod';
import type {
  AvailableUpdate,
  checkUpdatesOutputSchema,
  downloadOutputSchema,
  updatesOutputSchema,
} from '../schemas/updates.js';

/** One listed update as documented: its size as "452 MB" (with a space, unlike the partition cards). */
export function presentUpdate(u: UpdateListing): AvailableUpdate {
  return {
    id: u.id,
    version: u.version,
    type: u.type,
    severity: u.severity,
    size: formatBytes(u.sizeBytes),
    released: u.released,
    description: u.description,
    changelog: u.changelog,
    signature: u.signature,
    compatible: u.compatible,
  };
}

export function presentUpdateList(list: {
  updates: UpdateListing[];
  feed: FeedServer | null;
}): z.infer<typeof updatesOutputSchema> {
  return {
    updates: list.updates.map(presentUpdate),
    total_available: list.updates.length,
    server: list.feed?.label ?? null,
    demo_feed: list.feed?.demo ?? false,
  };
}

/** POST /check-updates: the check's duration as "00:00:30". */
export function presentUpdateCheck(c: {
  checkId: string;
  status: 'checking' | 'completed';
  server: string;
  estimatedSeconds: number;
  totalAvailable: number | null;
}): z.infer<typeof checkUpdatesOutputSchema> {
  return {
    check_id: c.checkId,
    status: c.status,
    server: c.server,
    estimated_duration: formatHms(c.estimatedSeconds),
    ...(c.totalAvailable === null ? {} : { total_available: c.totalAvailable }),
  };
}

/** POST /download: the update's size as "452 MB" and where to follow the job. */
export function presentDownloadStarted(d: {
  jobId: string;
  update: { id: string; version: string; sizeBytes: number };
  targetSlot: SlotId;
}): z.infer<typeof downloadOutputSchema> {
  return {
    job_id: d.jobId,
    status: 'downloading',
    update: { id: d.update.id, version: d.update.version, size: formatBytes(d.update.sizeBytes) },
    target_partition: d.targetSlot,
    progress_url: `/api/v1/ota/progress?job_id=${d.jobId}`,
  };
}
