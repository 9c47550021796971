import { createActor, fromCallback, fromPromise, type Actor, type EventObject } from 'xstate';
import {
  updateJobMachine,
  type ActorDone,
  type InstallInput,
  type InvalidateTargetParams,
  type RebootInput,
  type TransferEvent,
  type TransferInput,
  type UpdateJobEmitted,
  type UpdateJobInput,
  type VerifyInput,
} from '../../machines/update-job.js';

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets settled promises reach the actor (a macrotask turn; no real time passes). */
export function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export interface PendingCall<I> {
  input: I;
  signal: AbortSignal;
  done: Deferred<ActorDone>;
}

export interface TransferRun {
  input: TransferInput;
  sendBack: (event: TransferEvent) => void;
  stopped: boolean;
}

export const JOB_INPUT: UpdateJobInput = {
  jobId: 'job-1',
  kind: 'download',
  targetSlot: 'B',
  updateId: 'upd-1',
  version: 'v5.0.10',
  totalBytes: 1000,
  createdAt: 1_000,
};

/**
 * Fake effects for the job machine: every start of an invoked actor is recorded, promise actors
 * settle only when the test says so, and the transfer's `sendBack` is handed to the test.
 */
export class JobHarness {
  readonly transfers: TransferRun[] = [];
  readonly verifies: PendingCall<VerifyInput>[] = [];
  readonly installs: PendingCall<InstallInput>[] = [];
  readonly reboots: PendingCall<RebootInput>[] = [];
  readonly invalidations: InvalidateTargetParams[] = [];
  readonly emitted: UpdateJobEmitted[] = [];

  readonly machine = updateJobMachine.provide({
    actors: {
      transferImage: fromCallback<EventObject, TransferInput>(({ input, sendBack }) => {
        const run: TransferRun = { input, sendBack: (event) => sendBack(event), stopped: false };
        this.transfers.push(run);
        return () => {
          run.stopped = true;
        };
      }),
      verifyImage: fromPromise<ActorDone, VerifyInput>(({ input, signal }) =>
        this.call(this.verifies, input, signal),
      ),
      installImage: fromPromise<ActorDone, InstallInput>(({ input, signal }) =>
        this.call(this.installs, input, signal),
      ),
      rebootGateway: fromPromise<ActorDone, RebootInput>(({ input, signal }) =>
        this.call(this.reboots, input, signal),
      ),
    },
    actions: {
      invalidateTarget: (_, params) => {
        this.invalidations.push(params);
      },
    },
  });

  private call<I>(list: PendingCall<I>[], input: I, signal: AbortSignal): Promise<ActorDone> {
    const done = deferred<ActorDone>();
    list.push({ input, signal, done });
    return done.promise;
  }

  start(input: UpdateJobInput = JOB_INPUT): Actor<typeof this.machine> {
    return this.listen(createActor(this.machine, { input }).start());
  }

  listen(actor: Actor<typeof this.machine>): Actor<typeof this.machine> {
    actor.on('*', (event) => {
      this.emitted.push(event);
    });
    return actor;
  }

  /** The transfer that is still running (exactly one, or the test fails). */
  liveTransfer(): TransferRun {
    const live = this.transfers.filter((t) => !t.stopped);
    if (live.length !== 1) throw new Error(`expected one live transfer, found ${live.length}`);
    return live[0]!;
  }

  static last<I>(list: PendingCall<I>[]): PendingCall<I> {
    const call = list[list.length - 1];
    if (!call) throw new Error('no call recorded');
    return call;
  }
}
