import { and, asc, count, desc, eq, gt, inArray, isNotNull, like, notInArray } from 'drizzle-orm';
import type { z } from 'zod';
import { GantryError } from '../core/errors.js';
import { FINAL_JOB_STATES, isFinalJobState, isJobKind, JOB_KINDS, type JobKind } from '../core/job-kinds.js';
import type { GantryDb } from '../drizzle/db.js';
import { jobs, jobTransitions, type JobRow, type JobTransitionRow } from '../drizzle/schema.js';
import {
  JOB_RECORDS,
  jobRequestSchema,
  transitionContextSchema,
  type ArtifactOf,
  type JobRequest,
  type ProgressOf,
} from './job-records.js';

/** A job row with its JSON columns checked against its kind's records (services/job-records.ts). */
export interface StoredJobOf<K extends JobKind> {
  id: string;
  gatewayId: string;
  kind: K;
  state: string;
  request: JobRequest | null;
  artifact: ArtifactOf<K> | null;
  progress: ProgressOf<K> | null;
  errorCode: string | null;
  errorMessage: string | null;
  createdAt: number;
  updatedAt: number;
  finishedAt: number | null;
}
/** Any stored job; `kind` tells its artifact and progress apart. */
export type StoredJob = { [K in JobKind]: StoredJobOf<K> }[JobKind];

/** What lists of jobs show (the inspector, the page): no JSON column, so nothing to misread. */
export type JobSummary = Omit<StoredJob, 'request' | 'artifact' | 'progress'>;

/** Enough to write to a job: its id, and its kind to check what is written. */
export interface JobRef<K extends JobKind = JobKind> {
  id: string;
  kind: K;
}

export type NewJob = {
  [K in JobKind]: {
    id: string;
    gatewayId: string;
    kind: K;
    state: string;
    request: JobRequest | null;
    artifact?: ArtifactOf<K> | null;
    progress?: ProgressOf<K> | null;
  };
}[JobKind];

export interface JobTransition {
  from: string | null;
  to: string;
  /** The event that caused it (`create`, a statechart event, `gantry.restart`, …). */
  event: string;
  context?: Record<string, unknown> | null;
}

/** Columns a change may set beside the state: the error, and the kind's JSON columns. */
export interface JobPatch<K extends JobKind = JobKind> {
  errorCode?: string | null;
  errorMessage?: string | null;
  artifact?: ArtifactOf<K> | null;
  progress?: ProgressOf<K> | null;
}

/** A row the store refuses to hand out as typed: another version or a hand edit wrote it. */
export class MalformedJobError extends GantryError {
  constructor(
    readonly jobId: string,
    readonly column: string,
    problem: string,
  ) {
    super('INTERNAL_ERROR', `Job ${jobId}: its stored ${column} is unreadable (${problem})`);
    this.name = 'MalformedJobError';
  }
}

export interface InterruptedJobs {
  jobs: StoredJob[];
  /** Unfinished rows the store cannot read: they can only be reported failed. */
  malformed: Array<{ row: Pick<JobRow, 'id' | 'gatewayId' | 'kind' | 'state'>; error: MalformedJobError }>;
}

function issues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
    .join('; ');
}

function checked<S extends z.ZodType>(jobId: string, column: string, schema: S, value: unknown): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new MalformedJobError(jobId, column, issues(parsed.error));
  return parsed.data;
}

function parseRow(row: JobRow): StoredJob {
  const kind: string = row.kind;
  if (!isJobKind(kind)) throw new MalformedJobError(row.id, 'kind', `unknown kind "${kind}"`);
  const records = JOB_RECORDS[kind];
  const request = checked(row.id, 'request', jobRequestSchema.nullable(), row.request);
  const artifact = checked(row.id, 'artifact', records.artifact.nullable(), row.artifact);
  const progress = checked(row.id, 'progress', records.progress.nullable(), row.progress);
  // Each column was checked against `kind`'s own schema: TypeScript cannot follow that correlation.
  return { ...row, kind, request, artifact, progress } as StoredJob;
}

const summaryColumns = {
  id: jobs.id,
  gatewayId: jobs.gatewayId,
  kind: jobs.kind,
  state: jobs.state,
  errorCode: jobs.errorCode,
  errorMessage: jobs.errorMessage,
  createdAt: jobs.createdAt,
  updatedAt: jobs.updatedAt,
  finishedAt: jobs.finishedAt,
};

/**
 * The one owner of the `jobs` and `job_transitions` tables: every job of every kind is created,
 * moved and read through here. A change of state writes the row and its history row in one SQLite
 * transaction (with the actor's snapshot, when the caller wraps it in {@link transaction}), before
 * anyone is told about it, so what a client saw is never lost by a crash.
 *
 * JSON columns are checked on write and on read against the kind's records: a read of a row that
 * does not match throws {@link MalformedJobError}; lists skip such rows and report them.
 */
export class JobStore {
  constructor(
    private readonly db: GantryDb,
    private readonly clock: () => number,
    /** Where lists report the rows they skipped. */
    private readonly report: (error: MalformedJobError) => void = (error) =>
      console.error(`[gantry] ${error.message}`),
  ) {}

  /** Runs `fn` in one SQLite transaction (store calls inside it join it). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(() => fn());
  }

  // ---- writes -------------------------------------------------------------------------

  create(job: NewJob): void {
    const now = this.clock();
    const records = JOB_RECORDS[job.kind];
    const values = {
      id: job.id,
      gatewayId: job.gatewayId,
      kind: job.kind,
      state: job.state,
      request: checked(job.id, 'request', jobRequestSchema.nullable(), job.request),
      artifact: checked(job.id, 'artifact', records.artifact.nullable(), job.artifact ?? null),
      progress: checked(job.id, 'progress', records.progress.nullable(), job.progress ?? null),
      createdAt: now,
      updatedAt: now,
      finishedAt: isFinalJobState(job.state) ? now : null,
    };
    this.db.transaction((tx) => {
      tx.insert(jobs).values(values).run();
      tx.insert(jobTransitions)
        .values({ jobId: job.id, at: now, fromState: null, toState: job.state, event: 'create' })
        .run();
    });
  }

  /** A change of state: the row (state, error, any patched column) and its history row, atomically. */
  transition<K extends JobKind>(job: JobRef<K>, change: JobTransition, patch: JobPatch<K> = {}): void {
    const now = this.clock();
    const context = checked(
      job.id,
      'transition context',
      transitionContextSchema.nullable(),
      change.context ?? null,
    );
    this.db.transaction((tx) => {
      tx.update(jobs)
        .set({
          ...this.columns(job, patch),
          state: change.to,
          errorCode: patch.errorCode ?? null,
          errorMessage: patch.errorMessage ?? null,
          updatedAt: now,
          ...(isFinalJobState(change.to) ? { finishedAt: now } : {}),
        })
        .where(eq(jobs.id, job.id))
        .run();
      tx.insert(jobTransitions)
        .values({
          jobId: job.id,
          at: now,
          fromState: change.from,
          toState: change.to,
          event: change.event,
          context,
        })
        .run();
    });
  }

  /** Newer data for a job that stays in its state (progress, a resume point, a finished artifact). */
  update<K extends JobKind>(job: JobRef<K>, patch: Pick<JobPatch<K>, 'artifact' | 'progress'>): void {
    this.db
      .update(jobs)
      .set({ ...this.columns(job, patch), updatedAt: this.clock() })
      .where(eq(jobs.id, job.id))
      .run();
  }

  /** Ends a job in `error`. */
  fail(
    job: JobRef,
    from: string | null,
    failure: { code: string; message: string },
    event: string,
    context?: Record<string, unknown>,
  ): void {
    this.transition(
      job,
      { from, to: 'error', event, context },
      { errorCode: failure.code, errorMessage: failure.message },
    );
  }

  private columns<K extends JobKind>(job: JobRef<K>, patch: Pick<JobPatch<K>, 'artifact' | 'progress'>) {
    const records = JOB_RECORDS[job.kind];
    return {
      ...(patch.artifact !== undefined
        ? { artifact: checked(job.id, 'artifact', records.artifact.nullable(), patch.artifact) }
        : {}),
      ...(patch.progress !== undefined
        ? { progress: checked(job.id, 'progress', records.progress.nullable(), patch.progress) }
        : {}),
    };
  }

  // ---- reads --------------------------------------------------------------------------

  /** The job, checked; undefined if there is none. Throws {@link MalformedJobError} for a bad row. */
  get(jobId: string): StoredJob | undefined {
    const row = this.db.select().from(jobs).where(eq(jobs.id, jobId)).get();
    return row ? parseRow(row) : undefined;
  }

  /** The job's row without its JSON columns (nothing to misread: readable whatever they hold). */
  summary(jobId: string): JobSummary | undefined {
    return this.db.select(summaryColumns).from(jobs).where(eq(jobs.id, jobId)).get();
  }

  /** The job if it is of one of `kinds` and belongs to `gatewayId`. */
  find<K extends JobKind>(gatewayId: string, jobId: string, kinds: readonly K[]): StoredJobOf<K> | undefined {
    const job = this.get(jobId);
    if (!job || job.gatewayId !== gatewayId || !(kinds as readonly JobKind[]).includes(job.kind))
      return undefined;
    return job as StoredJobOf<K>;
  }

  /** A gateway's jobs of one kind, newest first (optionally only those in `state`). */
  list<K extends JobKind>(
    gatewayId: string,
    kind: K,
    opts: { state?: string; limit?: number } = {},
  ): StoredJobOf<K>[] {
    const conds = [eq(jobs.gatewayId, gatewayId), eq(jobs.kind, kind)];
    if (opts.state) conds.push(eq(jobs.state, opts.state));
    const query = this.db
      .select()
      .from(jobs)
      .where(and(...conds))
      .orderBy(desc(jobs.createdAt), desc(jobs.id));
    const rows = opts.limit ? query.limit(opts.limit).all() : query.all();
    return this.parseAll(rows) as StoredJobOf<K>[];
  }

  /** Ids of jobs of `kind` (of a gateway, or starting with `prefix`): for numbering new ones. */
  ids(kind: JobKind, where: { gatewayId?: string; prefix?: string }): string[] {
    const conds = [eq(jobs.kind, kind)];
    if (where.gatewayId) conds.push(eq(jobs.gatewayId, where.gatewayId));
    if (where.prefix) conds.push(like(jobs.id, `${where.prefix.replace(/[%_]/g, '')}%`));
    return this.db
      .select({ id: jobs.id })
      .from(jobs)
      .where(and(...conds))
      .all()
      .map((r) => r.id);
  }

  /** Unfinished jobs of a gateway, oldest first (what the page's monitor follows). */
  unfinished(gatewayId: string, kinds: readonly JobKind[] = JOB_KINDS): JobSummary[] {
    return this.db
      .select(summaryColumns)
      .from(jobs)
      .where(
        and(
          eq(jobs.gatewayId, gatewayId),
          notInArray(jobs.state, [...FINAL_JOB_STATES]),
          inArray(jobs.kind, [...kinds]),
        ),
      )
      .orderBy(asc(jobs.createdAt))
      .all();
  }

  /** Every job a previous run left unfinished, of the given gateways (start-up only). */
  interrupted(gatewayIds: readonly string[]): InterruptedJobs {
    const rows = this.db
      .select()
      .from(jobs)
      .where(and(inArray(jobs.gatewayId, [...gatewayIds]), notInArray(jobs.state, [...FINAL_JOB_STATES])))
      .orderBy(asc(jobs.createdAt), asc(jobs.id))
      .all();
    const out: InterruptedJobs = { jobs: [], malformed: [] };
    for (const row of rows) {
      try {
        out.jobs.push(parseRow(row));
      } catch (err) {
        if (!(err instanceof MalformedJobError)) throw err;
        out.malformed.push({ row, error: err });
      }
    }
    return out;
  }

  /** A gateway's most recent jobs, newest first. */
  recent(gatewayId: string, limit = 20): JobSummary[] {
    return this.db
      .select(summaryColumns)
      .from(jobs)
      .where(and(eq(jobs.gatewayId, gatewayId), inArray(jobs.kind, [...JOB_KINDS])))
      .orderBy(desc(jobs.createdAt))
      .limit(limit)
      .all();
  }

  transitions(jobId: string): JobTransitionRow[] {
    return this.db
      .select()
      .from(jobTransitions)
      .where(eq(jobTransitions.jobId, jobId))
      .orderBy(asc(jobTransitions.id))
      .all();
  }

  /** How many jobs, and transitions of them, a gateway has (the debug bundle's size estimate). */
  counts(gatewayId: string): { jobs: number; transitions: number } {
    const j = this.db.select({ n: count() }).from(jobs).where(eq(jobs.gatewayId, gatewayId)).get();
    const t = this.db
      .select({ n: count() })
      .from(jobTransitions)
      .innerJoin(jobs, eq(jobs.id, jobTransitions.jobId))
      .where(eq(jobs.gatewayId, gatewayId))
      .get();
    return { jobs: j?.n ?? 0, transitions: t?.n ?? 0 };
  }

  /**
   * A page of a gateway's rows as stored, oldest first, unchecked: for the debug bundle, which must
   * carry even a row this version cannot read.
   */
  rawPage(gatewayId: string, offset: number, limit: number): JobRow[] {
    return this.db
      .select()
      .from(jobs)
      .where(eq(jobs.gatewayId, gatewayId))
      .orderBy(asc(jobs.createdAt), asc(jobs.id))
      .limit(limit)
      .offset(offset)
      .all();
  }

  /** A page of the transitions of a gateway's jobs, after transition `after`, in order. */
  transitionPage(gatewayId: string, after: number, limit: number): JobTransitionRow[] {
    return this.db
      .select({ t: jobTransitions })
      .from(jobTransitions)
      .innerJoin(jobs, eq(jobs.id, jobTransitions.jobId))
      .where(and(eq(jobs.gatewayId, gatewayId), gt(jobTransitions.id, after)))
      .orderBy(asc(jobTransitions.id))
      .limit(limit)
      .all()
      .map((r) => r.t);
  }

  /**
   * Every file path a job's artifact names (`path`: a verified upload, a finished snapshot or debug
   * bundle; `source.path`: the file a deployment, restore or factory reset reads), by gateway. From
   * the raw rows: a row this version cannot read still keeps its file. Optionally only a gateway's,
   * or only unfinished jobs'.
   */
  artifactPaths(
    where: { gatewayId?: string; unfinished?: boolean } = {},
  ): Array<{ gatewayId: string; path: string }> {
    const out: Array<{ gatewayId: string; path: string }> = [];
    const conds = [isNotNull(jobs.artifact)];
    if (where.gatewayId) conds.push(eq(jobs.gatewayId, where.gatewayId));
    if (where.unfinished) conds.push(notInArray(jobs.state, [...FINAL_JOB_STATES]));
    const rows = this.db
      .select({ gatewayId: jobs.gatewayId, artifact: jobs.artifact })
      .from(jobs)
      .where(and(...conds))
      .all();
    for (const { gatewayId, artifact } of rows) {
      if (!artifact || typeof artifact !== 'object') continue;
      const a = artifact as { path?: unknown; source?: { path?: unknown } | null };
      for (const p of [a.path, a.source?.path])
        if (typeof p === 'string' && p) out.push({ gatewayId, path: p });
    }
    return out;
  }

  private parseAll(rows: JobRow[]): StoredJob[] {
    const out: StoredJob[] = [];
    for (const row of rows) {
      try {
        out.push(parseRow(row));
      } catch (err) {
        if (!(err instanceof MalformedJobError)) throw err;
        this.report(err);
      }
    }
    return out;
  }
}
