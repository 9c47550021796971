import { and, asc, desc, eq, inArray, notInArray } from 'drizzle-orm';
import type { GantryDb } from '../drizzle/db.js';
import { jobs, jobTransitions, type JobRow } from '../drizzle/schema.js';

/** Job states after which nothing more happens to a job. */
export const FINAL_JOB_STATES = ['complete', 'error', 'cancelled'] as const;

export interface JobTransition {
  from: string | null;
  to: string;
  event: string;
  context?: unknown;
}

/**
 * Jobs and their transition history. A transition is written (snapshot + history row, one SQLite
 * transaction) before anyone is told about it, so what a client saw is never lost by a crash.
 */
export class JobStore {
  constructor(
    private readonly db: GantryDb,
    private readonly clock: () => number,
  ) {}

  create(row: {
    id: string;
    gatewayId: string;
    kind: string;
    state: string;
    request: unknown;
    snapshot: unknown;
    artifact?: unknown;
  }): void {
    const now = this.clock();
    const final = (FINAL_JOB_STATES as readonly string[]).includes(row.state);
    this.db.transaction((tx) => {
      tx.insert(jobs)
        .values({ ...row, createdAt: now, updatedAt: now, ...(final ? { finishedAt: now } : {}) })
        .run();
      tx.insert(jobTransitions)
        .values({ jobId: row.id, at: now, fromState: null, toState: row.state, event: 'create' })
        .run();
    });
  }

  /** Saves the latest snapshot; with a transition, also the history row, atomically. */
  save(
    jobId: string,
    update: {
      state: string;
      snapshot: unknown;
      errorCode?: string | null;
      errorMessage?: string | null;
      /** Saved in the same transaction, so a resume point never disagrees with the snapshot. */
      artifact?: unknown;
    },
    transition?: JobTransition,
  ): void {
    const now = this.clock();
    const final = (FINAL_JOB_STATES as readonly string[]).includes(update.state);
    this.db.transaction((tx) => {
      tx.update(jobs)
        .set({
          state: update.state,
          snapshot: update.snapshot,
          errorCode: update.errorCode ?? null,
          errorMessage: update.errorMessage ?? null,
          ...(update.artifact !== undefined ? { artifact: update.artifact } : {}),
          updatedAt: now,
          ...(final ? { finishedAt: now } : {}),
        })
        .where(eq(jobs.id, jobId))
        .run();
      if (transition) {
        tx.insert(jobTransitions)
          .values({
            jobId,
            at: now,
            fromState: transition.from,
            toState: transition.to,
            event: transition.event,
            context: transition.context ?? null,
          })
          .run();
      }
    });
  }

  get(jobId: string): JobRow | undefined {
    return this.db.select().from(jobs).where(eq(jobs.id, jobId)).get();
  }

  /** Jobs of a gateway that have not reached a final state (restored after a restart). */
  unfinished(gatewayId: string, kinds?: string[]): JobRow[] {
    const conds = [eq(jobs.gatewayId, gatewayId), notInArray(jobs.state, [...FINAL_JOB_STATES])];
    if (kinds) conds.push(inArray(jobs.kind, kinds));
    return this.db
      .select()
      .from(jobs)
      .where(and(...conds))
      .orderBy(asc(jobs.createdAt))
      .all();
  }

  recent(gatewayId: string, limit = 20): JobRow[] {
    return this.db
      .select()
      .from(jobs)
      .where(eq(jobs.gatewayId, gatewayId))
      .orderBy(desc(jobs.createdAt))
      .limit(limit)
      .all();
  }

  transitions(jobId: string) {
    return this.db
      .select()
      .from(jobTransitions)
      .where(eq(jobTransitions.jobId, jobId))
      .orderBy(asc(jobTransitions.id))
      .all();
  }
}
