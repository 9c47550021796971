import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createActor, SimulatedClock } from 'xstate';
import type { SafetyReadings } from '../../device/types.js';
import {
  blockingConstraints,
  constraintView,
  SAFETY_CONSTRAINTS,
  safetyInterlockMachine,
  type EnabledConstraints,
  type SafetyConstraint,
  type SafetyThresholds,
} from '../../machines/safety-interlock.js';

const T0 = Date.parse('2025-03-15T12:00:00Z');

const readingsArb: fc.Arbitrary<SafetyReadings | null> = fc.option(
  fc.record({
    craneMotion: fc.constantFrom('idle' as const, 'moving' as const),
    acsCollision: fc.constantFrom('clear' as const, 'warning' as const, 'collision_risk' as const),
    upsBatteryPercent: fc.integer({ min: 0, max: 100 }),
    networkConnected: fc.boolean(),
    systemLoad: fc.double({ min: 0, max: 3, noNaN: true }),
    craneEstimatedClearSeconds: fc.option(fc.integer({ min: 0, max: 7200 })),
  }),
  { freq: 8 },
);

const constraintsArb = fc.subarray([...SAFETY_CONSTRAINTS] as SafetyConstraint[]);

type Step =
  | { kind: 'readings'; readings: SafetyReadings | null }
  | { kind: 'override'; constraints: SafetyConstraint[]; operationId: string | null }
  | { kind: 'disable' }
  | { kind: 'completed'; operationId: string }
  | { kind: 'config'; enabled: EnabledConstraints; thresholds: SafetyThresholds }
  | { kind: 'advance'; ms: number }
  /** To the running override's deadline, give or take a millisecond: where off-by-ones live. */
  | { kind: 'toDeadline'; skew: -1 | 0 | 1 }
  /** `resume: false` is the platform trap (a service that forgot RESUME): the timer is gone. */
  | { kind: 'restart'; resume: boolean };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: readingsArb.map((readings) => ({ kind: 'readings' as const, readings })) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('override' as const),
      constraints: constraintsArb,
      operationId: fc.option(fc.constantFrom('job-1', 'job-2')),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'disable' as const }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('completed' as const),
      operationId: fc.constantFrom('job-1', 'job-2'),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('config' as const),
      enabled: fc.record(
        Object.fromEntries(SAFETY_CONSTRAINTS.map((c) => [c, fc.boolean()])) as Record<
          SafetyConstraint,
          fc.Arbitrary<boolean>
        >,
      ),
      thresholds: fc.record({
        upsMinBatteryPercent: fc.integer({ min: 0, max: 100 }),
        maxSystemLoad: fc.double({ min: 0.1, max: 2, noNaN: true }),
      }),
    }),
  },
  // Up to 20 minutes at a time, so overrides both live through steps and run out between them.
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('advance' as const),
      ms: fc.integer({ min: 0, max: 20 * 60_000 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('toDeadline' as const),
      skew: fc.constantFrom(-1 as const, 0 as const, 1 as const),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('restart' as const),
      resume: fc.constantFrom(true, true, true, false),
    }),
  },
);

/** The sensor's own verdict, independent of the machine's code path for it. */
function conditionHolds(c: SafetyConstraint, r: SafetyReadings | null, th: SafetyThresholds): boolean {
  if (!r) return true;
  switch (c) {
    case 'crane_motion':
      return r.craneMotion === 'moving';
    case 'acs_collision':
      return r.acsCollision !== 'clear';
    case 'ups_battery':
      return r.upsBatteryPercent < th.upsMinBatteryPercent;
    case 'network':
      return !r.networkConnected;
    case 'system_load':
      return r.systemLoad > th.maxSystemLoad;
  }
}

describe('safetyInterlockMachine properties', () => {
  it('should never omit a blocking constraint that no live override covers, and end every override by its deadline', () => {
    fc.assert(
      fc.property(fc.array(stepArb, { maxLength: 40 }), (steps) => {
        // One clock for the whole run; a "restart" rebuilds the actor from its JSON snapshot on a
        // fresh simulated clock, as the service does after a reboot (and sends RESUME).
        let clock = new SimulatedClock();
        let offset = T0;
        const now = () => offset + clock.now();
        let actor = createActor(safetyInterlockMachine, { clock, input: { now: T0 } }).start();
        // Once restored without RESUME the machine's own timer is gone; only the helpers' clock
        // check stands between an expired override and an update, so that is all we may demand.
        let timerTrusted = true;

        for (const step of steps) {
          switch (step.kind) {
            case 'readings':
              actor.send({ type: 'READINGS', readings: step.readings, at: now() });
              break;
            case 'override':
              actor.send({
                type: 'OVERRIDE_ENABLE',
                constraints: step.constraints,
                reason: 'property',
                by: 'admin',
                at: now(),
                operationId: step.operationId,
              });
              break;
            case 'disable':
              actor.send({ type: 'OVERRIDE_DISABLE', at: now() });
              break;
            case 'completed':
              actor.send({ type: 'OPERATION_COMPLETED', operationId: step.operationId });
              break;
            case 'config':
              actor.send({ type: 'CONFIG', enabled: step.enabled, thresholds: step.thresholds });
              break;
            case 'advance':
              clock.increment(step.ms);
              break;
            case 'toDeadline': {
              const deadline = actor.getSnapshot().context.override?.expiresAt;
              if (deadline !== undefined) clock.increment(Math.max(0, deadline + step.skew - now()));
              break;
            }
            case 'restart': {
              const snapshot = JSON.parse(JSON.stringify(actor.getPersistedSnapshot()));
              const at = now();
              actor.stop();
              clock = new SimulatedClock();
              offset = at;
              actor = createActor(safetyInterlockMachine, { clock, snapshot, input: { now: at } }).start();
              if (step.resume) actor.send({ type: 'RESUME', at });
              else timerTrusted = false;
              break;
            }
          }

          const ctx = actor.getSnapshot().context;
          const t = now();
          // Every override ends by its deadline: none is still held once the time has come.
          if (timerTrusted && ctx.override) expect(ctx.override.expiresAt).toBeGreaterThan(t);
          expect(actor.getSnapshot().value).toBe(ctx.override ? 'overridden' : 'normal');

          const blocking = blockingConstraints(ctx, t);
          const live = ctx.override && ctx.override.expiresAt > t ? ctx.override.constraints : [];
          for (const c of SAFETY_CONSTRAINTS) {
            const mustBlock =
              ctx.enabled[c] && conditionHolds(c, ctx.readings, ctx.thresholds) && !live.includes(c);
            expect(blocking.includes(c)).toBe(mustBlock);
          }
          // The view and the list agree.
          const view = constraintView(ctx, t);
          expect(SAFETY_CONSTRAINTS.filter((c) => view[c].blocking)).toEqual(blocking);
        }
        actor.stop();
      }),
      { numRuns: 300 },
    );
  });
});
