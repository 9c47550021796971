import { assertEvent, enqueueActions, setup } from 'xstate';
import { z } from 'zod';
import type { SafetyReadings } from '../device/types.js';
import { persistedMachine } from './persist.js';
import { SAFETY_CONSTRAINTS, type SafetyConstraint } from '../core/vocabulary.js';
export { SAFETY_CONSTRAINTS, type SafetyConstraint } from '../core/vocabulary.js';

/**
 * The safety interlock of one gateway: the five documented constraints (crane motion, anti-collision
 * system, UPS battery, network, system load), which of them are enabled, their thresholds, and the
 * PIN-verified force override. Pure: every time arrives in an event as `at`, the only timer is the
 * override's named XState delay, computed from `expiresAt` so that a restored actor (sent RESUME)
 * waits for the time that was left, not a fresh 15 minutes.
 *
 * Fail-safe by construction: with no readings (start-up, a sensor read that failed) every enabled
 * constraint is `unknown` and blocks, so "we don't know" never means "go ahead".
 */

export const OVERRIDE_TTL_MS = 15 * 60 * 1000;

export interface SafetyThresholds {
  /** The UPS must hold at least this much charge (percent); below it an update is blocked. */
  upsMinBatteryPercent: number;
  /** 1-minute load average per CPU above which an update is blocked (1.0 = every CPU busy). */
  maxSystemLoad: number;
}

export const DEFAULT_THRESHOLDS: SafetyThresholds = { upsMinBatteryPercent: 30, maxSystemLoad: 0.9 };

export type EnabledConstraints = Record<SafetyConstraint, boolean>;

export const ALL_ENABLED: EnabledConstraints = {
  crane_motion: true,
  acs_collision: true,
  ups_battery: true,
  network: true,
  system_load: true,
};

export interface SafetyOverride {
  constraints: SafetyConstraint[];
  reason: string;
  by: string;
  startedAt: number;
  expiresAt: number;
  /** The operation the override was given for; its completion ends the override. */
  operationId: string | null;
}

export interface SafetyContext {
  /** Null: nothing read yet, or the last read failed (every enabled constraint blocks). */
  readings: SafetyReadings | null;
  enabled: EnabledConstraints;
  thresholds: SafetyThresholds;
  override: SafetyOverride | null;
  /** Time of the last event that carried one (the machine's idea of "now"). */
  now: number;
  overrideTtlMs: number;
}

export interface SafetyInput {
  now: number;
  enabled?: Partial<EnabledConstraints>;
  thresholds?: Partial<SafetyThresholds>;
  overrideTtlMs?: number;
}

export type SafetyEvent =
  | { type: 'READINGS'; readings: SafetyReadings | null; at: number }
  | {
      type: 'OVERRIDE_ENABLE';
      constraints: SafetyConstraint[];
      reason: string;
      by: string;
      at: number;
      operationId?: string | null;
    }
  | { type: 'OVERRIDE_DISABLE'; by?: string; at?: number }
  | { type: 'OPERATION_COMPLETED'; operationId: string }
  | { type: 'CONFIG'; enabled: EnabledConstraints; thresholds: SafetyThresholds }
  /** Sent once after restoring a snapshot: re-arms the override's expiry for the time left. */
  | { type: 'RESUME'; at: number };

export type OverrideEndReason = 'expired' | 'disabled' | 'operation_completed' | 'replaced';

export interface ConstraintChangedEvent {
  type: 'constraintChanged';
  constraint: SafetyConstraint;
  status: string;
  /** Blocks updates now (condition met, enabled, not overridden). */
  blocking: boolean;
  overridden: boolean;
  estimatedClearSeconds: number | null;
}

export type SafetyEmitted =
  | ConstraintChangedEvent
  | { type: 'overrideStarted'; override: SafetyOverride }
  | {
      type: 'overrideEnded';
      override: SafetyOverride;
      reason: OverrideEndReason;
      by: string | null;
      at: number;
    };

export interface ConstraintState {
  enabled: boolean;
  status: string;
  /** The sensor says "not safe" (whether or not the constraint is enabled or overridden). */
  condition: boolean;
  /** What counts: the condition, on an enabled constraint that no live override covers. */
  blocking: boolean;
  overridden: boolean;
  /** UPS charge in percent, or load per CPU; null for the other constraints or when unknown. */
  value: number | null;
  estimatedClearSeconds: number | null;
}

export type ConstraintView = Record<SafetyConstraint, ConstraintState>;

/** An override counts only strictly before its deadline, whatever the timers did. */
export function liveOverride(context: SafetyContext, now: number = context.now): SafetyOverride | null {
  return context.override && context.override.expiresAt > now ? context.override : null;
}

function sensorState(
  constraint: SafetyConstraint,
  readings: SafetyReadings | null,
  thresholds: SafetyThresholds,
): Pick<ConstraintState, 'status' | 'condition' | 'value' | 'estimatedClearSeconds'> {
  if (!readings) return { status: 'unknown', condition: true, value: null, estimatedClearSeconds: null };
  switch (constraint) {
    case 'crane_motion': {
      const moving = readings.craneMotion !== 'idle';
      return {
        status: readings.craneMotion,
        condition: moving,
        value: null,
        estimatedClearSeconds: moving ? readings.craneEstimatedClearSeconds : null,
      };
    }
    case 'acs_collision':
      // A "warning" blocks too: rebooting the gateway while the ACS is uneasy is not worth it.
      return {
        status: readings.acsCollision,
        condition: readings.acsCollision !== 'clear',
        value: null,
        estimatedClearSeconds: null,
      };
    case 'ups_battery': {
      const low = !(readings.upsBatteryPercent >= thresholds.upsMinBatteryPercent);
      return {
        status: low ? 'low' : 'ok',
        condition: low,
        value: readings.upsBatteryPercent,
        estimatedClearSeconds: null,
      };
    }
    case 'network':
      return {
        status: readings.networkConnected ? 'connected' : 'disconnected',
        condition: !readings.networkConnected,
        value: null,
        estimatedClearSeconds: null,
      };
    case 'system_load': {
      // Written as !(x <= max) so a NaN load blocks rather than passes.
      const high = !(readings.systemLoad <= thresholds.maxSystemLoad);
      return {
        status: high ? 'high' : 'normal',
        condition: high,
        value: readings.systemLoad,
        estimatedClearSeconds: null,
      };
    }
  }
}

export function constraintView(context: SafetyContext, now: number = context.now): ConstraintView {
  const override = liveOverride(context, now);
  const view = {} as ConstraintView;
  for (const c of SAFETY_CONSTRAINTS) {
    const sensor = sensorState(c, context.readings, context.thresholds);
    const enabled = context.enabled[c];
    const overridden = override !== null && override.constraints.includes(c);
    view[c] = { ...sensor, enabled, overridden, blocking: enabled && sensor.condition && !overridden };
  }
  return view;
}

/** Constraints that block an update right now: enabled, condition met, not covered by a live override. */
export function blockingConstraints(context: SafetyContext, now: number = context.now): SafetyConstraint[] {
  const view = constraintView(context, now);
  return SAFETY_CONSTRAINTS.filter((c) => view[c].blocking);
}

/** What the outside world is told: a constraint whose status, blocking or override changed. */
function changes(before: SafetyContext, after: SafetyContext): ConstraintChangedEvent[] {
  const a = constraintView(before);
  const b = constraintView(after);
  return SAFETY_CONSTRAINTS.filter(
    (c) =>
      a[c].status !== b[c].status || a[c].blocking !== b[c].blocking || a[c].overridden !== b[c].overridden,
  ).map((c) => ({
    type: 'constraintChanged' as const,
    constraint: c,
    status: b[c].status,
    blocking: b[c].blocking,
    overridden: b[c].overridden,
    estimatedClearSeconds: b[c].estimatedClearSeconds,
  }));
}

/** The `at` of an event, when it carries one (timers and OPERATION_COMPLETED do not). */
function eventTime(event: { type: string }): number | undefined {
  const at = (event as { at?: unknown }).at;
  return typeof at === 'number' ? at : undefined;
}

export const safetyInterlockMachine = setup({
  types: {
    context: {} as SafetyContext,
    input: {} as SafetyInput,
    events: {} as SafetyEvent,
    emitted: {} as SafetyEmitted,
  },
  delays: {
    /** Time left on the override from the last known "now": a restored actor waits only for that. */
    overrideExpiry: ({ context }) => Math.max(0, (context.override?.expiresAt ?? context.now) - context.now),
  },
  guards: {
    /** The event's time is at or past the override's deadline (the timer may not have fired yet). */
    overrideExpiredByEvent: ({ context, event }) => {
      const at = eventTime(event);
      return context.override !== null && at !== undefined && at >= context.override.expiresAt;
    },
    hasConstraints: ({ event }) => event.type === 'OVERRIDE_ENABLE' && event.constraints.length > 0,
    completesOverride: ({ context, event }) =>
      event.type === 'OPERATION_COMPLETED' &&
      context.override !== null &&
      // An override given while nothing ran covers the next operation, whichever it is.
      (context.override.operationId === null || context.override.operationId === event.operationId),
  },
  actions: {
    recordReadings: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, 'READINGS');
      const next: SafetyContext = {
        ...context,
        readings: event.readings,
        now: Math.max(context.now, event.at),
      };
      enqueue.assign(() => next);
      for (const e of changes(context, next)) enqueue.emit(e);
    }),
    applyConfig: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, 'CONFIG');
      const next: SafetyContext = {
        ...context,
        enabled: { ...event.enabled },
        thresholds: { ...event.thresholds },
      };
      enqueue.assign(() => next);
      for (const e of changes(context, next)) enqueue.emit(e);
    }),
    setNow: enqueueActions(({ context, event, enqueue }) => {
      const at = eventTime(event);
      if (at === undefined || at <= context.now) return;
      const next: SafetyContext = { ...context, now: at };
      enqueue.assign(() => next);
      for (const e of changes(context, next)) enqueue.emit(e);
    }),
    startOverride: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, 'OVERRIDE_ENABLE');
      const now = Math.max(context.now, event.at);
      if (context.override) {
        enqueue.emit({
          type: 'overrideEnded',
          override: context.override,
          reason: 'replaced',
          by: event.by,
          at: now,
        });
      }
      const override: SafetyOverride = {
        constraints: SAFETY_CONSTRAINTS.filter((c) => event.constraints.includes(c)),
        reason: event.reason,
        by: event.by,
        startedAt: now,
        expiresAt: now + context.overrideTtlMs,
        operationId: event.operationId ?? null,
      };
      const next: SafetyContext = { ...context, now, override };
      enqueue.assign(() => next);
      enqueue.emit({ type: 'overrideStarted', override });
      for (const e of changes(context, next)) enqueue.emit(e);
    }),
    endOverride: enqueueActions(({ context, event, enqueue }, params: { reason: OverrideEndReason }) => {
      const override = context.override;
      if (!override) return;
      // The expiry timer carries no time: it fires at the deadline, so that is "now".
      const at =
        params.reason === 'expired'
          ? Math.max(context.now, eventTime(event) ?? override.expiresAt)
          : Math.max(context.now, eventTime(event) ?? context.now);
      const by = event.type === 'OVERRIDE_DISABLE' ? (event.by ?? null) : null;
      const next: SafetyContext = { ...context, now: at, override: null };
      enqueue.assign(() => next);
      enqueue.emit({ type: 'overrideEnded', override, reason: params.reason, by, at });
      for (const e of changes(context, next)) enqueue.emit(e);
    }),
  },
}).createMachine({
  id: 'safetyInterlock',
  context: ({ input }) => ({
    readings: null,
    enabled: { ...ALL_ENABLED, ...input.enabled },
    thresholds: { ...DEFAULT_THRESHOLDS, ...input.thresholds },
    override: null,
    now: input.now,
    overrideTtlMs: input.overrideTtlMs ?? OVERRIDE_TTL_MS,
  }),
  initial: 'normal',
  on: {
    CONFIG: { actions: 'applyConfig' },
  },
  states: {
    /** No override: the constraints alone decide. */
    normal: {
      on: {
        READINGS: { actions: 'recordReadings' },
        OVERRIDE_ENABLE: { guard: 'hasConstraints', target: 'overridden', actions: 'startOverride' },
        RESUME: { actions: 'setNow' },
        OVERRIDE_DISABLE: { actions: 'setNow' },
      },
    },
    overridden: {
      after: {
        overrideExpiry: { target: 'normal', actions: { type: 'endOverride', params: { reason: 'expired' } } },
      },
      on: {
        READINGS: [
          {
            guard: 'overrideExpiredByEvent',
            target: 'normal',
            actions: ['recordReadings', { type: 'endOverride', params: { reason: 'expired' } }],
          },
          { actions: 'recordReadings' },
        ],
        OVERRIDE_ENABLE: {
          guard: 'hasConstraints',
          target: 'overridden',
          reenter: true,
          actions: 'startOverride',
        },
        OVERRIDE_DISABLE: {
          target: 'normal',
          actions: { type: 'endOverride', params: { reason: 'disabled' } },
        },
        OPERATION_COMPLETED: {
          guard: 'completesOverride',
          target: 'normal',
          actions: { type: 'endOverride', params: { reason: 'operation_completed' } },
        },
        RESUME: [
          {
            guard: 'overrideExpiredByEvent',
            target: 'normal',
            actions: { type: 'endOverride', params: { reason: 'expired' } },
          },
          // Re-entering re-runs the `after` with the delay recomputed from `expiresAt - now`:
          // XState does not restart the timers of a restored snapshot on its own.
          { target: 'overridden', reenter: true, actions: 'setNow' },
        ],
      },
    },
  },
});

export type SafetyInterlockMachine = typeof safetyInterlockMachine;

const readingsSchema = z.strictObject({
  craneMotion: z.enum(['idle', 'moving']),
  acsCollision: z.enum(['clear', 'warning', 'collision_risk']),
  upsBatteryPercent: z.number(),
  networkConnected: z.boolean(),
  systemLoad: z.number(),
  craneEstimatedClearSeconds: z.number().nullable(),
}) satisfies z.ZodType<SafetyReadings>;

/**
 * The interlock's persisted snapshot (services/actor-snapshots.ts). One that fails the check is not
 * restored: the interlock starts fresh, which drops an override (the safe direction to fail in).
 */
export const safetyInterlockPersisted = persistedMachine({
  id: 'safetyInterlock',
  version: 1,
  value: z.enum(['normal', 'overridden']),
  context: z.strictObject({
    readings: readingsSchema.nullable(),
    enabled: z.strictObject(
      Object.fromEntries(SAFETY_CONSTRAINTS.map((c) => [c, z.boolean()])) as Record<
        SafetyConstraint,
        z.ZodBoolean
      >,
    ),
    thresholds: z.strictObject({ upsMinBatteryPercent: z.number(), maxSystemLoad: z.number() }),
    override: z
      .strictObject({
        constraints: z.array(z.enum(SAFETY_CONSTRAINTS)),
        reason: z.string(),
        by: z.string(),
        startedAt: z.number(),
        expiresAt: z.number(),
        operationId: z.string().nullable(),
      })
      .nullable(),
    now: z.number(),
    overrideTtlMs: z.number().positive(),
  }) satisfies z.ZodType<SafetyContext>,
  check: (s) => {
    if (s.status !== 'active') return `the interlock never stops, but this snapshot is ${s.status}`;
    if ((s.value === 'overridden') !== (s.context.override !== null)) {
      return `state ${s.value} disagrees with its override (${s.context.override ? 'set' : 'none'})`;
    }
    return null;
  },
});
