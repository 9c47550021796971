/**
 * The components of a multi-component bundle, installed one after the other, as a pure statechart
 * (the child of an update job's install: services/components/sequence-runner.ts runs it and
 * persists its snapshot beside the job's).
 *
 * - `rolling` (and `in-place`, whose handlers write over the running copy): for each component in
 *   install order: install → wait for the safety interlock → activate (the handler reboots when the
 *   component needs it) → health-check → commit, then the next.
 * - `seamless`: every component installed first, then, once the interlock is clear, each activated,
 *   one reboot if any needs it, each health-checked, each committed.
 *
 * A failure anywhere sends the sequence to `unwinding`, which rolls back, one at a time and the
 * latest first: every component that was touched and not committed, then every committed component
 * whose declared requirements (`requires`) are not met by the versions then installed, until none is
 * left (`nextToUnwind`, the rule documented in the README). A rollback that fails stops everything
 * (`failed`, with the component marked `failed`): nothing more is touched on top of it.
 *
 * Actors to `.provide()` (fromPromise, each resolving `{ at }`): `installComponent`,
 * `activateComponent`, `checkComponent`, `commitComponent`, `rollbackComponent`, `rebootGateway`
 * (seamless only). Inputs carry `resumed: true` when re-entered by RESUME after a restart, so each
 * handler step can be idempotent. Events: `SAFETY_CHANGED`, `RESUME`.
 */
import { assign, fromPromise, setup, type SnapshotFrom } from 'xstate';
import { z } from 'zod';
import { unmetRequirements, type InstalledVersions, type Requirement } from './component-constraints.js';
import { persistedMachine } from './persist.js';
import { UPDATE_STRATEGIES, type UpdateStrategy } from '../core/vocabulary.js';

/** The component sequence follows the job's update strategy (the domain's words, core/vocabulary.ts). */
export const SEQUENCE_STRATEGIES = UPDATE_STRATEGIES;
export type SequenceStrategy = UpdateStrategy;

export const COMPONENT_PHASES = [
  'pending',
  'installing',
  'installed',
  'activating',
  'active',
  'committed',
  'rolling_back',
  'rolled_back',
  'failed',
] as const;
export type ComponentPhase = (typeof COMPONENT_PHASES)[number];

/** Phases in which a component is neither as it was nor committed: half-applied. */
export const TOUCHED_PHASES: readonly ComponentPhase[] = [
  'installing',
  'installed',
  'activating',
  'active',
  'rolling_back',
  'failed',
];
/** Phases in which a handler is working on the component right now. */
export const TRANSITIONAL_PHASES: readonly ComponentPhase[] = ['installing', 'activating', 'rolling_back'];

export interface SequenceComponentInput {
  name: string;
  version: string;
  /** What is installed now (null: nothing): the version a rollback leaves. */
  previousVersion: string | null;
  needsReboot: boolean;
  requires: Requirement[];
}
export interface SequenceComponent extends SequenceComponentInput {
  phase: ComponentPhase;
}

export interface ComponentSequenceInput {
  jobId: string;
  strategy: SequenceStrategy;
  /** In install order. */
  components: SequenceComponentInput[];
  /** Safety constraints blocking an activation when the sequence starts. */
  blocking: string[];
}

export interface SequenceFailure {
  component: string;
  step: 'install' | 'activate' | 'health-check' | 'commit' | 'reboot';
  message: string;
}

export interface ComponentSequenceContext {
  jobId: string;
  strategy: SequenceStrategy;
  components: SequenceComponent[];
  /** The component being worked on (install order). */
  index: number;
  blockedBy: string[];
  failure: SequenceFailure | null;
  /** Set when a rollback failed: the sequence stopped with that component `failed`. */
  rollbackFailure: string | null;
  resumed: boolean;
}

export type ComponentSequenceEvent = { type: 'SAFETY_CHANGED'; blocking: string[] } | { type: 'RESUME' };

export interface ComponentStepInput {
  jobId: string;
  index: number;
  name: string;
  strategy: SequenceStrategy;
  resumed: boolean;
}
export interface RebootStepInput {
  jobId: string;
  resumed: boolean;
}
export interface StepDone {
  at: number;
}

function notProvided(name: string): Error {
  return new Error(`${name} is not provided (machine.provide({ actors }))`);
}

function messageOf(error: unknown, fallback: string): string {
  const message = (error as { message?: unknown } | null | undefined)?.message;
  return typeof message === 'string' && message !== '' ? message : fallback;
}

/** The version of each component of the sequence as installed now. */
export function installedVersions(components: readonly SequenceComponent[]): InstalledVersions {
  const versions: Record<string, string | null> = {};
  for (const c of components) versions[c.name] = c.phase === 'committed' ? c.version : c.previousVersion;
  return versions;
}

/**
 * The rollback rule: the next component to roll back, or null once the set is consistent.
 * 1. A component touched and not committed (latest first): never left half-applied.
 * 2. Then a committed component (latest first) whose requirements are not met by the versions
 *    installed now (the others' committed or previous versions), repeated until all hold.
 */
export function nextToUnwind(components: readonly SequenceComponent[]): number | null {
  for (let i = components.length - 1; i >= 0; i--) {
    const phase = components[i]!.phase;
    if (phase !== 'pending' && phase !== 'committed' && phase !== 'rolled_back' && phase !== 'failed') {
      return i;
    }
  }
  const versions = installedVersions(components);
  for (let i = components.length - 1; i >= 0; i--) {
    const c = components[i]!;
    if (c.phase === 'committed' && unmetRequirements(c.requires, versions) !== null) return i;
  }
  return null;
}

function withPhase(
  components: readonly SequenceComponent[],
  index: number,
  phase: ComponentPhase,
): SequenceComponent[] {
  return components.map((c, i) => (i === index ? { ...c, phase } : c));
}

/** Action objects of the named actions below, with their params. */
const setPhase = (phase: ComponentPhase) => ({ type: 'setPhase' as const, params: { phase } });
const recordFailure = (step: SequenceFailure['step']) => ({
  type: 'recordFailure' as const,
  params: { step },
});

const stepInput = ({ context }: { context: ComponentSequenceContext }): ComponentStepInput => ({
  jobId: context.jobId,
  index: context.index,
  name: context.components[context.index]!.name,
  strategy: context.strategy,
  resumed: context.resumed,
});

const RESUME_HERE = (target: string) => ({
  RESUME: { target, reenter: true, actions: 'markResumed' as const },
});

export const componentSequenceMachine = setup({
  types: {
    context: {} as ComponentSequenceContext,
    events: {} as ComponentSequenceEvent,
    input: {} as ComponentSequenceInput,
  },
  actors: {
    installComponent: fromPromise<StepDone, ComponentStepInput>(async () => {
      throw notProvided('installComponent');
    }),
    activateComponent: fromPromise<StepDone, ComponentStepInput>(async () => {
      throw notProvided('activateComponent');
    }),
    checkComponent: fromPromise<StepDone, ComponentStepInput>(async () => {
      throw notProvided('checkComponent');
    }),
    commitComponent: fromPromise<StepDone, ComponentStepInput>(async () => {
      throw notProvided('commitComponent');
    }),
    rollbackComponent: fromPromise<StepDone, ComponentStepInput>(async () => {
      throw notProvided('rollbackComponent');
    }),
    rebootGateway: fromPromise<StepDone, RebootStepInput>(async () => {
      throw notProvided('rebootGateway');
    }),
  },
  guards: {
    activationClear: ({ context }) => context.blockedBy.length === 0,
    hasNext: ({ context }) => context.index + 1 < context.components.length,
    anyNeedsReboot: ({ context }) => context.components.some((c) => c.needsReboot),
    nothingToUnwind: ({ context }) => nextToUnwind(context.components) === null,
    isSeamless: ({ context }) => context.strategy === 'seamless',
  },
  actions: {
    markResumed: assign({ resumed: true }),
    clearResumed: assign({ resumed: false }),
    recordSafety: assign(({ event }) =>
      event.type === 'SAFETY_CHANGED' ? { blockedBy: [...event.blocking] } : {},
    ),
    next: assign(({ context }) => ({ index: context.index + 1 })),
    first: assign({ index: 0 }),
    setPhase: assign(({ context }, params: { phase: ComponentPhase }) => ({
      components: withPhase(context.components, context.index, params.phase),
    })),
    recordFailure: assign(({ context, event }, params: { step: SequenceFailure['step'] }) => ({
      // The failed step's component is no longer being worked on, but is still touched: it waits
      // for its rollback as installed or active (never two components "in a handler's hands").
      components: context.components.map((c, i) =>
        i !== context.index
          ? c
          : c.phase === 'installing'
            ? { ...c, phase: 'installed' as const }
            : c.phase === 'activating'
              ? { ...c, phase: 'active' as const }
              : c,
      ),
      failure: context.failure ?? {
        component:
          params.step === 'reboot' ? 'gateway' : (context.components[context.index]?.name ?? 'unknown'),
        step: params.step,
        message: messageOf((event as { error?: unknown }).error, `${params.step} failed`),
      },
    })),
  },
}).createMachine({
  id: 'componentSequence',
  context: ({ input }) => ({
    jobId: input.jobId,
    strategy: input.strategy,
    components: input.components.map((c) => ({ ...c, requires: [...c.requires], phase: 'pending' as const })),
    index: 0,
    blockedBy: [...input.blocking],
    failure: null,
    rollbackFailure: null,
    resumed: false,
  }),
  initial: 'starting',
  on: { SAFETY_CHANGED: { actions: 'recordSafety' } },
  states: {
    starting: {
      always: [{ guard: 'isSeamless', target: 'seamless' }, { target: 'rolling' }],
    },

    /** One component at a time, through to its commit. */
    rolling: {
      initial: 'installing',
      states: {
        installing: {
          entry: setPhase('installing'),
          exit: 'clearResumed',
          invoke: {
            src: 'installComponent',
            input: stepInput,
            onDone: { target: 'awaiting_activation', actions: setPhase('installed') },
            onError: { target: '#componentSequence.unwinding', actions: recordFailure('install') },
          },
          on: RESUME_HERE('installing'),
        },
        /** Only ever seen while the interlock blocks: a clear state goes on at once. */
        awaiting_activation: {
          always: { guard: 'activationClear', target: 'activating' },
        },
        activating: {
          entry: setPhase('activating'),
          exit: 'clearResumed',
          invoke: {
            src: 'activateComponent',
            input: stepInput,
            onDone: { target: 'checking', actions: setPhase('active') },
            onError: { target: '#componentSequence.unwinding', actions: recordFailure('activate') },
          },
          on: RESUME_HERE('awaiting_activation'),
        },
        checking: {
          exit: 'clearResumed',
          invoke: {
            src: 'checkComponent',
            input: stepInput,
            onDone: { target: 'committing' },
            onError: { target: '#componentSequence.unwinding', actions: recordFailure('health-check') },
          },
          on: RESUME_HERE('checking'),
        },
        committing: {
          exit: 'clearResumed',
          invoke: {
            src: 'commitComponent',
            input: stepInput,
            onDone: [
              { guard: 'hasNext', target: 'installing', actions: [setPhase('committed'), 'next'] },
              { target: '#componentSequence.done', actions: setPhase('committed') },
            ],
            onError: { target: '#componentSequence.unwinding', actions: recordFailure('commit') },
          },
          on: RESUME_HERE('committing'),
        },
      },
    },

    /** Everything staged, one activation (and at most one reboot), then all checked and committed. */
    seamless: {
      initial: 'installing',
      states: {
        installing: {
          entry: setPhase('installing'),
          exit: 'clearResumed',
          invoke: {
            src: 'installComponent',
            input: stepInput,
            onDone: [
              {
                guard: 'hasNext',
                target: 'installing',
                reenter: true,
                actions: [setPhase('installed'), 'next'],
              },
              { target: 'awaiting_activation', actions: [setPhase('installed'), 'first'] },
            ],
            onError: { target: '#componentSequence.unwinding', actions: recordFailure('install') },
          },
          on: RESUME_HERE('installing'),
        },
        awaiting_activation: {
          always: { guard: 'activationClear', target: 'activating' },
        },
        activating: {
          entry: setPhase('activating'),
          exit: 'clearResumed',
          invoke: {
            src: 'activateComponent',
            input: stepInput,
            onDone: [
              // The interlock is asked again before every component's activation, and the reboot.
              { guard: 'hasNext', target: 'awaiting_activation', actions: [setPhase('active'), 'next'] },
              { guard: 'anyNeedsReboot', target: 'awaiting_reboot', actions: [setPhase('active'), 'first'] },
              { target: 'checking', actions: [setPhase('active'), 'first'] },
            ],
            onError: { target: '#componentSequence.unwinding', actions: recordFailure('activate') },
          },
          // An activation cut short by a restart (a reboot ends the process) waits for the
          // interlock again: its readings are not trusted across a restart.
          on: RESUME_HERE('awaiting_activation'),
        },
        awaiting_reboot: {
          always: { guard: 'activationClear', target: 'rebooting' },
        },
        rebooting: {
          exit: 'clearResumed',
          invoke: {
            src: 'rebootGateway',
            input: ({ context }) => ({ jobId: context.jobId, resumed: context.resumed }),
            onDone: { target: 'checking' },
            onError: { target: '#componentSequence.unwinding', actions: recordFailure('reboot') },
          },
          on: RESUME_HERE('awaiting_reboot'),
        },
        checking: {
          exit: 'clearResumed',
          invoke: {
            src: 'checkComponent',
            input: stepInput,
            onDone: [
              { guard: 'hasNext', target: 'checking', reenter: true, actions: 'next' },
              { target: 'committing', actions: 'first' },
            ],
            onError: { target: '#componentSequence.unwinding', actions: recordFailure('health-check') },
          },
          on: RESUME_HERE('checking'),
        },
        committing: {
          exit: 'clearResumed',
          invoke: {
            src: 'commitComponent',
            input: stepInput,
            onDone: [
              {
                guard: 'hasNext',
                target: 'committing',
                reenter: true,
                actions: [setPhase('committed'), 'next'],
              },
              { target: '#componentSequence.done', actions: setPhase('committed') },
            ],
            onError: { target: '#componentSequence.unwinding', actions: recordFailure('commit') },
          },
          on: RESUME_HERE('committing'),
        },
      },
    },

    /** The rollback rule (`nextToUnwind`), one component at a time. */
    unwinding: {
      initial: 'choosing',
      states: {
        choosing: {
          always: [
            { guard: 'nothingToUnwind', target: '#componentSequence.failed' },
            {
              target: 'rolling_back',
              actions: assign(({ context }) => ({ index: nextToUnwind(context.components) ?? 0 })),
            },
          ],
        },
        rolling_back: {
          entry: setPhase('rolling_back'),
          exit: 'clearResumed',
          invoke: {
            src: 'rollbackComponent',
            input: stepInput,
            onDone: { target: 'choosing', actions: setPhase('rolled_back') },
            onError: {
              target: '#componentSequence.failed',
              actions: [
                setPhase('failed'),
                assign(({ context, event }) => ({
                  rollbackFailure: `${context.components[context.index]!.name}: ${messageOf(event.error, 'rollback failed')}`,
                })),
              ],
            },
          },
          on: RESUME_HERE('rolling_back'),
        },
      },
    },

    done: { type: 'final' },
    failed: { type: 'final' },
  },
});

export type ComponentSequenceMachine = typeof componentSequenceMachine;
export type ComponentSequenceSnapshot = SnapshotFrom<typeof componentSequenceMachine>;

/** `rolling.installing` → `installing`; the finals and `starting` as they are. */
export function sequenceStepName(snapshot: Pick<ComponentSequenceSnapshot, 'value'>): string {
  const value = snapshot.value;
  if (typeof value === 'string') return value;
  const [, sub] = Object.entries(value)[0] ?? [];
  return typeof sub === 'string' ? sub : 'unknown';
}

/** What an operator reads: `installing app (2/3)`, `waiting_for_safety: activating app (2/3)`. */
export function sequenceOperation(snapshot: Pick<ComponentSequenceSnapshot, 'value' | 'context'>): string {
  const ctx = snapshot.context;
  const step = sequenceStepName(snapshot);
  const c = ctx.components[ctx.index];
  const at = c ? `${c.name} (${ctx.index + 1}/${ctx.components.length})` : '';
  switch (step) {
    case 'installing':
      return `installing ${at}`;
    case 'awaiting_activation':
      return `waiting_for_safety: activating ${at}`;
    case 'activating':
      return `activating ${at}`;
    case 'awaiting_reboot':
      return 'waiting_for_safety: rebooting';
    case 'rebooting':
      return 'rebooting';
    case 'checking':
      return `health_check ${at}`;
    case 'committing':
      return `committing ${at}`;
    case 'rolling_back':
      return `rolling_back ${at}`;
    case 'done':
      return 'complete';
    case 'failed':
      return 'error';
    default:
      return step;
  }
}

const requirementSchema = z.strictObject({
  component: z.string(),
  min_version: z.string().optional(),
  below_version: z.string().optional(),
});

const stepStates = ['installing', 'awaiting_activation', 'activating', 'checking', 'committing'] as const;

/** The sequence's persisted snapshot, checked before it is resumed after a restart. */
export const componentSequencePersisted = persistedMachine({
  id: 'componentSequence',
  version: 1,
  value: z.union([
    z.enum(['starting', 'done', 'failed']),
    z.strictObject({ rolling: z.enum(stepStates) }),
    z.strictObject({ seamless: z.enum([...stepStates, 'awaiting_reboot', 'rebooting']) }),
    z.strictObject({ unwinding: z.enum(['choosing', 'rolling_back']) }),
  ]),
  context: z.strictObject({
    jobId: z.string(),
    strategy: z.enum(SEQUENCE_STRATEGIES),
    components: z.array(
      z.strictObject({
        name: z.string(),
        version: z.string(),
        previousVersion: z.string().nullable(),
        needsReboot: z.boolean(),
        requires: z.array(requirementSchema),
        phase: z.enum(COMPONENT_PHASES),
      }),
    ),
    index: z.int().nonnegative(),
    blockedBy: z.array(z.string()),
    failure: z
      .strictObject({
        component: z.string(),
        step: z.enum(['install', 'activate', 'health-check', 'commit', 'reboot']),
        message: z.string(),
      })
      .nullable(),
    rollbackFailure: z.string().nullable(),
    resumed: z.boolean(),
  }) satisfies z.ZodType<ComponentSequenceContext>,
});
export type PersistedComponentSequence = z.output<typeof componentSequencePersisted.schema>;
