import { z } from 'zod';
import { PAYLOAD_KINDS, SEVERITIES, UPDATE_TYPES, type Manifest } from '../bundle/manifest.js';
import type { JobKind } from '../core/job-kinds.js';
import { SLOT_IDS } from '../core/vocabulary.js';

/**
 * The JSON columns of a job row, per kind: what the JobStore (services/jobs.ts) checks on every
 * write and every read, so a row another version or a hand edit left behind is reported as such
 * instead of being misread. Artifacts and progress documents evolve by adding fields: unknown keys
 * are dropped on read rather than refused. The larger schemas are `z.lazy`, built when first used:
 * an idle server reads few job rows (README "How it runs in production").
 */

const slotId = z.enum(SLOT_IDS);
const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);

/** What was asked for: the validated input of the procedure that created the job (informational). */
export const jobRequestSchema = z.record(z.string(), z.unknown());
export type JobRequest = z.infer<typeof jobRequestSchema>;

/** What a transition row keeps of the job at that moment (bytes, progress, hashes: informational). */
export const transitionContextSchema = z.record(z.string(), z.unknown());

/**
 * A manifest kept in an artifact was verified (signature, schema) when its bundle was read; what is
 * checked here is that it still has the fields Gantry reads, so a field later added to or dropped
 * from the bundle format does not make a stored job unreadable.
 */
const storedManifestShape = z.looseObject({
  format: z.string(),
  version: z.string(),
  type: z.enum(UPDATE_TYPES),
  severity: z.enum(SEVERITIES),
  compatible: z.array(z.string()),
  kernel: z.string(),
  released: z.string(),
  description: z.string(),
  changelog: z.array(z.string()),
  payloads: z.array(
    z.looseObject({ name: z.string(), kind: z.enum(PAYLOAD_KINDS), size: z.number(), sha256: z.string() }),
  ),
  key_id: z.string(),
});
const storedManifest = z.custom<Manifest>(
  (value) => storedManifestShape.safeParse(value).success,
  'not a verified bundle manifest',
);

/** An update job's artifact: where its bytes come from and what they proved to be. */
export const updateJobArtifactSchema = z.lazy(() =>
  z.object({
    source: z.discriminatedUnion('kind', [
      z.object({
        kind: z.literal('feed'),
        target: z.object({
          path: z.string(),
          length: z.int().nonnegative(),
          sha256: z.string(),
          custom: z.record(z.string(), z.unknown()),
        }),
      }),
      z.object({ kind: z.literal('file'), path: z.string(), name: z.string(), sha256: z.string() }),
      /** A raw image (a snapshot), not a bundle: its hash was taken when it was made. */
      z.object({
        kind: z.literal('image'),
        path: z.string(),
        sha256: z.string(),
        bytes: z.int().nonnegative(),
        version: z.string(),
        kernel: z.string().nullable(),
      }),
    ]),
    update: z.object({ id: z.string().nullable(), version: z.string() }),
    /** The slot written (also in the statechart's context; here for a job whose snapshot is unreadable). */
    targetSlot: slotId.optional(),
    /** Display label (a manual upload's custom version); the signed manifest version still rules. */
    label: z.string().nullable(),
    allowDowngrade: z.boolean(),
    resume: z
      .object({
        /** Payload bytes durably on the slot. */
        slotBytes: z.int().nonnegative(),
        /** Offset of the payload's data inside the bundle. */
        payloadOffset: z.int().nonnegative(),
        payloadName: z.string(),
      })
      .nullable(),
    manifest: storedManifest.nullable(),
    sha256: z.string().nullable(),
    bytes: z.int().nonnegative().nullable(),
    /** The target slot was (possibly partly) written: on failure or cancel it must be invalidated. */
    slotTouched: z.boolean().optional(),
    /**
     * How the image travels (services/updates/delivery.ts): the path chosen (hop delta, dynamic
     * chunks, full bundle), the bytes it planned to receive and those received so far.
     */
    delivery: z
      .object({
        path: z.enum(['hop', 'dynamic', 'full']),
        plannedBytes: z.int().nonnegative(),
        wireBytes: z.int().nonnegative(),
      })
      .nullable()
      .optional(),
    /** Restore and factory jobs install by themselves once the image is verified. */
    autoInstall: z.object({ rebootAfter: z.boolean(), wipeData: z.boolean() }).nullable().optional(),
  }),
);
export type UpdateJobArtifact = z.infer<typeof updateJobArtifactSchema>;

/** A manual upload that verified: kept as `<gateway>/uploads/<sha256>.bundle`. */
export const uploadArtifactSchema = z.lazy(() =>
  z.object({
    path: z.string(),
    name: z.string(),
    size: z.int().nonnegative(),
    sha256: z.string(),
    manifest: storedManifest,
    label: z.string(),
  }),
);
export type VerifiedUpload = z.infer<typeof uploadArtifactSchema>;

export const SNAPSHOT_ID = /^snap-(\d{3,})$/;
export const SNAPSHOT_IMAGE_FILE = 'image.img';
export const SNAPSHOT_CONFIG_FILE = 'config.json';

/** A snapshot's `snapshot.json`: validated whenever it is read; a torn or edited one is not listed. */
export const snapshotMetaSchema = z.lazy(() =>
  z.object({
    format: z.literal(1),
    id: z.string().regex(SNAPSHOT_ID),
    gateway_id: z.string(),
    name: z.string(),
    description: z.string(),
    version: z.string(),
    kernel: z.string().nullable(),
    source_partition: slotId,
    size: z.int().nonnegative(),
    sha256: sha256Hex,
    created_at: z.string(),
    created_at_ms: z.int(),
    image: z.literal(SNAPSHOT_IMAGE_FILE),
    config: z.literal(SNAPSHOT_CONFIG_FILE),
  }),
);
export type SnapshotMeta = z.infer<typeof snapshotMetaSchema>;

/** A finished snapshot job's artifact: its metadata and the directory holding it. */
export const snapshotArtifactSchema = z.lazy(() => snapshotMetaSchema.unwrap().extend({ path: z.string() }));

/** What a snapshot job reports while it copies (it has no statechart). */
export const snapshotProgressSchema = z.lazy(() =>
  z.object({
    phase: z.enum(['copying', 'configuration', 'finalizing']),
    sourceSlot: slotId,
    version: z.string(),
    totalBytes: z.int().nonnegative(),
    bytesDone: z.int().nonnegative(),
    speedBps: z.number().nonnegative(),
    startedAt: z.number(),
    /** Time spent copying the image, once done: the measured throughput of the next estimate. */
    copyMs: z.number().nonnegative().nullable(),
  }),
);
export type SnapshotProgress = z.infer<typeof snapshotProgressSchema>;

/** A finished debug bundle: the archive and what it holds. */
export const debugBundleArtifactSchema = z.lazy(() =>
  z.object({
    path: z.string(),
    filename: z.string(),
    size: z.int().nonnegative(),
    sha256: z.string(),
    entries: z.array(z.object({ name: z.string(), size: z.int() })),
  }),
);
export type DebugBundleArtifact = z.infer<typeof debugBundleArtifactSchema>;

const none = z.null();

/** Each kind's `artifact` and `progress` columns (both also may be null: not produced yet). */
export const JOB_RECORDS = {
  download: { artifact: updateJobArtifactSchema, progress: none },
  deploy: { artifact: updateJobArtifactSchema, progress: none },
  restore: { artifact: updateJobArtifactSchema, progress: none },
  factory: { artifact: updateJobArtifactSchema, progress: none },
  upload: { artifact: uploadArtifactSchema, progress: none },
  snapshot: { artifact: snapshotArtifactSchema, progress: snapshotProgressSchema },
  'debug-bundle': { artifact: debugBundleArtifactSchema, progress: none },
  configure: { artifact: none, progress: none },
  plugin: { artifact: none, progress: none },
} as const satisfies Record<JobKind, { artifact: z.ZodType; progress: z.ZodType }>;

export type ArtifactOf<K extends JobKind> = z.output<(typeof JOB_RECORDS)[K]['artifact']>;
export type ProgressOf<K extends JobKind> = z.output<(typeof JOB_RECORDS)[K]['progress']>;
