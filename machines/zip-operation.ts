import { assign, emit, fromPromise, setup } from 'xstate';
import { z } from 'zod';
import { ZIP_JOB_KINDS, type ZipJobKind } from '../core/job-kinds.js';
import { persistedMachine } from './persist.js';

/**
 * One ZIP operation (POST /ota-configure or POST /ota-update): pending → in_progress (extracting →
 * validating → applying → running the plugin's post-install hook) → complete | error.
 *
 * Pure: the file work is done by the named actors, which the server provides with `.provide()`.
 * Everything in the context is plain JSON, so the persisted snapshot round-trips through the
 * `jobs` table. Progress and message live in the context, so `/ota-update-progress` reads them from
 * the stored snapshot and never from a live actor.
 */

export type ZipOperationKind = ZipJobKind;
export type ZipOperationErrorCode = 'OTA_INVALID_IMAGE' | 'OTA_INSTALL_FAILED';

export interface ZipOperationInput {
  updateId: string;
  gatewayId: string;
  kind: ZipOperationKind;
  /** The uploaded archive, on disk under the data dir. */
  zipPath: string;
}

/** What validation learnt from the manifest, as much as the later steps need. */
export type ZipManifestSummary =
  | { kind: 'configuration' }
  | {
      kind: 'plugin';
      name: string;
      version: string;
      hooks: Array<'post-install' | 'health-check'>;
      timeoutSeconds: number;
    };

export interface ZipOperationContext extends ZipOperationInput {
  progress: number;
  message: string;
  /** The current step, machine-readable (also the monitor's `current_operation`). */
  step: ZipOperationStep;
  stageDir: string | null;
  manifest: ZipManifestSummary | null;
  error: { code: ZipOperationErrorCode; message: string } | null;
}

export type ZipOperationStep =
  | 'pending'
  | 'extracting'
  | 'validating'
  | 'applying'
  | 'running_hooks'
  | 'rolling_back'
  | 'complete'
  | 'error';

export type ZipOperationEvent = { type: 'START' } | { type: 'ABORT'; reason: string };

export type ZipOperationEmitted =
  | { type: 'step'; step: ZipOperationStep; message: string; progress: number }
  | { type: 'completed' }
  | { type: 'failed'; code: ZipOperationErrorCode; message: string };

export interface ExtractInput {
  updateId: string;
  gatewayId: string;
  kind: ZipOperationKind;
  zipPath: string;
}
export interface ExtractOutput {
  stageDir: string;
  files: number;
  bytes: number;
}
export interface ValidateInput {
  gatewayId: string;
  kind: ZipOperationKind;
  stageDir: string;
}
export interface ApplyInput {
  updateId: string;
  gatewayId: string;
  zipPath: string;
  stageDir: string;
  manifest: ZipManifestSummary;
}
export interface PluginHookInput {
  updateId: string;
  gatewayId: string;
  manifest: Extract<ZipManifestSummary, { kind: 'plugin' }>;
}

/** Progress of each step, so the numbers only ever go up. */
export const STEP_PROGRESS: Record<Exclude<ZipOperationStep, 'error'>, number> = {
  pending: 0,
  extracting: 10,
  validating: 40,
  applying: 70,
  running_hooks: 85,
  rolling_back: 85,
  complete: 100,
};

export const COMPLETE_MESSAGE = 'Operation completed successfully';

function stepMessage(step: ZipOperationStep, kind: ZipOperationKind): string {
  const config = kind === 'configure';
  switch (step) {
    case 'pending':
      return config ? 'Configuration update queued' : 'Plugin update queued';
    case 'extracting':
      return 'Extracting ZIP archive';
    case 'validating':
      return config ? 'Validating configuration' : 'Validating plugin';
    case 'applying':
      return config ? 'Applying configuration' : 'Installing plugin';
    case 'running_hooks':
      return 'Running post-install hook';
    case 'rolling_back':
      return 'Restoring the previous plugin version';
    case 'complete':
      return COMPLETE_MESSAGE;
    case 'error':
      return 'Operation failed';
  }
}

function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return typeof error === 'string' ? error : 'Unknown error';
}

const notProvided = (name: string) => async (): Promise<never> => {
  throw new Error(`zip-operation actor "${name}" not provided`);
};

export const zipOperationMachine = setup({
  types: {
    context: {} as ZipOperationContext,
    input: {} as ZipOperationInput,
    events: {} as ZipOperationEvent,
    emitted: {} as ZipOperationEmitted,
  },
  actors: {
    extract: fromPromise<ExtractOutput, ExtractInput>(notProvided('extract')),
    validate: fromPromise<ZipManifestSummary, ValidateInput>(notProvided('validate')),
    apply: fromPromise<void, ApplyInput>(notProvided('apply')),
    postInstall: fromPromise<void, PluginHookInput>(notProvided('postInstall')),
    rollback: fromPromise<void, PluginHookInput>(notProvided('rollback')),
  },
  guards: {
    hasPostInstall: ({ context }) =>
      context.manifest?.kind === 'plugin' && context.manifest.hooks.includes('post-install'),
  },
  actions: {
    enterStep: assign(({ context }, params: { step: Exclude<ZipOperationStep, 'error'> }) => ({
      step: params.step,
      progress: Math.max(context.progress, STEP_PROGRESS[params.step]),
      message: stepMessage(params.step, context.kind),
    })),
    announceStep: emit(({ context }) => ({
      type: 'step' as const,
      step: context.step,
      message: context.message,
      progress: context.progress,
    })),
    fail: assign(({ context }, params: { code: ZipOperationErrorCode; message: string }) => ({
      // Only the first failure counts: a failed rollback must not hide why it rolled back.
      error: context.error ?? { code: params.code, message: params.message },
    })),
    enterError: assign(({ context }) => ({
      step: 'error' as const,
      message: stepMessage('error', context.kind),
    })),
    announceFailure: emit(({ context }) => ({
      type: 'failed' as const,
      code: context.error?.code ?? 'OTA_INSTALL_FAILED',
      message: context.error?.message ?? 'Operation failed',
    })),
    announceCompletion: emit({ type: 'completed' as const }),
  },
}).createMachine({
  id: 'zipOp',
  context: ({ input }) => ({
    ...input,
    step: 'pending',
    progress: 0,
    message: stepMessage('pending', input.kind),
    stageDir: null,
    manifest: null,
    error: null,
  }),
  initial: 'pending',
  states: {
    pending: {
      on: {
        START: 'in_progress',
        ABORT: {
          target: 'error',
          actions: {
            type: 'fail',
            params: ({ event }) => ({ code: 'OTA_INSTALL_FAILED', message: event.reason }),
          },
        },
      },
    },
    in_progress: {
      initial: 'extracting',
      states: {
        extracting: {
          entry: [{ type: 'enterStep', params: { step: 'extracting' } }, 'announceStep'],
          invoke: {
            src: 'extract',
            input: ({ context }) => ({
              updateId: context.updateId,
              gatewayId: context.gatewayId,
              kind: context.kind,
              zipPath: context.zipPath,
            }),
            onDone: {
              target: 'validating',
              actions: assign({ stageDir: ({ event }) => event.output.stageDir }),
            },
            onError: {
              target: '#zipOp.error',
              actions: {
                type: 'fail',
                params: ({ event }) => ({ code: 'OTA_INVALID_IMAGE', message: errorMessage(event.error) }),
              },
            },
          },
          on: {
            ABORT: {
              target: '#zipOp.error',
              actions: {
                type: 'fail',
                params: ({ event }) => ({ code: 'OTA_INSTALL_FAILED', message: event.reason }),
              },
            },
          },
        },
        validating: {
          entry: [{ type: 'enterStep', params: { step: 'validating' } }, 'announceStep'],
          invoke: {
            src: 'validate',
            input: ({ context }) => ({
              gatewayId: context.gatewayId,
              kind: context.kind,
              stageDir: context.stageDir!,
            }),
            onDone: { target: 'applying', actions: assign({ manifest: ({ event }) => event.output }) },
            onError: {
              target: '#zipOp.error',
              actions: {
                type: 'fail',
                params: ({ event }) => ({ code: 'OTA_INVALID_IMAGE', message: errorMessage(event.error) }),
              },
            },
          },
          on: {
            ABORT: {
              target: '#zipOp.error',
              actions: {
                type: 'fail',
                params: ({ event }) => ({ code: 'OTA_INSTALL_FAILED', message: event.reason }),
              },
            },
          },
        },
        // No ABORT here: applying is a few renames and one settings write; interrupting it
        // halfway is exactly what the atomic swap exists to avoid, so it runs to its end.
        applying: {
          entry: [{ type: 'enterStep', params: { step: 'applying' } }, 'announceStep'],
          invoke: {
            src: 'apply',
            input: ({ context }) => ({
              updateId: context.updateId,
              gatewayId: context.gatewayId,
              zipPath: context.zipPath,
              stageDir: context.stageDir!,
              manifest: context.manifest!,
            }),
            onDone: [{ guard: 'hasPostInstall', target: 'running_hooks' }, { target: '#zipOp.complete' }],
            onError: {
              target: '#zipOp.error',
              actions: {
                type: 'fail',
                params: ({ event }) => ({ code: 'OTA_INSTALL_FAILED', message: errorMessage(event.error) }),
              },
            },
          },
        },
        running_hooks: {
          entry: [{ type: 'enterStep', params: { step: 'running_hooks' } }, 'announceStep'],
          invoke: {
            src: 'postInstall',
            input: ({ context }) => ({
              updateId: context.updateId,
              gatewayId: context.gatewayId,
              manifest: context.manifest as PluginHookInput['manifest'],
            }),
            onDone: { target: '#zipOp.complete' },
            onError: {
              target: 'rolling_back',
              actions: {
                type: 'fail',
                params: ({ event }) => ({ code: 'OTA_INSTALL_FAILED', message: errorMessage(event.error) }),
              },
            },
          },
          on: {
            // Leaving the state stops the hook actor, whose abort signal kills the hook.
            ABORT: {
              target: 'rolling_back',
              actions: {
                type: 'fail',
                params: ({ event }) => ({ code: 'OTA_INSTALL_FAILED', message: event.reason }),
              },
            },
          },
        },
        /** A plugin whose post-install hook failed is not left half-installed. */
        rolling_back: {
          entry: [{ type: 'enterStep', params: { step: 'rolling_back' } }, 'announceStep'],
          invoke: {
            src: 'rollback',
            input: ({ context }) => ({
              updateId: context.updateId,
              gatewayId: context.gatewayId,
              manifest: context.manifest as PluginHookInput['manifest'],
            }),
            onDone: { target: '#zipOp.error' },
            onError: {
              target: '#zipOp.error',
              actions: assign(({ context, event }) => ({
                error: {
                  code: 'OTA_INSTALL_FAILED' as const,
                  message: `${context.error?.message ?? 'Post-install hook failed'}; restoring the previous version failed too: ${errorMessage(event.error)}`,
                },
              })),
            },
          },
        },
      },
    },
    complete: {
      type: 'final',
      entry: [{ type: 'enterStep', params: { step: 'complete' } }, 'announceStep', 'announceCompletion'],
    },
    error: {
      type: 'final',
      entry: ['enterError', 'announceFailure'],
    },
  },
});

export type ZipOperationMachine = typeof zipOperationMachine;

/** "in_progress.extracting" for a nested state value, "complete" for a top-level one. */
export function flattenState(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    const [key, inner] = Object.entries(value)[0] ?? [];
    if (key !== undefined) return `${key}.${flattenState(inner)}`;
  }
  return String(value);
}

/** The documented progress statuses. `pending` is not one of them: a queued job reads as idle. */
export function progressStatus(state: string): 'idle' | 'in_progress' | 'complete' | 'error' {
  if (state === 'complete') return 'complete';
  if (state === 'error') return 'error';
  if (state.startsWith('in_progress')) return 'in_progress';
  return 'idle';
}

/** An operation's persisted snapshot (services/actor-snapshots.ts): what /ota-update-progress reads. */
export const zipOperationPersisted = persistedMachine({
  id: 'zipOp',
  version: 1,
  value: z.union([
    z.enum(['pending', 'complete', 'error']),
    z.strictObject({
      in_progress: z.enum(['extracting', 'validating', 'applying', 'running_hooks', 'rolling_back']),
    }),
  ]),
  context: z.strictObject({
    updateId: z.string(),
    gatewayId: z.string(),
    kind: z.enum(ZIP_JOB_KINDS),
    zipPath: z.string(),
    progress: z.number(),
    message: z.string(),
    step: z.enum([
      'pending',
      'extracting',
      'validating',
      'applying',
      'running_hooks',
      'rolling_back',
      'complete',
      'error',
    ]),
    stageDir: z.string().nullable(),
    manifest: z
      .discriminatedUnion('kind', [
        z.strictObject({ kind: z.literal('configuration') }),
        z.strictObject({
          kind: z.literal('plugin'),
          name: z.string(),
          version: z.string(),
          hooks: z.array(z.enum(['post-install', 'health-check'])),
          timeoutSeconds: z.number(),
        }),
      ])
      .nullable(),
    error: z
      .strictObject({ code: z.enum(['OTA_INVALID_IMAGE', 'OTA_INSTALL_FAILED']), message: z.string() })
      .nullable(),
  }) satisfies z.ZodType<ZipOperationContext>,
});
