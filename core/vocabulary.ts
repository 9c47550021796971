/**
 * The domain's words, in one import-free module: the store schema (drizzle/), the statecharts
 * (machines/), the services and the transports (api/) all name them from here, so a role, a slot
 * or a strategy is spelled once. Each is an `as const` array (zod builds its enums from it with
 * `z.enum(...)`, drizzle its enum columns) and the type of its members.
 *
 * Job kinds and error codes have their own import-free modules (core/job-kinds.ts,
 * core/errors.ts); they are re-exported here so this module is the one place to look.
 */

/** Who a user is: each role may do what the one before it may, and more (README "Decisions where the spec is silent", Roles). */
export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** The two A/B partition slots of a gateway. */
export const SLOT_IDS = ['A', 'B'] as const;
export type SlotId = (typeof SLOT_IDS)[number];

/** How a partition looks to an operator (the `status` of /status's partition cards). */
export const PARTITION_STATUSES = ['healthy', 'trial', 'ready', 'invalid', 'empty', 'writing'] as const;
export type PartitionStatus = (typeof PARTITION_STATUSES)[number];

/** What the gateway knows of who signed a listed bundle (services/updates/catalog.ts `signatureStatus`). */
export const SIGNATURE_STATUSES = ['verified', 'untrusted', 'unknown'] as const;
export type SignatureStatus = (typeof SIGNATURE_STATUSES)[number];

/** How an update is applied (settings `update_strategy`, an install's `strategy`). */
export const UPDATE_STRATEGIES = ['seamless', 'in-place', 'rolling'] as const;
export type UpdateStrategy = (typeof UPDATE_STRATEGIES)[number];

/** The safety interlock's constraints, in the documented order. */
export const SAFETY_CONSTRAINTS = [
  'crane_motion',
  'acs_collision',
  'ups_battery',
  'network',
  'system_load',
] as const;
export type SafetyConstraint = (typeof SAFETY_CONSTRAINTS)[number];

/** Days of a maintenance window, Sunday first (the index is JavaScript's `getDay()`). */
export const WEEKDAYS = [
  'sunday',
  'monday',
  'tuesday',
  'wednesday',
  'thursday',
  'friday',
  'saturday',
] as const;
export type Weekday = (typeof WEEKDAYS)[number];

/** Levels of the activity log (GET /logs, `log_entry`). */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export {
  JOB_KINDS,
  UPDATE_JOB_KINDS,
  ZIP_JOB_KINDS,
  PROGRESS_JOB_KINDS,
  MACHINE_IDS,
  FINAL_JOB_STATES,
  isJobKind,
  isFinalJobState,
  type JobKind,
  type UpdateJobKind,
  type ZipJobKind,
  type MachineId,
} from './job-kinds.js';
export { ERROR_CODES, type ErrorCode } from './errors.js';
