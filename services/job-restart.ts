import { findGantryError, type ErrorCode } from '../core/errors.js';
import { RESTART_POLICY, type JobKind, type KindWithPolicy } from '../core/job-kinds.js';
import type { ArtifactOf, ProgressOf } from './job-records.js';
import type { JobStore, StoredJob, StoredJobOf } from './jobs.js';

/** How a job that cannot go on is reported. */
export interface JobFailure {
  code: ErrorCode;
  message: string;
}

/** How a `clean-up` job ended: its result was already in place, or it failed. */
export type CleanUpOutcome<K extends JobKind> =
  | { state: 'complete'; artifact?: ArtifactOf<K> | null; progress?: ProgressOf<K> | null }
  | { state: 'error'; failure: JobFailure };

/**
 * What each kind's owner does for the policy declared for it in core/job-kinds.ts `RESTART_POLICY`
 * (the types follow the table: a kind gets exactly the hook of its policy).
 */
export interface RestartHooks {
  /**
   * `resume`: restores the job's statechart and lets it continue. Throwing (a snapshot refused,
   * nothing to resume from) fails the job with the error's code.
   */
  resume: { [K in KindWithPolicy<'resume'>]: (job: StoredJobOf<K>) => void };
  /**
   * `fail-and-undo`: puts back what the gateway's interrupted jobs of this kind had changed (and
   * finishes any half-done swap: called for every gateway, with or without such jobs), then says
   * how they are reported. Runs before they are marked failed.
   */
  undo: {
    [K in KindWithPolicy<'fail-and-undo'>]: (gatewayId: string, interrupted: StoredJobOf<K>[]) => JobFailure;
  };
  /** `clean-up`: removes what the job left half-made and says how it ended. */
  cleanUp: { [K in KindWithPolicy<'clean-up'>]: (job: StoredJobOf<K>) => CleanUpOutcome<K> };
}

export interface RestartDeps {
  jobs: JobStore;
  /** The configured gateways: only their jobs are settled (a gateway removed from the config keeps its rows). */
  gatewayIds: readonly string[];
  warn(gatewayId: string, message: string): void;
}

/** The event of every history row a restart writes. */
export const RESTART_EVENT = 'gantry.restart';

export interface InterruptedJobsHandle {
  /** The jobs whose policy is `resume`, left for {@link InterruptedJobsHandle.resume}. */
  readonly resumable: readonly StoredJob[];
  /**
   * Resumes them, once what they wait on runs (the safety interlock, the partition statecharts) and
   * the start-up sweep is done.
   */
  resume(): void;
}

/**
 * The one start-up step for jobs the previous run did not finish: each is handled by the policy
 * declared for its kind (`RESTART_POLICY`). `fail-and-undo` and `clean-up` are applied at once,
 * before the start-up sweep of partial files (services/data-dir-sweep.ts) removes what no job
 * claims any more; `resume` jobs are handed back and resumed by {@link InterruptedJobsHandle.resume}
 * once the machines they wait on run. A row the store cannot read is reported failed: nothing of it
 * can be trusted to resume or undo.
 */
export function restartJobs(deps: RestartDeps, hooks: RestartHooks): InterruptedJobsHandle {
  const { jobs, gatewayIds } = deps;
  const found = jobs.interrupted(gatewayIds);

  for (const { row, error } of found.malformed) {
    jobs.fail(
      { id: row.id, kind: row.kind },
      row.state,
      { code: 'INTERNAL_ERROR', message: `Interrupted by a server restart; ${error.message}` },
      RESTART_EVENT,
    );
    deps.warn(row.gatewayId, `Job ${row.id} could not be settled after a restart: ${error.message}`);
  }

  const byPolicy = {
    resume: [] as StoredJob[],
    'fail-and-undo': [] as StoredJob[],
    'clean-up': [] as StoredJob[],
  };
  for (const job of found.jobs) byPolicy[RESTART_POLICY[job.kind]].push(job);

  const undoKinds = Object.keys(hooks.undo) as Array<KindWithPolicy<'fail-and-undo'>>;
  for (const gatewayId of gatewayIds) {
    for (const kind of undoKinds) {
      const interrupted = byPolicy['fail-and-undo'].filter(
        (j) => j.gatewayId === gatewayId && j.kind === kind,
      );
      // Each hook receives its own kind's jobs: the correlation is lost on the generic table.
      const undo = hooks.undo[kind] as (gatewayId: string, jobs: StoredJob[]) => JobFailure;
      const failure = undo(gatewayId, interrupted);
      for (const job of interrupted) jobs.fail(job, job.state, failure, RESTART_EVENT);
    }
  }

  for (const job of byPolicy['clean-up']) {
    const cleanUp = hooks.cleanUp[job.kind as KindWithPolicy<'clean-up'>] as (
      job: StoredJob,
    ) => CleanUpOutcome<JobKind>;
    const outcome = cleanUp(job);
    if (outcome.state === 'complete') {
      jobs.transition(
        job,
        { from: job.state, to: 'complete', event: RESTART_EVENT },
        {
          ...(outcome.artifact !== undefined ? { artifact: outcome.artifact } : {}),
          ...(outcome.progress !== undefined ? { progress: outcome.progress } : {}),
        },
      );
    } else {
      jobs.transition(
        job,
        { from: job.state, to: 'error', event: RESTART_EVENT },
        { errorCode: outcome.failure.code, errorMessage: outcome.failure.message },
      );
    }
  }

  const resumable = byPolicy.resume;
  let resumed = false;
  return {
    resumable,
    resume() {
      if (resumed) return;
      resumed = true;
      for (const job of resumable) {
        const resume = hooks.resume[job.kind as KindWithPolicy<'resume'>] as (job: StoredJob) => void;
        try {
          resume(job);
        } catch (err) {
          const message = `Could not resume after restart: ${(err as Error).message}`;
          jobs.fail(
            job,
            job.state,
            { code: findGantryError(err)?.gantryCode ?? 'INTERNAL_ERROR', message },
            RESTART_EVENT,
          );
          deps.warn(job.gatewayId, `Job ${job.id}: ${message}`);
        }
      }
    },
  };
}
