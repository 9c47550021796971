/**
 * One OTA job (download → verify → install → reboot), as a pure statechart.
 *
 * Contract with the service that drives it (names are fixed; fields may be added):
 * - Input `UpdateJobInput`; context `UpdateJobContext` (the input plus progress, timing, error,
 *   cancel and install fields). Time only comes from events (`at`, epoch ms) and actor outputs.
 * - Top-level state values: `pending`, `downloading`, `verifying`, `downloaded`, `installing`
 *   (`preparing` | `awaiting_reboot` | `rebooting` | `installed` | `activating`), and the finals
 *   `complete`, `error`, `cancelled`. `jobStateName()` flattens them; `jobPercentage()` gives the
 *   download percentage.
 * - A job is `complete` only once the new slot runs and is committed: after the install it waits in
 *   `installed` (no reboot asked for) or reboots, then in `activating` (booted, on trial), until the
 *   service reports what the A/B statechart decided: COMMITTED, or ACTIVATION_FAILED (the bootloader
 *   or the health check went back, or the slot stopped being staged). No timers: a reboot may be days
 *   away, and whoever reboots the gateway (an operator, a power cut) ends the wait.
 * - Events `UpdateJobEvent`: START, PROGRESS, TRANSFER_DONE, TRANSFER_FAILED (the last three sent
 *   back by `transferImage`), INSTALL, SAFETY_CHANGED, CANCEL, FAIL, RESUME, TRIAL_STARTED,
 *   COMMITTED, ACTIVATION_FAILED.
 * - Actors to `.provide()`: `transferImage` (fromCallback), `verifyImage`, `installImage`,
 *   `rebootGateway` (fromPromise, each resolving `{ at }`). Their inputs carry `resumed: true` when
 *   started by RESUME so a re-run can be idempotent (above all: do not reboot a gateway that already
 *   rebooted into the target slot).
 * - Action to `.provide()`: `invalidateTarget({ jobId, targetSlot, reason })`: the target slot's
 *   content can no longer be trusted (partly written, failed verification or install, or cancelled).
 * - Emitted (`actor.on`): `progress`, `install_blocked`.
 * - Restore: `createActor(machine, restoreOptions(persisted))`, start, send `RESUME` (see
 *   machines/persist.ts for why the children are dropped). The persisted shape is
 *   `updateJobPersisted`: bump its version when a change of context or states makes an older
 *   snapshot unfit to restore.
 */
import { assign, emit, fromCallback, fromPromise, setup, type EventObject, type SnapshotFrom } from 'xstate';
import { z } from 'zod';
import { ERROR_CODES, type ErrorCode } from '../core/errors.js';
import type { UpdateJobKind } from '../core/job-kinds.js';
import { otherSlot, type SlotId } from '../device/types.js';
import { persistedMachine, slotIdSchema } from './persist.js';

/** The kinds the statechart tells apart: a factory reset runs as a restore from the recovery image. */
export type JobKind = Exclude<UpdateJobKind, 'factory'>;
export type InstallStrategy = 'seamless' | 'in-place' | 'rolling';

export interface InstallOptions {
  strategy: InstallStrategy;
  rebootAfter: boolean;
  createSnapshot: boolean;
}

export interface UpdateJobInput {
  jobId: string;
  kind: JobKind;
  targetSlot: SlotId;
  updateId: string | null;
  version: string;
  totalBytes: number;
  createdAt: number;
}

export interface UpdateJobContext extends UpdateJobInput {
  bytesDone: number;
  speedBps: number;
  etaSeconds: number | null;
  startedAt: number | null;
  updatedAt: number;
  /** When the transfer reported done (the image is fully on the slot, not yet verified). */
  downloadedAt: number | null;
  finishedAt: number | null;
  errorCode: ErrorCode | null;
  errorMessage: string | null;
  /** Download percentage (one decimal) at the moment of CANCEL. */
  progressAtCancel: number | null;
  cancelReason: string | null;
  install: InstallOptions | null;
  /** Safety constraints currently blocking a reboot (from INSTALL and SAFETY_CHANGED). */
  blockedBy: string[];
  /** True while the current invoking state was (re-)entered by RESUME; passed to the actors. */
  resumed: boolean;
  /** When the install finished (the new slot staged). Absent from snapshots of older versions. */
  installedAt?: number | null;
}

export type UpdateJobEvent =
  | { type: 'START'; at: number }
  | {
      type: 'PROGRESS';
      bytesDone: number;
      speedBps: number;
      at: number;
      /**
       * The bytes this transfer will take, once known better than at creation: the delivery path
       * chosen (hop delta, dynamic chunks, full bundle) sets what crosses the network.
       */
      totalBytes?: number;
    }
  | { type: 'TRANSFER_DONE'; at: number }
  | { type: 'TRANSFER_FAILED'; code: ErrorCode; message: string; at: number }
  | ({ type: 'INSTALL'; at: number; blocking: string[] } & InstallOptions)
  | { type: 'SAFETY_CHANGED'; blocking: string[]; at: number }
  | { type: 'CANCEL'; reason: string; at: number }
  | { type: 'FAIL'; code: ErrorCode; message: string; at: number }
  | { type: 'RESUME'; at: number }
  /** The gateway booted the new slot; it is on trial (health check). */
  | { type: 'TRIAL_STARTED'; at: number }
  /** The new slot passed its health check and is committed. */
  | { type: 'COMMITTED'; at: number }
  /** The new slot will not run: the bootloader or the health check went back, or it was unstaged. */
  | { type: 'ACTIVATION_FAILED'; message: string; at: number };

export type UpdateJobEmitted =
  | {
      type: 'progress';
      jobId: string;
      bytesDone: number;
      totalBytes: number;
      percentage: number;
      speedBps: number;
      etaSeconds: number | null;
      at: number;
    }
  | { type: 'install_blocked'; jobId: string; blocking: string[]; at: number };

export interface TransferInput {
  jobId: string;
  targetSlot: SlotId;
  /** Resume point: bytes already on the slot. */
  offset: number;
  totalBytes: number;
  resumed: boolean;
}
export interface VerifyInput {
  jobId: string;
  targetSlot: SlotId;
  resumed: boolean;
}
export interface InstallInput {
  jobId: string;
  targetSlot: SlotId;
  install: InstallOptions;
  resumed: boolean;
}
export interface RebootInput {
  jobId: string;
  targetSlot: SlotId;
  resumed: boolean;
}
/** What the promise actors resolve with: when they finished (the machine has no clock). */
export interface ActorDone {
  at: number;
  /**
   * installImage only: the install also activated and committed everything (a multi-component
   * bundle's sequence, services/components/), so the job is complete without a reboot of its own.
   */
  activated?: boolean;
}
export type TransferEvent = Extract<
  UpdateJobEvent,
  { type: 'PROGRESS' | 'TRANSFER_DONE' | 'TRANSFER_FAILED' }
>;
export interface InvalidateTargetParams {
  jobId: string;
  targetSlot: SlotId;
  reason: 'cancelled' | 'failed';
}

/** A placeholder left unprovided fails the job loudly instead of hanging it. */
function notProvided(name: string): Error & { gantryCode: ErrorCode } {
  return Object.assign(new Error(`${name} is not provided (machine.provide({ actors }))`), {
    gantryCode: 'INTERNAL_ERROR' as const,
  });
}

function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);
}

/** The documented code carried by a rejected actor (GantryError.gantryCode), else `fallback`. */
export function errorCodeOf(error: unknown, fallback: ErrorCode): ErrorCode {
  const code = (error as { gantryCode?: unknown } | null | undefined)?.gantryCode;
  return isErrorCode(code) ? code : fallback;
}

function errorMessageOf(error: unknown, fallback: string): string {
  const message = (error as { message?: unknown } | null | undefined)?.message;
  return typeof message === 'string' && message !== '' ? message : fallback;
}

/** Errors thrown by the service's actors may carry `at`; otherwise the last known time is used. */
function errorAt(error: unknown, fallback: number): number {
  const at = (error as { at?: unknown } | null | undefined)?.at;
  return typeof at === 'number' && Number.isFinite(at) ? at : fallback;
}

/** Download percentage, one decimal, rounded down (never shows 100 before the transfer is done). */
export function jobPercentage(context: UpdateJobContext): number {
  if (context.downloadedAt !== null) return 100;
  if (context.totalBytes <= 0) return 0;
  const done = Math.min(Math.max(context.bytesDone, 0), context.totalBytes);
  return Math.floor((done * 1000) / context.totalBytes) / 10;
}

function etaSeconds(remaining: number, speedBps: number): number | null {
  if (!(speedBps > 0)) return null;
  return Math.ceil(Math.max(remaining, 0) / speedBps);
}

const KEEP_SAFETY_CURRENT = { SAFETY_CHANGED: { actions: 'recordSafety' } } as const;
const FAIL_KEEPING_TARGET = { FAIL: { target: '#updateJob.error', actions: 'recordFailure' } } as const;
/**
 * What the A/B statechart decided about the new slot, in every state where the install is done and
 * the job waits on a boot. The failed slot is not invalidated here: the partition manager retires a
 * slot that failed its trial, and an unstaged slot may still hold a good image.
 */
const OUTCOME_OF_BOOT = {
  COMMITTED: { target: '#updateJob.complete', actions: 'recordCommit' },
  ACTIVATION_FAILED: { target: '#updateJob.error', actions: 'recordActivationFailure' },
} as const;

export const updateJobMachine = setup({
  types: {
    context: {} as UpdateJobContext,
    events: {} as UpdateJobEvent,
    input: {} as UpdateJobInput,
    emitted: {} as UpdateJobEmitted,
  },
  actors: {
    transferImage: fromCallback<EventObject, TransferInput>(() => {
      throw notProvided('transferImage');
    }),
    verifyImage: fromPromise<ActorDone, VerifyInput>(async () => {
      throw notProvided('verifyImage');
    }),
    installImage: fromPromise<ActorDone, InstallInput>(async () => {
      throw notProvided('installImage');
    }),
    rebootGateway: fromPromise<ActorDone, RebootInput>(async () => {
      throw notProvided('rebootGateway');
    }),
  },
  guards: {
    installAllowed: ({ event }) => event.type === 'INSTALL' && event.blocking.length === 0,
    rebootAfterInstall: ({ context }) => context.install?.rebootAfter === true,
    rebootClear: ({ context }) => context.blockedBy.length === 0,
  },
  actions: {
    /** The service marks the target slot invalid (its content can no longer be trusted). */
    invalidateTarget: (_, _params: InvalidateTargetParams) => {},
    markResumed: assign({ resumed: true }),
    clearResumed: assign({ resumed: false }),
    recordSafety: assign(({ context, event }) =>
      event.type === 'SAFETY_CHANGED'
        ? { blockedBy: [...event.blocking], updatedAt: Math.max(context.updatedAt, event.at) }
        : {},
    ),
    recordFailure: assign(({ event }) => {
      if (event.type !== 'FAIL' && event.type !== 'TRANSFER_FAILED') return {};
      // Codes cross a runtime boundary (sendBack, the service): keep only documented ones.
      const fallback: ErrorCode = event.type === 'FAIL' ? 'INTERNAL_ERROR' : 'OTA_DOWNLOAD_FAILED';
      return {
        errorCode: isErrorCode(event.code) ? event.code : fallback,
        errorMessage: event.message,
        finishedAt: event.at,
        updatedAt: event.at,
        speedBps: 0,
        etaSeconds: null,
      };
    }),
    recordCommit: assign(({ context, event }) =>
      event.type === 'COMMITTED'
        ? { finishedAt: event.at, updatedAt: Math.max(context.updatedAt, event.at) }
        : {},
    ),
    recordActivationFailure: assign(({ context, event }) =>
      event.type === 'ACTIVATION_FAILED'
        ? {
            errorCode: 'OTA_INSTALL_FAILED' as const,
            errorMessage: event.message,
            finishedAt: event.at,
            updatedAt: Math.max(context.updatedAt, event.at),
          }
        : {},
    ),
    recordCancel: assign(({ context, event }) => {
      if (event.type !== 'CANCEL') return {};
      return {
        progressAtCancel: jobPercentage(context),
        cancelReason: event.reason,
        finishedAt: event.at,
        updatedAt: event.at,
        speedBps: 0,
        etaSeconds: null,
      };
    }),
  },
}).createMachine({
  id: 'updateJob',
  context: ({ input }) => ({
    ...input,
    bytesDone: 0,
    speedBps: 0,
    etaSeconds: null,
    startedAt: null,
    updatedAt: input.createdAt,
    downloadedAt: null,
    finishedAt: null,
    errorCode: null,
    errorMessage: null,
    progressAtCancel: null,
    cancelReason: null,
    install: null,
    blockedBy: [],
    resumed: false,
    installedAt: null,
  }),
  initial: 'pending',
  // SAFETY_CHANGED and FAIL are handled in every non-final state, not at the root: `snapshot.can()`
  // does not look at the machine's status, so a root handler would make it answer true once final.
  states: {
    pending: {
      on: {
        ...KEEP_SAFETY_CURRENT,
        ...FAIL_KEEPING_TARGET,
        START: {
          target: 'downloading',
          actions: assign(({ event }) => ({ startedAt: event.at, updatedAt: event.at })),
        },
        // Nothing was written yet: the target slot may still hold a good image (often the
        // fallback), so a cancel here must not invalidate it.
        CANCEL: { target: 'cancelled', actions: 'recordCancel' },
      },
    },

    downloading: {
      exit: 'clearResumed',
      invoke: {
        id: 'transferImage',
        src: 'transferImage',
        input: ({ context }) => ({
          jobId: context.jobId,
          targetSlot: context.targetSlot,
          offset: context.bytesDone,
          totalBytes: context.totalBytes,
          resumed: context.resumed,
        }),
        onError: {
          target: 'error',
          actions: [
            assign(({ context, event }) => ({
              errorCode: errorCodeOf(event.error, 'OTA_DOWNLOAD_FAILED'),
              errorMessage: errorMessageOf(event.error, 'Image transfer failed'),
              finishedAt: errorAt(event.error, context.updatedAt),
              speedBps: 0,
              etaSeconds: null,
            })),
            { type: 'invalidateTarget', params: ({ context }) => invalidate(context, 'failed') },
          ],
        },
      },
      on: {
        ...KEEP_SAFETY_CURRENT,
        PROGRESS: {
          actions: [
            assign(({ context, event }) => {
              const totalBytes =
                event.totalBytes !== undefined && event.totalBytes > 0
                  ? event.totalBytes
                  : context.totalBytes;
              const cap = totalBytes > 0 ? totalBytes : Number.POSITIVE_INFINITY;
              const bytesDone = Math.min(Math.max(event.bytesDone, 0), cap);
              const speedBps = Math.max(event.speedBps, 0);
              return {
                totalBytes,
                bytesDone,
                speedBps,
                etaSeconds: etaSeconds(totalBytes - bytesDone, speedBps),
                updatedAt: event.at,
              };
            }),
            emit(({ context, event }) => progressEvent(context, event.at)),
          ],
        },
        TRANSFER_DONE: {
          target: 'verifying',
          actions: [
            assign(({ context, event }) => ({
              bytesDone: Math.max(context.bytesDone, context.totalBytes),
              speedBps: 0,
              etaSeconds: null,
              downloadedAt: event.at,
              updatedAt: event.at,
            })),
            emit(({ context, event }) => progressEvent(context, event.at)),
          ],
        },
        TRANSFER_FAILED: {
          target: 'error',
          actions: [
            'recordFailure',
            { type: 'invalidateTarget', params: ({ context }) => invalidate(context, 'failed') },
          ],
        },
        FAIL: {
          target: 'error',
          actions: [
            'recordFailure',
            { type: 'invalidateTarget', params: ({ context }) => invalidate(context, 'failed') },
          ],
        },
        CANCEL: {
          target: 'cancelled',
          actions: [
            'recordCancel',
            { type: 'invalidateTarget', params: ({ context }) => invalidate(context, 'cancelled') },
          ],
        },
        RESUME: { target: 'downloading', reenter: true, actions: 'markResumed' },
      },
    },

    verifying: {
      exit: 'clearResumed',
      invoke: {
        id: 'verifyImage',
        src: 'verifyImage',
        input: ({ context }) => ({
          jobId: context.jobId,
          targetSlot: context.targetSlot,
          resumed: context.resumed,
        }),
        onDone: {
          target: 'downloaded',
          actions: assign(({ context, event }) => ({
            updatedAt: Math.max(context.updatedAt, event.output.at),
          })),
        },
        onError: {
          target: 'error',
          actions: [
            assign(({ context, event }) => ({
              errorCode: errorCodeOf(event.error, 'OTA_INVALID_IMAGE'),
              errorMessage: errorMessageOf(event.error, 'Image verification failed'),
              finishedAt: errorAt(event.error, context.updatedAt),
            })),
            { type: 'invalidateTarget', params: ({ context }) => invalidate(context, 'failed') },
          ],
        },
      },
      on: {
        ...KEEP_SAFETY_CURRENT,
        FAIL: {
          target: 'error',
          actions: [
            'recordFailure',
            { type: 'invalidateTarget', params: ({ context }) => invalidate(context, 'failed') },
          ],
        },
        CANCEL: {
          target: 'cancelled',
          actions: [
            'recordCancel',
            { type: 'invalidateTarget', params: ({ context }) => invalidate(context, 'cancelled') },
          ],
        },
        RESUME: { target: 'verifying', reenter: true, actions: 'markResumed' },
      },
    },

    /** Verified image on the target slot, waiting for INSTALL (and a clear safety state). */
    downloaded: {
      on: {
        ...KEEP_SAFETY_CURRENT,
        // The verified image stays: the slot is still trustworthy.
        ...FAIL_KEEPING_TARGET,
        INSTALL: [
          {
            guard: 'installAllowed',
            target: 'installing',
            actions: assign(({ event }) => ({
              install: {
                strategy: event.strategy,
                rebootAfter: event.rebootAfter,
                createSnapshot: event.createSnapshot,
              },
              blockedBy: [],
              updatedAt: event.at,
            })),
          },
          {
            actions: [
              assign(({ event }) => ({ blockedBy: [...event.blocking], updatedAt: event.at })),
              emit(({ context, event }) => ({
                type: 'install_blocked' as const,
                jobId: context.jobId,
                blocking: [...event.blocking],
                at: event.at,
              })),
            ],
          },
        ],
        CANCEL: {
          target: 'cancelled',
          actions: [
            'recordCancel',
            { type: 'invalidateTarget', params: ({ context }) => invalidate(context, 'cancelled') },
          ],
        },
      },
    },

    /** Past the point of no return: no CANCEL handler anywhere below (snapshot.can(CANCEL) is false). */
    installing: {
      initial: 'preparing',
      // Inherited by awaiting_reboot and rebooting (installed, bootloader armed: slot kept);
      // preparing overrides FAIL because a half-done install leaves the slot untrustworthy.
      on: { ...KEEP_SAFETY_CURRENT, ...FAIL_KEEPING_TARGET },
      states: {
        preparing: {
          exit: 'clearResumed',
          invoke: {
            id: 'installImage',
            src: 'installImage',
            input: ({ context }) => ({
              jobId: context.jobId,
              targetSlot: context.targetSlot,
              // Always set on entry (INSTALL records it before entering installing).
              install: context.install ?? { strategy: 'seamless', rebootAfter: false, createSnapshot: false },
              resumed: context.resumed,
            }),
            onDone: [
              {
                guard: ({ event }) => event.output.activated === true,
                target: '#updateJob.complete',
                actions: assign(({ context, event }) => ({
                  ...installedAt(context, event.output.at),
                  finishedAt: event.output.at,
                })),
              },
              {
                guard: 'rebootAfterInstall',
                target: 'awaiting_reboot',
                actions: assign(({ context, event }) => installedAt(context, event.output.at)),
              },
              {
                target: 'installed',
                actions: assign(({ context, event }) => installedAt(context, event.output.at)),
              },
            ],
            onError: {
              target: '#updateJob.error',
              actions: [
                assign(({ context, event }) => ({
                  errorCode: errorCodeOf(event.error, 'OTA_INSTALL_FAILED'),
                  errorMessage: errorMessageOf(event.error, 'Installation failed'),
                  finishedAt: errorAt(event.error, context.updatedAt),
                })),
                { type: 'invalidateTarget', params: ({ context }) => invalidate(context, 'failed') },
              ],
            },
          },
          on: {
            FAIL: {
              target: '#updateJob.error',
              actions: [
                'recordFailure',
                { type: 'invalidateTarget', params: ({ context }) => invalidate(context, 'failed') },
              ],
            },
            RESUME: { target: 'preparing', reenter: true, actions: 'markResumed' },
          },
        },
        /**
         * Installed; the reboot waits here while safety constraints block it. Entered with a clear
         * `blockedBy`, the `always` leaves at once, so this state is only ever seen while blocked.
         */
        awaiting_reboot: {
          always: { guard: 'rebootClear', target: 'rebooting' },
          // Someone else rebooted the gateway while safety held ours back.
          on: { ...OUTCOME_OF_BOOT, TRIAL_STARTED: { target: 'activating' } },
        },
        rebooting: {
          exit: 'clearResumed',
          invoke: {
            id: 'rebootGateway',
            src: 'rebootGateway',
            input: ({ context }) => ({
              jobId: context.jobId,
              targetSlot: context.targetSlot,
              resumed: context.resumed,
            }),
            // Back from the reboot (or the reboot is under way: a real one ends this process); what
            // the gateway booted is the partition statechart's to say. No outcome is taken while the
            // reboot runs, so every reboot is followed by `activating` in the job's history.
            onDone: {
              target: 'activating',
              actions: assign(({ context, event }) => ({
                updatedAt: Math.max(context.updatedAt, event.output.at),
              })),
            },
            onError: {
              target: '#updateJob.error',
              // The image is installed and the bootloader armed: the slot is not invalidated.
              actions: assign(({ context, event }) => ({
                errorCode: errorCodeOf(event.error, 'OTA_INSTALL_FAILED'),
                errorMessage: errorMessageOf(event.error, 'Reboot failed'),
                finishedAt: errorAt(event.error, context.updatedAt),
              })),
            },
          },
          on: {
            RESUME: { target: 'rebooting', reenter: true, actions: 'markResumed' },
          },
        },
        /**
         * Installed without a reboot (`reboot_after: false`): the new slot is staged as the next boot
         * and waits for whoever reboots the gateway. Still holds the gateway's operation.
         */
        installed: {
          on: { ...OUTCOME_OF_BOOT, TRIAL_STARTED: { target: 'activating' } },
        },
        /** The gateway rebooted; the new slot is on trial until it is committed or left. */
        activating: {
          on: { ...OUTCOME_OF_BOOT },
        },
      },
    },

    complete: { type: 'final' },
    error: { type: 'final' },
    cancelled: { type: 'final' },
  },
});

function installedAt(context: UpdateJobContext, at: number): Partial<UpdateJobContext> {
  return { installedAt: at, updatedAt: Math.max(context.updatedAt, at) };
}

function invalidate(
  context: UpdateJobContext,
  reason: InvalidateTargetParams['reason'],
): InvalidateTargetParams {
  return { jobId: context.jobId, targetSlot: context.targetSlot, reason };
}

function progressEvent(
  context: UpdateJobContext,
  at: number,
): Extract<UpdateJobEmitted, { type: 'progress' }> {
  return {
    type: 'progress',
    jobId: context.jobId,
    bytesDone: context.bytesDone,
    totalBytes: context.totalBytes,
    percentage: jobPercentage(context),
    speedBps: context.speedBps,
    etaSeconds: context.etaSeconds,
    at,
  };
}

export type UpdateJobMachine = typeof updateJobMachine;
export type UpdateJobSnapshot = SnapshotFrom<typeof updateJobMachine>;

export const JOB_STATE_NAMES = [
  'pending',
  'downloading',
  'verifying',
  'downloaded',
  'installing',
  'awaiting_reboot',
  'rebooting',
  'installed',
  'activating',
  'complete',
  'error',
  'cancelled',
] as const;
export type JobStateName = (typeof JOB_STATE_NAMES)[number];

/** The flattened state name; `installing.preparing` is reported as `installing`. */
export function jobStateName(snapshot: Pick<UpdateJobSnapshot, 'value'>): JobStateName {
  const value = snapshot.value;
  if (typeof value === 'string') return value;
  const sub = value.installing;
  return sub === 'preparing' ? 'installing' : sub;
}

export function isFinalJobState(name: JobStateName): boolean {
  return name === 'complete' || name === 'error' || name === 'cancelled';
}

/**
 * The slot that must boot and be committed for the job to be complete: the target slot, except for
 * an in-place install, which rewrote the running slot (always the other one: a job never targets
 * the booted slot).
 */
export function activationSlot(context: Pick<UpdateJobContext, 'targetSlot' | 'install'>): SlotId {
  return context.install?.strategy === 'in-place' ? otherSlot(context.targetSlot) : context.targetSlot;
}

const errorCodeSchema = z.enum(Object.keys(ERROR_CODES) as [ErrorCode, ...ErrorCode[]]);

/** The job's persisted snapshot (services/actor-snapshots.ts): checked before a job is resumed. */
export const updateJobPersisted = persistedMachine({
  id: 'updateJob',
  version: 1,
  value: z.union([
    z.enum(['pending', 'downloading', 'verifying', 'downloaded', 'complete', 'error', 'cancelled']),
    z.strictObject({
      installing: z.enum(['preparing', 'awaiting_reboot', 'rebooting', 'installed', 'activating']),
    }),
  ]),
  context: z.strictObject({
    jobId: z.string(),
    kind: z.enum(['download', 'deploy', 'restore']),
    targetSlot: slotIdSchema,
    updateId: z.string().nullable(),
    version: z.string(),
    totalBytes: z.number(),
    createdAt: z.number(),
    bytesDone: z.number(),
    speedBps: z.number(),
    etaSeconds: z.number().nullable(),
    startedAt: z.number().nullable(),
    updatedAt: z.number(),
    downloadedAt: z.number().nullable(),
    finishedAt: z.number().nullable(),
    errorCode: errorCodeSchema.nullable(),
    errorMessage: z.string().nullable(),
    progressAtCancel: z.number().nullable(),
    cancelReason: z.string().nullable(),
    install: z
      .strictObject({
        strategy: z.enum(['seamless', 'in-place', 'rolling']),
        rebootAfter: z.boolean(),
        createSnapshot: z.boolean(),
      })
      .nullable(),
    blockedBy: z.array(z.string()),
    resumed: z.boolean(),
    installedAt: z.number().nullable().optional(),
  }) satisfies z.ZodType<UpdateJobContext>,
});
export type PersistedUpdateJob = z.output<typeof updateJobPersisted.schema>;
