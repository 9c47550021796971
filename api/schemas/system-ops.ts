import { z } from 'zod';

/** SECTION 1 maintenance operations: system snapshots and debug bundles. */

const slotId = z.enum(['A', 'B']);

export const snapshotInputSchema = z.lazy(() =>
  z.strictObject({
    /** Also a label on disk listings and in logs: kept to a safe, shell-friendly alphabet. */
    name: z
      .string()
      .min(1)
      .max(64)
      .regex(/^[A-Za-z0-9._-]+$/, 'only letters, digits, ".", "_" and "-" are allowed'),
    description: z.string().max(500).default(''),
  }),
);
export type SnapshotInput = z.output<typeof snapshotInputSchema>;

export const snapshotOutputSchema = z.lazy(() =>
  z.object({
    snapshot_id: z.string(),
    status: z.literal('creating'),
    estimated_duration: z.string(),
    progress_url: z.string(),
  }),
);

export const snapshotListItemSchema = z.lazy(() =>
  z.object({
    id: z.string(),
    name: z.string(),
    description: z.string(),
    version: z.string(),
    kernel: z.string().nullable(),
    source_partition: slotId,
    size: z.string(),
    size_bytes: z.int(),
    checksum: z.string(),
    created_at: z.string(),
  }),
);
export const snapshotListOutputSchema = z.lazy(() =>
  z.object({
    snapshots: z.array(snapshotListItemSchema),
    total: z.int(),
    retention: z.int(),
  }),
);

export const debugBundleInputSchema = z.lazy(() =>
  z
    .strictObject({
      include_logs: z.boolean().default(true),
      include_configs: z.boolean().default(true),
      include_metrics: z.boolean().default(true),
    })
    .prefault({}),
);
export type DebugBundleInput = z.output<typeof debugBundleInputSchema>;

export const debugBundleOutputSchema = z.lazy(() =>
  z.object({
    bundle_id: z.string(),
    status: z.literal('creating'),
    estimated_size: z.string(),
    download_url: z.string(),
  }),
);

export const debugBundleDownloadInputSchema = z.lazy(() =>
  z.strictObject({ bundle_id: z.string().min(1).max(80) }),
);
export const debugBundleDownloadOutputSchema = z.lazy(() =>
  z.object({
    bundle_id: z.string(),
    filename: z.string(),
    size: z.int(),
    sha256: z.string(),
  }),
);
