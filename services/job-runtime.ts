import type { AnyActorRef, EventObject, InspectionEvent } from 'xstate';
import type { JobKind } from '../core/job-kinds.js';
import type { PersistedMachine } from '../machines/persist.js';
import type { ActorSnapshotStore } from './actor-snapshots.js';
import type { JobPatch, JobRef, JobStore } from './jobs.js';

/** The snapshot type of an actor (`SnapshotFrom` does not resolve for a generic actor type). */
type SnapshotFrom<TActor extends AnyActorRef> = ReturnType<TActor['getSnapshot']>;

/** A change of state of a job, as recorded in its history. */
export interface JobStateChange {
  from: string;
  to: string;
  event: string;
}

export interface JobActorOptions<TActor extends AnyActorRef, K extends JobKind> {
  jobs: JobStore;
  snapshots: ActorSnapshotStore;
  /** The statechart's persisted shape (its row key and version). */
  machine: PersistedMachine<unknown, unknown>;
  job: JobRef<K> & { gatewayId: string };
  /** The state the job's row holds now: the one it was created in, or restored in. */
  state: string;
  /** The flattened state name the row and history record. */
  stateOf(snapshot: SnapshotFrom<TActor>): string;
  /** The row's error columns, from the snapshot. */
  errorOf(snapshot: SnapshotFrom<TActor>): { code: string; message: string } | null;
  /** What the history row keeps of the context. */
  transitionContext(snapshot: SnapshotFrom<TActor>): Record<string, unknown>;
  /**
   * Between changes of state: whether this snapshot is saved now (a throttled progress save), and
   * what else of the row is saved with it, atomically. Null: not now.
   */
  checkpoint?(
    snapshot: SnapshotFrom<TActor>,
    event: EventObject,
  ): Pick<JobPatch<K>, 'artifact' | 'progress'> | null;
  /**
   * Told once the store holds it: `change` for a change of state (bus, logs, the operation lock),
   * null for any other snapshot (throttled progress).
   */
  announce(snapshot: SnapshotFrom<TActor>, change: JobStateChange | null, event: EventObject): void;
  /** The inspector's recorder, called after persisting (its stream reads the store back). */
  record?: (ev: InspectionEvent) => void;
  /** A persist that failed: the job's state in the store is behind. Must be loud. */
  onPersistFailed(err: unknown): void;
}

/**
 * The one way a job's statechart runs: `create` builds the actor with the `inspect` given to it;
 * every snapshot the actor takes is then, in this order,
 * 1. persisted: on a change of state the actor's snapshot (services/actor-snapshots.ts) and the job
 *    row with its history row (services/jobs.ts) in one SQLite transaction; between changes, when
 *    `checkpoint` asks for it, the snapshot and the patched row, also in one;
 * 2. announced (`announce`: bus, logs, locks), so a client never sees a state the store does not have;
 * 3. recorded for the inspector.
 * An actor that crashes (a bug: every invoke has an onError) ends its job in `error` (INTERNAL_ERROR).
 * Used by update jobs (services/updates/update-service.ts) and ZIP operations (services/zip-operations.ts).
 */
export function runJobActor<TActor extends AnyActorRef, K extends JobKind>(
  create: (inspect: (ev: InspectionEvent) => void) => TActor,
  opts: JobActorOptions<TActor, K>,
): TActor {
  let lastState = opts.state;
  // The actor, once `create` returned it. XState inspects `@xstate.actor` inside createActor,
  // before `actor` below is initialised: the inspect callback looks at snapshots only, which come
  // once it has started.
  const self: { actor?: TActor } = {};

  const save = (
    change: JobStateChange,
    snapshot: SnapshotFrom<TActor>,
    error: { code: string; message: string } | null,
  ) => {
    opts.jobs.transaction(() => {
      opts.snapshots.save(opts.machine, opts.job.id, opts.job.gatewayId, self.actor!.getPersistedSnapshot());
      opts.jobs.transition(
        opts.job,
        { ...change, context: opts.transitionContext(snapshot) },
        { errorCode: error?.code ?? null, errorMessage: error?.message ?? null },
      );
    });
    lastState = change.to;
  };

  const persist = (snapshot: SnapshotFrom<TActor>, event: EventObject): void => {
    const state = opts.stateOf(snapshot);
    if (state === lastState) {
      const patch = opts.checkpoint?.(snapshot, event);
      if (patch) {
        opts.jobs.transaction(() => {
          opts.snapshots.save(
            opts.machine,
            opts.job.id,
            opts.job.gatewayId,
            self.actor!.getPersistedSnapshot(),
          );
          opts.jobs.update(opts.job, patch);
        });
      }
      opts.announce(snapshot, null, event);
      return;
    }
    const change: JobStateChange = { from: lastState, to: state, event: event.type };
    save(change, snapshot, opts.errorOf(snapshot));
    opts.announce(snapshot, change, event);
  };

  /** The actor crashed (an action or guard threw): the job ends in `error`, like any failure. */
  const crashed = (err: unknown): void => {
    if (lastState === 'error') return;
    const snapshot = self.actor!.getSnapshot() as SnapshotFrom<TActor>;
    const event = { type: 'xstate.error' };
    const change: JobStateChange = { from: lastState, to: 'error', event: event.type };
    const message = err instanceof Error ? err.message : String(err);
    try {
      save(change, snapshot, { code: 'INTERNAL_ERROR', message: `Internal error: ${message}` });
    } catch (persistErr) {
      opts.onPersistFailed(persistErr);
    }
    opts.announce(snapshot, change, event);
  };

  const actor = create((ev) => {
    const root = self.actor;
    // An errored snapshot was recorded by `crashed`, which XState calls first.
    if (
      ev.type === '@xstate.snapshot' &&
      root &&
      ev.actorRef === root &&
      root.getSnapshot().status !== 'error'
    ) {
      try {
        persist(root.getSnapshot() as SnapshotFrom<TActor>, ev.event);
      } catch (err) {
        // Inspection errors would vanish inside XState.
        opts.onPersistFailed(err);
      }
    }
    opts.record?.(ev);
  });
  self.actor = actor;
  // Without an error observer XState would also rethrow the crash from a timer and take the
  // process down.
  actor.subscribe({ error: crashed });
  return actor;
}
