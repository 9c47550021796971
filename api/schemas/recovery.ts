import { z } from 'zod';
import { pinAttemptSchema } from './safety.js';

const slotId = z.enum(['A', 'B']);

export const rollbackInputSchema = z.lazy(() =>
  z.strictObject({
    action: z.enum(['rollback_to_a', 'rollback_to_b']),
    reason: z.string().min(1).max(500).default('Operator rollback'),
  }),
);
export const rollbackOutputSchema = z.lazy(() =>
  z.object({
    action: z.enum(['rollback_to_a', 'rollback_to_b']),
    status: z.literal('completed'),
    from_partition: slotId,
    to_partition: slotId,
    from_version: z.string().nullable(),
    to_version: z.string().nullable(),
    reboot_required: z.boolean(),
  }),
);

export const restoreInputSchema = z.lazy(() =>
  z.strictObject({
    version: z.string().min(1).max(64),
    target_partition: slotId.optional(),
  }),
);
export const restoreOutputSchema = z.lazy(() =>
  z.object({
    job_id: z.string(),
    status: z.literal('restoring'),
    version: z.string(),
    target_partition: slotId,
    snapshot_id: z.string(),
    progress_url: z.string(),
  }),
);

export const factoryInputSchema = z.lazy(() =>
  z.strictObject({
    pin: pinAttemptSchema,
    confirm: z.literal(true, { message: 'a factory reset must be confirmed with confirm: true' }),
    wipe_data: z.boolean().default(false),
    reason: z.string().min(1).max(500),
  }),
);
export const factoryOutputSchema = z.lazy(() =>
  z.object({
    status: z.literal('started'),
    operation: z.literal('factory_reset'),
    estimated_duration: z.string(),
    job_id: z.string(),
    progress_url: z.string(),
  }),
);

/** The multipart form of POST /recovery/upload, as clients send it (the REST layer makes the input). */
export const recoveryUploadFormSchema = z.object({
  file: z
    .string()
    .meta({ format: 'binary', description: 'Signed Gantry bundle to keep as the recovery image' }),
});

export const recoveryUploadOutputSchema = z.lazy(() =>
  z.object({
    uploaded: z.literal(true),
    filename: z.string(),
    size: z.string(),
    version: z.string(),
    checksum: z.string(),
  }),
);
