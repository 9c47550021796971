import { index, integer, primaryKey, sqliteTable, text } from 'drizzle-orm/sqlite-core';
import { JOB_KINDS, LOG_LEVELS, MACHINE_IDS, ROLES } from '../core/vocabulary.js';

/**
 * Gantry's store. This file is the single source of row types (`typeof table.$inferSelect`);
 * migrations under drizzle/migrations are generated from it with `npm run db:generate`.
 * Times are epoch milliseconds (integers) so ordering and arithmetic stay in SQL.
 */

export const gateways = sqliteTable('gateways', {
  id: text('id').primaryKey(),
  model: text('model').notNull(),
  timezone: text('timezone').notNull().default('UTC'),
  createdAt: integer('created_at').notNull(),
  /** Time of the last completed OTA install (the `last_ota` of /status). */
  lastOtaAt: integer('last_ota_at'),
  lastUpdateCheckAt: integer('last_update_check_at'),
});

export const users = sqliteTable('users', {
  id: integer('id').primaryKey({ autoIncrement: true }),
  username: text('username').notNull().unique(),
  passwordHash: text('password_hash').notNull(),
  role: text('role', { enum: ROLES }).notNull(),
  /** Gateways this user may act on: ["*"] for all. */
  gateways: text('gateways', { mode: 'json' }).$type<string[]>().notNull(),
  createdAt: integer('created_at').notNull(),
  /** Bumped to invalidate every token issued before (logout-everywhere, password change). */
  tokenVersion: integer('token_version').notNull().default(0),
});

/** Per-gateway settings as one validated JSON document (shape owned by core/settings-document.ts). */
export const settings = sqliteTable('settings', {
  gatewayId: text('gateway_id')
    .primaryKey()
    .references(() => gateways.id),
  document: text('document', { mode: 'json' }).notNull(),
  updatedAt: integer('updated_at').notNull(),
});

export const logs = sqliteTable(
  'logs',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    gatewayId: text('gateway_id')
      .notNull()
      .references(() => gateways.id),
    at: integer('at').notNull(),
    level: text('level', { enum: LOG_LEVELS }).notNull(),
    source: text('source').notNull(),
    message: text('message').notNull(),
  },
  (t) => [
    index('logs_gateway_id_idx').on(t.gatewayId, t.id),
    index('logs_gateway_level_idx').on(t.gatewayId, t.level, t.id),
  ],
);

export const jobs = sqliteTable(
  'jobs',
  {
    id: text('id').primaryKey(),
    gatewayId: text('gateway_id')
      .notNull()
      .references(() => gateways.id),
    kind: text('kind', { enum: JOB_KINDS }).notNull(),
    /** Current state value of the job's statechart, flattened (e.g. "downloading"). */
    state: text('state').notNull(),
    /** Progress of a job that has no statechart (a snapshot's copy); shape per kind (services/job-records.ts). */
    progress: text('progress', { mode: 'json' }),
    /** What was asked for (validated input of the procedure that created the job). */
    request: text('request', { mode: 'json' }),
    /** What the job produced so far: verified manifest, hash, resume point (pipeline-owned shape). */
    artifact: text('artifact', { mode: 'json' }),
    errorCode: text('error_code'),
    errorMessage: text('error_message'),
    createdAt: integer('created_at').notNull(),
    updatedAt: integer('updated_at').notNull(),
    finishedAt: integer('finished_at'),
  },
  (t) => [index('jobs_gateway_idx').on(t.gatewayId, t.createdAt)],
);

export const jobTransitions = sqliteTable(
  'job_transitions',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    jobId: text('job_id')
      .notNull()
      .references(() => jobs.id),
    at: integer('at').notNull(),
    fromState: text('from_state'),
    toState: text('to_state').notNull(),
    event: text('event').notNull(),
    context: text('context', { mode: 'json' }),
  },
  (t) => [index('job_transitions_job_idx').on(t.jobId, t.id)],
);

/**
 * The persisted snapshot of every statechart actor (services/actor-snapshots.ts): a job's (keyed by
 * job id) and each gateway's partition pair and safety interlock (keyed by gateway id). `version` is
 * the version of the machine definition that wrote it; a snapshot of another version is refused.
 */
export const actorSnapshots = sqliteTable(
  'actor_snapshots',
  {
    machine: text('machine', { enum: MACHINE_IDS }).notNull(),
    actorId: text('actor_id').notNull(),
    gatewayId: text('gateway_id')
      .notNull()
      .references(() => gateways.id),
    version: integer('version').notNull(),
    snapshot: text('snapshot', { mode: 'json' }).notNull(),
    updatedAt: integer('updated_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.machine, t.actorId] })],
);
export type ActorSnapshotRow = typeof actorSnapshots.$inferSelect;

export const audit = sqliteTable(
  'audit',
  {
    id: integer('id').primaryKey({ autoIncrement: true }),
    at: integer('at').notNull(),
    username: text('username'),
    gatewayId: text('gateway_id'),
    action: text('action').notNull(),
    outcome: text('outcome', { enum: ['success', 'failure'] }).notNull(),
    /** Error code on failure, or a short summary; never secrets (PINs, passwords, tokens). */
    detail: text('detail'),
    remoteAddress: text('remote_address'),
  },
  (t) => [index('audit_at_idx').on(t.at)],
);

/**
 * The safety override PIN of each gateway, only ever as a scrypt hash (core/auth.ts hashSecret), and
 * the wrong-PIN lockout, kept here so a restart does not hand a guesser five fresh attempts.
 */
export const safetyPins = sqliteTable('safety_pins', {
  gatewayId: text('gateway_id')
    .primaryKey()
    .references(() => gateways.id),
  pinHash: text('pin_hash').notNull(),
  /** Where the PIN came from: generated at first start, GANTRY_SAFETY_PIN, or provisioned later. */
  source: text('source', { enum: ['generated', 'env', 'provisioned'] }).notNull(),
  failedAttempts: integer('failed_attempts').notNull().default(0),
  lockedUntil: integer('locked_until'),
  updatedAt: integer('updated_at').notNull(),
});
export type SafetyPinRow = typeof safetyPins.$inferSelect;

export type GatewayRow = typeof gateways.$inferSelect;
export type UserRow = typeof users.$inferSelect;
export type LogRow = typeof logs.$inferSelect;
export type JobRow = typeof jobs.$inferSelect;
export type JobTransitionRow = typeof jobTransitions.$inferSelect;
export type AuditRow = typeof audit.$inferSelect;

/** Updates offered by the gateway's feed, as of the last check (the /updates list). */
export const availableUpdates = sqliteTable(
  'available_updates',
  {
    /** Sequence behind the public id ("update-001"), stable across checks for the same target. */
    seq: integer('seq').primaryKey({ autoIncrement: true }),
    gatewayId: text('gateway_id')
      .notNull()
      .references(() => gateways.id),
    /** TUF target path of the bundle. */
    target: text('target').notNull(),
    version: text('version').notNull(),
    length: integer('length').notNull(),
    sha256: text('sha256').notNull(),
    /** The target's custom metadata (type, severity, size, released, description, changelog, …). */
    custom: text('custom', { mode: 'json' }).notNull(),
    /** Still listed by the feed at the last check. */
    listed: integer('listed', { mode: 'boolean' }).notNull().default(true),
    seenAt: integer('seen_at').notNull(),
  },
  (t) => [index('available_updates_gw_target_idx').on(t.gatewayId, t.target)],
);
export type AvailableUpdateRow = typeof availableUpdates.$inferSelect;

/**
 * Maintenance windows the scheduler has started, one row per (gateway, window start): a restart
 * neither runs a window twice nor forgets one in progress.
 */
export const maintenanceRuns = sqliteTable(
  'maintenance_runs',
  {
    gatewayId: text('gateway_id')
      .notNull()
      .references(() => gateways.id),
    windowStart: integer('window_start').notNull(),
    windowEnd: integer('window_end').notNull(),
    startedAt: integer('started_at').notNull(),
    finishedAt: integer('finished_at'),
    /** What the window did: "no update", "installed v5.0.5", "blocked by crane_motion", … */
    outcome: text('outcome'),
    jobId: text('job_id'),
  },
  (t) => [primaryKey({ columns: [t.gatewayId, t.windowStart] })],
);
export type MaintenanceRunRow = typeof maintenanceRuns.$inferSelect;
