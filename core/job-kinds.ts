/**
 * The vocabulary of jobs, in one import-free module so the store schema (drizzle/), the statecharts
 * (machines/) and the services can all name it without cycles: which kinds of job exist, which
 * statechart runs each, which states end a job, and what happens to a job a restart interrupted.
 */

/** Every kind of row in the `jobs` table. */
export const JOB_KINDS = [
  'download',
  'deploy',
  'restore',
  'factory',
  'upload',
  'snapshot',
  'debug-bundle',
  'configure',
  'plugin',
] as const;
export type JobKind = (typeof JOB_KINDS)[number];

/** Kinds run by the update-job statechart (services/updates/update-service.ts). */
export const UPDATE_JOB_KINDS = [
  'download',
  'deploy',
  'restore',
  'factory',
] as const satisfies readonly JobKind[];
export type UpdateJobKind = (typeof UPDATE_JOB_KINDS)[number];

/** Kinds run by the ZIP-operation statechart (services/zip-operations.ts). */
export const ZIP_JOB_KINDS = ['configure', 'plugin'] as const satisfies readonly JobKind[];
export type ZipJobKind = (typeof ZIP_JOB_KINDS)[number];

/** Kinds GET /progress answers for (and the operator page's monitor follows). */
export const PROGRESS_JOB_KINDS = [...UPDATE_JOB_KINDS, 'snapshot'] as const satisfies readonly JobKind[];

/** The statecharts whose snapshots are persisted (the `actor_snapshots` table's `machine`). */
export const MACHINE_IDS = [
  'updateJob',
  'zipOp',
  'partition',
  'safetyInterlock',
  'componentSequence',
] as const;
export type MachineId = (typeof MACHINE_IDS)[number];

/** Which statechart runs a job of each kind; null for the imperative ones (snapshot, bundle, upload). */
export const JOB_MACHINE: Record<JobKind, MachineId | null> = {
  download: 'updateJob',
  deploy: 'updateJob',
  restore: 'updateJob',
  factory: 'updateJob',
  configure: 'zipOp',
  plugin: 'zipOp',
  snapshot: null,
  'debug-bundle': null,
  upload: null,
};

/** Job states after which nothing more happens to a job. */
export const FINAL_JOB_STATES = ['complete', 'error', 'cancelled'] as const;

export function isFinalJobState(state: string): boolean {
  return (FINAL_JOB_STATES as readonly string[]).includes(state);
}

export function isJobKind(value: string): value is JobKind {
  return (JOB_KINDS as readonly string[]).includes(value);
}

/**
 * What a start-up does with a job the previous run did not finish (kill -9, power loss, a stop in
 * the middle), applied by services/job-restart.ts before the start-up sweep of partial files:
 * - `resume`: its statechart is restored from its snapshot and continues where it was durable;
 * - `fail-and-undo`: it is reported failed and what it had already changed is put back, so
 *   "error" always means "the previous version is in place";
 * - `clean-up`: it is settled as it stands (complete if its result was already in place, else
 *   failed) and what it left half-made is removed.
 */
export type RestartPolicy = 'resume' | 'fail-and-undo' | 'clean-up';

export const RESTART_POLICY = {
  // The image on the slot and the resume point are durable: a restart costs a re-hash, not the work.
  download: 'resume',
  deploy: 'resume',
  restore: 'resume',
  // Must finish: the operator asked for the recovery image, and a wipe may already have happened.
  factory: 'resume',
  // The archive was a one-shot upload; a half-applied configuration or plugin must not stay.
  configure: 'fail-and-undo',
  plugin: 'fail-and-undo',
  // The slot may have changed since the copy began: a snapshot is taken again, not resumed.
  snapshot: 'clean-up',
  // Cheap to ask again; nothing outside its own files was touched.
  'debug-bundle': 'clean-up',
  // Recorded complete in the step that keeps the file: never found unfinished, settled if it is.
  upload: 'clean-up',
} as const satisfies Record<JobKind, RestartPolicy>;

/** The kinds whose declared restart policy is `P`. */
export type KindWithPolicy<P extends RestartPolicy> = {
  [K in JobKind]: (typeof RESTART_POLICY)[K] extends P ? K : never;
}[JobKind];
