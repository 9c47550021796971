import { describe, expect, it } from 'vitest';
import { createActor, SimulatedClock, type SnapshotFrom } from 'xstate';
import type { SafetyReadings } from '../../device/types.js';
import {
  ALL_ENABLED,
  blockingConstraints,
  constraintView,
  DEFAULT_THRESHOLDS,
  OVERRIDE_TTL_MS,
  safetyInterlockMachine,
  type SafetyEmitted,
} from '../../machines/safety-interlock.js';

const T0 = Date.parse('2025-03-15T12:00:00Z');
const MIN = 60_000;

const SAFE: SafetyReadings = {
  craneMotion: 'idle',
  acsCollision: 'clear',
  upsBatteryPercent: 85,
  networkConnected: true,
  systemLoad: 0.2,
  craneEstimatedClearSeconds: null,
};

/** An interlock on a simulated clock whose time and the events' `at` move together. */
function start(snapshot?: SnapshotFrom<typeof safetyInterlockMachine>, at = T0) {
  const clock = new SimulatedClock();
  const base = at;
  const actor = createActor(safetyInterlockMachine, {
    clock,
    input: { now: at },
    ...(snapshot ? { snapshot } : {}),
  });
  const emitted: SafetyEmitted[] = [];
  actor.on('*', (e) => emitted.push(e));
  actor.start();
  return {
    actor,
    emitted,
    now: () => base + clock.now(),
    advance(ms: number) {
      clock.increment(ms);
    },
    ctx: () => actor.getSnapshot().context,
  };
}

describe('safetyInterlockMachine', () => {
  it('should block on every enabled constraint until readings arrive (fail-safe)', () => {
    const t = start();
    expect(blockingConstraints(t.ctx())).toEqual([...Object.keys(ALL_ENABLED)]);
    t.actor.send({ type: 'READINGS', readings: SAFE, at: t.now() });
    expect(blockingConstraints(t.ctx())).toEqual([]);
  });

  it('should block on a moving crane and emit the change with the estimated clear time', () => {
    const t = start();
    t.actor.send({ type: 'READINGS', readings: SAFE, at: t.now() });
    t.emitted.length = 0;
    t.actor.send({
      type: 'READINGS',
      readings: { ...SAFE, craneMotion: 'moving', craneEstimatedClearSeconds: 90 },
      at: t.now(),
    });
    expect(blockingConstraints(t.ctx())).toEqual(['crane_motion']);
    expect(t.emitted).toEqual([
      {
        type: 'constraintChanged',
        constraint: 'crane_motion',
        status: 'moving',
        blocking: true,
        overridden: false,
        estimatedClearSeconds: 90,
      },
    ]);
  });

  it('should not emit when readings change without changing a status (UPS 85% → 84%)', () => {
    const t = start();
    t.actor.send({ type: 'READINGS', readings: SAFE, at: t.now() });
    t.emitted.length = 0;
    t.actor.send({ type: 'READINGS', readings: { ...SAFE, upsBatteryPercent: 84 }, at: t.now() });
    expect(t.emitted).toEqual([]);
  });

  it('should never block on a disabled constraint', () => {
    const t = start();
    t.actor.send({
      type: 'CONFIG',
      enabled: { ...ALL_ENABLED, crane_motion: false, network: false },
      thresholds: DEFAULT_THRESHOLDS,
    });
    t.actor.send({
      type: 'READINGS',
      readings: { ...SAFE, craneMotion: 'moving', networkConnected: false },
      at: t.now(),
    });
    expect(blockingConstraints(t.ctx())).toEqual([]);
    const view = constraintView(t.ctx());
    expect(view.crane_motion).toMatchObject({
      enabled: false,
      status: 'moving',
      condition: true,
      blocking: false,
    });
    // Re-enabling it makes the same reading block at once.
    t.actor.send({ type: 'CONFIG', enabled: ALL_ENABLED, thresholds: DEFAULT_THRESHOLDS });
    expect(blockingConstraints(t.ctx())).toEqual(['crane_motion', 'network']);
  });

  it('should block below the UPS threshold (default 30%) and follow a configured one', () => {
    const t = start();
    t.actor.send({ type: 'READINGS', readings: { ...SAFE, upsBatteryPercent: 30 }, at: t.now() });
    expect(blockingConstraints(t.ctx())).toEqual([]);
    t.actor.send({ type: 'READINGS', readings: { ...SAFE, upsBatteryPercent: 29 }, at: t.now() });
    expect(blockingConstraints(t.ctx())).toEqual(['ups_battery']);
    expect(constraintView(t.ctx()).ups_battery).toMatchObject({ status: 'low', value: 29 });
    t.actor.send({
      type: 'CONFIG',
      enabled: ALL_ENABLED,
      thresholds: { ...DEFAULT_THRESHOLDS, upsMinBatteryPercent: 20 },
    });
    expect(blockingConstraints(t.ctx())).toEqual([]);
  });

  it('should block above the system load threshold (default 0.9 per CPU) and on a NaN load', () => {
    const t = start();
    t.actor.send({ type: 'READINGS', readings: { ...SAFE, systemLoad: 0.9 }, at: t.now() });
    expect(blockingConstraints(t.ctx())).toEqual([]);
    t.actor.send({ type: 'READINGS', readings: { ...SAFE, systemLoad: 0.95 }, at: t.now() });
    expect(blockingConstraints(t.ctx())).toEqual(['system_load']);
    t.actor.send({
      type: 'CONFIG',
      enabled: ALL_ENABLED,
      thresholds: { ...DEFAULT_THRESHOLDS, maxSystemLoad: 1.5 },
    });
    expect(blockingConstraints(t.ctx())).toEqual([]);
    t.actor.send({ type: 'READINGS', readings: { ...SAFE, systemLoad: Number.NaN }, at: t.now() });
    expect(blockingConstraints(t.ctx())).toEqual(['system_load']);
  });

  it('should treat an ACS warning as blocking, not only a collision risk', () => {
    const t = start();
    t.actor.send({ type: 'READINGS', readings: { ...SAFE, acsCollision: 'warning' }, at: t.now() });
    expect(blockingConstraints(t.ctx())).toEqual(['acs_collision']);
  });

  it('should let an override cover only the constraints it names', () => {
    const t = start();
    t.actor.send({
      type: 'READINGS',
      readings: { ...SAFE, craneMotion: 'moving', upsBatteryPercent: 10 },
      at: t.now(),
    });
    t.actor.send({
      type: 'OVERRIDE_ENABLE',
      constraints: ['crane_motion'],
      reason: 'Emergency update',
      by: 'admin',
      at: t.now(),
    });
    expect(t.actor.getSnapshot().value).toBe('overridden');
    expect(blockingConstraints(t.ctx())).toEqual(['ups_battery']);
    expect(constraintView(t.ctx()).crane_motion).toMatchObject({
      status: 'moving',
      blocking: false,
      overridden: true,
    });
  });

  it('should ignore an override naming no constraint', () => {
    const t = start();
    t.actor.send({ type: 'OVERRIDE_ENABLE', constraints: [], reason: 'x', by: 'admin', at: t.now() });
    expect(t.actor.getSnapshot().value).toBe('normal');
  });

  it('should expire the override 15 minutes after it started, not a moment earlier', () => {
    const t = start();
    t.actor.send({ type: 'READINGS', readings: { ...SAFE, craneMotion: 'moving' }, at: t.now() });
    t.actor.send({
      type: 'OVERRIDE_ENABLE',
      constraints: ['crane_motion'],
      reason: 'r',
      by: 'admin',
      at: t.now(),
    });
    expect(t.ctx().override?.expiresAt).toBe(T0 + OVERRIDE_TTL_MS);
    t.emitted.length = 0;
    t.advance(15 * MIN - 1);
    expect(t.actor.getSnapshot().value).toBe('overridden');
    expect(blockingConstraints(t.ctx())).toEqual([]);
    t.advance(1);
    expect(t.actor.getSnapshot().value).toBe('normal');
    expect(t.ctx().override).toBeNull();
    expect(blockingConstraints(t.ctx())).toEqual(['crane_motion']);
    expect(t.emitted.map((e) => e.type)).toEqual(['overrideEnded', 'constraintChanged']);
    expect(t.emitted[0]).toMatchObject({ reason: 'expired', at: T0 + OVERRIDE_TTL_MS });
  });

  it('should end the override on a reading at or past its deadline even if the timer has not fired', () => {
    const t = start();
    t.actor.send({ type: 'OVERRIDE_ENABLE', constraints: ['network'], reason: 'r', by: 'admin', at: T0 });
    t.actor.send({ type: 'READINGS', readings: SAFE, at: T0 + OVERRIDE_TTL_MS });
    expect(t.ctx().override).toBeNull();
    expect(t.emitted.find((e) => e.type === 'overrideEnded')).toMatchObject({ reason: 'expired' });
  });

  it('should re-arm the expiry for the time left after a restore: 5 minutes left expires after 5, not 15', () => {
    const a = start();
    a.actor.send({ type: 'READINGS', readings: { ...SAFE, craneMotion: 'moving' }, at: a.now() });
    a.actor.send({
      type: 'OVERRIDE_ENABLE',
      constraints: ['crane_motion'],
      reason: 'r',
      by: 'admin',
      at: a.now(),
    });
    a.advance(10 * MIN);
    a.actor.send({ type: 'READINGS', readings: { ...SAFE, craneMotion: 'moving' }, at: a.now() });
    // Persisted as the service does: a JSON round trip.
    const persisted = JSON.parse(JSON.stringify(a.actor.getPersistedSnapshot()));
    a.actor.stop();

    const restoredAt = T0 + 10 * MIN;
    const b = start(persisted, restoredAt);
    expect(b.actor.getSnapshot().value).toBe('overridden');
    b.actor.send({ type: 'RESUME', at: b.now() });
    b.advance(5 * MIN - 1);
    expect(b.ctx().override).not.toBeNull();
    b.advance(1);
    expect(b.ctx().override).toBeNull();
    expect(b.emitted.find((e) => e.type === 'overrideEnded')).toMatchObject({
      reason: 'expired',
      at: T0 + OVERRIDE_TTL_MS,
    });
  });

  it('should pin the platform trap: a restored actor without RESUME never fires the expiry on its own', () => {
    const a = start();
    a.actor.send({
      type: 'OVERRIDE_ENABLE',
      constraints: ['crane_motion'],
      reason: 'r',
      by: 'admin',
      at: a.now(),
    });
    const persisted = JSON.parse(JSON.stringify(a.actor.getPersistedSnapshot()));
    a.actor.stop();
    const b = start(persisted);
    b.advance(60 * MIN);
    expect(b.ctx().override).not.toBeNull();
    // …which is why nothing may trust the context alone: the helpers judge expiry by the time.
    expect(blockingConstraints(b.ctx(), T0 + 60 * MIN)).toEqual([...Object.keys(ALL_ENABLED)]);
  });

  it('should expire at once when restored after the deadline', () => {
    const a = start();
    a.actor.send({
      type: 'OVERRIDE_ENABLE',
      constraints: ['crane_motion'],
      reason: 'r',
      by: 'admin',
      at: a.now(),
    });
    const persisted = JSON.parse(JSON.stringify(a.actor.getPersistedSnapshot()));
    a.actor.stop();
    const b = start(persisted, T0 + 20 * MIN);
    b.actor.send({ type: 'RESUME', at: T0 + 20 * MIN });
    expect(b.actor.getSnapshot().value).toBe('normal');
    expect(b.emitted.find((e) => e.type === 'overrideEnded')).toMatchObject({ reason: 'expired' });
  });

  it('should not extend the override when RESUME is sent while it runs', () => {
    const t = start();
    t.actor.send({
      type: 'OVERRIDE_ENABLE',
      constraints: ['crane_motion'],
      reason: 'r',
      by: 'admin',
      at: t.now(),
    });
    t.advance(14 * MIN);
    t.actor.send({ type: 'RESUME', at: t.now() });
    expect(t.ctx().override?.expiresAt).toBe(T0 + OVERRIDE_TTL_MS);
    t.advance(MIN);
    expect(t.ctx().override).toBeNull();
  });

  it('should restart the 15 minutes when a new override replaces a running one', () => {
    const t = start();
    t.actor.send({
      type: 'OVERRIDE_ENABLE',
      constraints: ['crane_motion'],
      reason: 'r',
      by: 'admin',
      at: t.now(),
    });
    t.advance(10 * MIN);
    t.actor.send({
      type: 'OVERRIDE_ENABLE',
      constraints: ['network'],
      reason: 'r2',
      by: 'admin',
      at: t.now(),
    });
    t.advance(10 * MIN);
    expect(t.ctx().override).toMatchObject({ constraints: ['network'], expiresAt: T0 + 25 * MIN });
    t.advance(5 * MIN);
    expect(t.ctx().override).toBeNull();
    expect(
      t.emitted.filter((e) => e.type === 'overrideEnded').map((e) => e.type === 'overrideEnded' && e.reason),
    ).toEqual(['replaced', 'expired']);
  });

  it('should end the override when its operation completes, and only that one', () => {
    const t = start();
    t.actor.send({
      type: 'OVERRIDE_ENABLE',
      constraints: ['crane_motion'],
      reason: 'r',
      by: 'admin',
      at: t.now(),
      operationId: 'job-1',
    });
    t.actor.send({ type: 'OPERATION_COMPLETED', operationId: 'job-2' });
    expect(t.ctx().override).not.toBeNull();
    t.actor.send({ type: 'OPERATION_COMPLETED', operationId: 'job-1' });
    expect(t.ctx().override).toBeNull();
    expect(t.emitted.find((e) => e.type === 'overrideEnded')).toMatchObject({
      reason: 'operation_completed',
    });
  });

  it('should end an override given while nothing ran on the next operation to complete', () => {
    const t = start();
    t.actor.send({
      type: 'OVERRIDE_ENABLE',
      constraints: ['crane_motion'],
      reason: 'r',
      by: 'admin',
      at: t.now(),
    });
    t.actor.send({ type: 'OPERATION_COMPLETED', operationId: 'job-9' });
    expect(t.ctx().override).toBeNull();
  });

  it('should end the override on OVERRIDE_DISABLE and say who ended it', () => {
    const t = start();
    t.actor.send({
      type: 'OVERRIDE_ENABLE',
      constraints: ['crane_motion'],
      reason: 'r',
      by: 'admin',
      at: t.now(),
    });
    t.actor.send({ type: 'OVERRIDE_DISABLE', by: 'alice', at: t.now() });
    expect(t.actor.getSnapshot().value).toBe('normal');
    expect(t.emitted.find((e) => e.type === 'overrideEnded')).toMatchObject({
      reason: 'disabled',
      by: 'alice',
    });
    // The cancelled timer does nothing later.
    t.emitted.length = 0;
    t.advance(60 * MIN);
    expect(t.emitted).toEqual([]);
  });

  it('should round-trip its persisted snapshot through JSON in every state', () => {
    const t = start();
    t.actor.send({ type: 'READINGS', readings: SAFE, at: t.now() });
    const normal = JSON.parse(JSON.stringify(t.actor.getPersistedSnapshot()));
    t.actor.send({
      type: 'OVERRIDE_ENABLE',
      constraints: ['ups_battery'],
      reason: 'r',
      by: 'admin',
      at: t.now(),
    });
    const overridden = JSON.parse(JSON.stringify(t.actor.getPersistedSnapshot()));
    for (const snap of [normal, overridden]) {
      const r = createActor(safetyInterlockMachine, { snapshot: snap, input: { now: T0 } }).start();
      expect(r.getPersistedSnapshot()).toEqual(snap);
      r.stop();
    }
  });
});
