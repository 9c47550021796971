import type { z } from 'zod';
import { formatBytes, isoSeconds } from '../../core/format.js';
import type { SnapshotEntry } from '../../services/snapshots.js';
import type { snapshotListOutputSchema } from '../schemas/system-ops.js';

/** GET /snapshots: each size both as "452 MB" and in bytes, checksums prefixed, ISO-second times. */
export function presentSnapshotList(
  entries: readonly SnapshotEntry[],
  retention: number,
): z.output<typeof snapshotListOutputSchema> {
  const snapshots = entries.map((s) => ({
    id: s.id,
    name: s.name,
    description: s.description,
    version: s.version,
    kernel: s.kernel,
    source_partition: s.sourceSlot,
    size: formatBytes(s.size),
    size_bytes: s.size,
    checksum: `sha256:${s.sha256}`,
    created_at: isoSeconds(s.createdAt),
  }));
  return { snapshots, total: snapshots.length, retention };
}
