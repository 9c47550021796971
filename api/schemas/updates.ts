import { z } from 'zod';
import { SIGNATURE_STATUSES, UPDATE_STRATEGIES } from '../../core/vocabulary.js';

const slotId = z.enum(['A', 'B']);
const jobId = z.string().min(1).max(64);

export const availableUpdateSchema = z.lazy(() =>
  z.object({
    id: z.string(),
    version: z.string(),
    type: z.string(),
    severity: z.string(),
    size: z.string(),
    released: z.string(),
    description: z.string(),
    changelog: z.array(z.string()),
    /** From the TUF-verified feed metadata (`signatureStatus` in services/updates/catalog.ts). */
    signature: z.enum(SIGNATURE_STATUSES),
    compatible: z.boolean(),
  }),
);
export type AvailableUpdate = z.infer<typeof availableUpdateSchema>;

export const updatesOutputSchema = z.lazy(() =>
  z.object({
    updates: z.array(availableUpdateSchema),
    total_available: z.int(),
    /** The feed checks go to (as check-updates names it), null when none is configured. */
    server: z.string().nullable(),
    /** The feed is the local demo feed of a simulated gateway. */
    demo_feed: z.boolean(),
  }),
);

export const checkUpdatesInputSchema = z.lazy(() =>
  z.strictObject({ force: z.boolean().default(false), background: z.boolean().default(false) }).prefault({}),
);
export const checkUpdatesOutputSchema = z.lazy(() =>
  z.object({
    check_id: z.string(),
    status: z.enum(['checking', 'completed']),
    server: z.string(),
    estimated_duration: z.string(),
    total_available: z.int().optional(),
  }),
);

export const downloadInputSchema = z.lazy(() =>
  z.strictObject({
    update_id: z.string().min(1).max(64),
    version: z.string().min(1).max(64).optional(),
    target_partition: slotId.optional(),
    background: z.boolean().default(false),
    verify_signature: z
      .literal(true, { message: 'signature verification cannot be turned off' })
      .default(true),
  }),
);
export const downloadOutputSchema = z.lazy(() =>
  z.object({
    job_id: z.string(),
    status: z.literal('downloading'),
    update: z.object({ id: z.string(), version: z.string(), size: z.string() }),
    target_partition: slotId,
    progress_url: z.string(),
  }),
);

/** One of `job_id` (update, deploy, restore, factory jobs) or `snapshot_id` (the snapshot's progress_url). */
export const progressInputSchema = z.lazy(() =>
  z
    .strictObject({ job_id: jobId.optional(), snapshot_id: jobId.optional() })
    .refine((v) => (v.job_id === undefined) !== (v.snapshot_id === undefined), {
      message: 'exactly one of job_id or snapshot_id is required',
      path: ['job_id'],
    }),
);
export const progressOutputSchema = z.lazy(() =>
  z.object({
    status: z.string(),
    job_id: z.string(),
    progress: z.object({
      percentage: z.number(),
      current_operation: z.string(),
      speed: z.string(),
      downloaded: z.string(),
      total: z.string(),
      eta: z.string(),
    }),
    update: z.object({ id: z.string().nullable(), version: z.string() }),
    elapsed_time: z.string(),
    target_partition: slotId,
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
    blocked_by: z.array(z.string()),
    /**
     * How the image travels (issue 14): `hop` (a delta from the active slot's image), `dynamic`
     * (chunks missing from it) or `full` (the compressed bundle); bytes planned and received on the
     * wire. `progress.total` is the planned bytes once the path is chosen. Null before that and for
     * local sources.
     */
    delivery: z
      .object({
        path: z.enum(['hop', 'dynamic', 'full']),
        planned: z.string(),
        planned_bytes: z.number(),
        wire: z.string(),
        wire_bytes: z.number(),
      })
      .nullable(),
  }),
);

export const installInputSchema = z.lazy(() =>
  z.strictObject({
    job_id: jobId,
    strategy: z.enum(UPDATE_STRATEGIES).optional(),
    reboot_after: z.boolean().default(true),
    create_snapshot: z.boolean().default(false),
  }),
);
export const installOutputSchema = z.lazy(() =>
  z.object({
    job_id: z.string(),
    status: z.literal('installing'),
    strategy: z.enum(UPDATE_STRATEGIES),
    target_partition: slotId,
    reboot_after: z.boolean(),
    next_boot_partition: slotId,
  }),
);

export const cancelInputSchema = z.lazy(() =>
  z.strictObject({
    job_id: jobId,
    reason: z.string().max(500).default('User requested cancellation'),
  }),
);
export const cancelOutputSchema = z.lazy(() =>
  z.object({
    job_id: z.string(),
    status: z.literal('cancelled'),
    progress_at_cancel: z.number(),
  }),
);

export const uploadVerifyOutputSchema = z.lazy(() =>
  z.object({
    verified: z.literal(true),
    file: z.object({ name: z.string(), size: z.string(), checksum: z.string(), version: z.string() }),
    metadata: z.object({ kernel: z.string(), signature: z.literal('verified') }),
    compatibility: z.object({ hardware: z.enum(['compatible', 'incompatible']) }),
  }),
);
/** Internal input of a procedure taking a file the REST layer streamed to disk and hashed first. */
export const hashedUploadInputSchema = z.lazy(() =>
  z.strictObject({
    path: z.string(),
    originalName: z.string().max(255),
    size: z.int().nonnegative(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    version: z.string().min(1).max(64).optional(),
  }),
);
/**
 * Internal input of the upload-verify procedure: the REST layer verified the bundle while it
 * streamed it to disk; a refused upload was not hashed, so `sha256` may be absent. Whatever the
 * caller says, the server uses the size and hash it recorded or computed itself.
 */
export const uploadVerifyInputSchema = z.lazy(() =>
  hashedUploadInputSchema.unwrap().extend({
    sha256: hashedUploadInputSchema.unwrap().shape.sha256.optional(),
  }),
);

/** The multipart form of POST /upload/verify, as clients send it (the REST layer makes the input). */
export const uploadVerifyFormSchema = z.object({
  file: z.string().meta({ format: 'binary', description: 'Signed Gantry bundle (.bundle)' }),
  version: z
    .string()
    .optional()
    .meta({ description: 'Label shown for this image (the signed version still decides)' }),
});

export const deployInputSchema = z.lazy(() =>
  z.strictObject({
    filename: z.string().min(1).max(255),
    version: z.string().min(1).max(64).optional(),
    target_partition: slotId.optional(),
    checksum: z.string().regex(/^(sha256:)?[0-9a-f]{64}$/i, 'expected "sha256:<64 hex digits>"'),
  }),
);
export const deployOutputSchema = z.lazy(() =>
  z.object({
    job_id: z.string(),
    status: z.literal('deploying'),
    image: z.object({ name: z.string(), version: z.string() }),
    target_partition: slotId,
  }),
);

/** A file the REST layer streamed to the gateway's upload area, hashed on the way. */
export type HashedUploadInput = z.output<typeof hashedUploadInputSchema>;
export type UploadVerifyInput = z.output<typeof uploadVerifyInputSchema>;
