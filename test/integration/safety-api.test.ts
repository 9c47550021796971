import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { GantryError } from '../../core/errors.js';
import { GATEWAY, startTestGantry, type TestGantry } from '../helpers/gantry.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies off the wire */

const PIN = '7392';
const T0 = Date.parse('2025-03-15T12:00:00Z');
const MIN = 60_000;

/** A fake clock shared by the server instances of one test file. */
function fakeClock() {
  let now = T0;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

/** An authenticated /api/v1/ota/ws client that can wait for a message arriving after a mark. */
async function wsClient(g: TestGantry, token: string) {
  const ws = new WebSocket(`${g.url.replace(/^http/, 'ws')}/api/v1/ota/ws`);
  const messages: any[] = [];
  const waiters = new Set<() => void>();
  ws.on('message', (raw) => {
    messages.push(JSON.parse(String(raw)));
    for (const w of [...waiters]) w();
  });
  await once(ws, 'open');
  const waitFor = (pred: (m: any) => boolean, from = 0) =>
    new Promise<any>((resolve) => {
      const check = () => {
        const hit = messages.slice(from).find(pred);
        if (hit) {
          waiters.delete(check);
          resolve(hit);
        }
      };
      waiters.add(check);
      check();
    });
  ws.send(JSON.stringify({ type: 'auth', token, gateway_id: GATEWAY }));
  await waitFor((m) => m.type === 'auth_ok');
  return { waitFor, mark: () => messages.length, messages, close: () => ws.close() };
}

const SAFE_SENSORS = {
  crane_motion: 'idle',
  acs_collision: 'clear',
  ups_battery: 85,
  network_connected: true,
  // Pinned: the simulator otherwise reports the host's real load, which a busy CI box exceeds.
  system_load: 0.1,
  crane_estimated_clear_seconds: null,
};

describe('Safety API over HTTP', () => {
  const clock = fakeClock();
  let g: TestGantry;
  let admin: string;
  let viewer: string;
  let operator: string;

  beforeAll(async () => {
    g = await startTestGantry({ clock: clock.now, env: { GANTRY_SAFETY_PIN: PIN } });
    admin = await g.login();
    viewer = await g.tokenFor('viewer');
    operator = await g.tokenFor('operator');
    const res = await g.request('POST', '/api/v1/dev/simulator/sensors', {
      token: admin,
      body: SAFE_SENSORS,
    });
    expect(res.status).toBe(200);
  });
  afterAll(() => g?.stop());

  it('should answer GET /safety with the documented shape for a viewer', async () => {
    const res = await g.request('GET', '/api/v1/ota/safety', { token: viewer });
    expect(res.status).toBe(200);
    expect(res.body.success).toBe(true);
    expect(res.body.message).toBe('Safety status retrieved successfully');
    const data = res.body.data;
    expect(data.constraints.crane_motion).toMatchObject({ enabled: true, status: 'idle', blocking: false });
    expect(data.constraints.acs_collision).toMatchObject({ enabled: true, status: 'clear', blocking: false });
    expect(data.constraints.ups_battery).toMatchObject({ enabled: true, level: 85, blocking: false });
    expect(data.constraints.network).toMatchObject({ enabled: true, status: 'connected', blocking: false });
    expect(data.constraints.system_load).toMatchObject({ enabled: true, status: 'normal', load: 0.1 });
    expect(data).toMatchObject({ force_override: false, update_allowed: true, override: null });
    expect(data.thresholds).toEqual({ ups_min_battery_percent: 30, max_system_load: 0.9 });
  });

  it('should refuse the simulator controls to viewers and operators', async () => {
    for (const token of [viewer, operator]) {
      const res = await g.request('POST', '/api/v1/dev/simulator/sensors', {
        token,
        body: { crane_motion: 'moving' },
      });
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('FORBIDDEN');
    }
  });

  it('should block updates when the crane moves and tell WebSocket clients', async () => {
    const ws = await wsClient(g, viewer);
    try {
      const mark = ws.mark();
      const moved = await g.request('POST', '/api/v1/dev/simulator/sensors', {
        token: admin,
        body: { crane_motion: 'moving', crane_estimated_clear_seconds: 90 },
      });
      expect(moved.status).toBe(200);
      expect(moved.body.data).toMatchObject({ crane_motion: 'moving', crane_estimated_clear_seconds: 90 });
      const update = await ws.waitFor((m) => m.type === 'safety_update', mark);
      expect(update).toEqual({
        type: 'safety_update',
        constraint: 'crane_motion',
        status: 'moving',
        blocking: true,
        estimated_clear: '01:30',
      });
      const res = await g.request('GET', '/api/v1/ota/safety', { token: viewer });
      expect(res.body.data.constraints.crane_motion).toMatchObject({
        status: 'moving',
        blocking: true,
        estimated_clear: '01:30',
      });
      expect(res.body.data.update_allowed).toBe(false);
      expect(g.deps.safety.blocking(GATEWAY)).toEqual(['crane_motion']);
      expect(() => g.deps.safety.assertAllowed(GATEWAY, 'install')).toThrowError(
        expect.objectContaining({
          gantryCode: 'OTA_UPDATE_BLOCKED',
          message: 'Update blocked by safety constraints: crane_motion (moving)',
          details: { blocking: ['crane_motion'], action: 'install' },
        }),
      );
    } finally {
      ws.close();
    }
  });

  it('should not let viewers or operators override (403)', async () => {
    for (const token of [viewer, operator]) {
      const res = await g.request('POST', '/api/v1/ota/safety/override', {
        token,
        body: { enable: true, pin: PIN, reason: 'x', constraints: ['crane_motion'] },
      });
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('FORBIDDEN');
    }
    expect((await g.request('GET', '/api/v1/ota/safety', { token: viewer })).body.data.force_override).toBe(
      false,
    );
  });

  it.each([
    [{ enable: true, pin: PIN, constraints: ['crane_motion'] }, 'reason'],
    [{ enable: true, pin: PIN, reason: '   ', constraints: ['crane_motion'] }, 'reason'],
    [{ enable: true, pin: PIN, reason: 'r'.repeat(501), constraints: ['crane_motion'] }, 'reason'],
    [{ enable: true, pin: PIN, reason: 'x', constraints: [] }, 'constraints'],
    [{ enable: true, pin: PIN, reason: 'x', constraints: ['gravity'] }, 'constraints.0'],
    // A PIN that is not 4-8 digits is a wrong PIN (safety-pin.test.ts); only a non-string or
    // oversized one is malformed input.
    [{ enable: true, pin: 1234, reason: 'x', constraints: ['crane_motion'] }, 'pin'],
    [{ enable: true, pin: '1'.repeat(65), reason: 'x', constraints: ['crane_motion'] }, 'pin'],
    [{ enable: true, reason: 'x', constraints: ['crane_motion'] }, 'pin'],
    [{ enable: true, pin: PIN, reason: 'x', constraints: ['crane_motion'], force: true }, 'force'],
    [{ pin: PIN }, 'enable'],
  ])('should reject the override body %j naming %s (400)', async (body, field) => {
    const res = await g.request('POST', '/api/v1/ota/safety/override', { token: admin, body });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('VALIDATION_ERROR');
    expect(res.body.error.details.fields.map((f: { field: string }) => f.field)).toContain(field);
  });

  it('should override with the right PIN for 15 minutes, then end on enable:false', async () => {
    const ws = await wsClient(g, viewer);
    try {
      const mark = ws.mark();
      const res = await g.request('POST', '/api/v1/ota/safety/override', {
        token: admin,
        body: { enable: true, pin: PIN, reason: 'Emergency update required', constraints: ['crane_motion'] },
      });
      expect(res.status).toBe(200);
      expect(res.body.message).toBe('Safety override enabled');
      expect(res.body.data).toEqual({
        override_enabled: true,
        expires_at: '2025-03-15T12:15:00Z',
        overridden_constraints: ['crane_motion'],
        update_allowed: true,
      });
      expect(await ws.waitFor((m) => m.type === 'safety_update', mark)).toMatchObject({
        constraint: 'crane_motion',
        status: 'moving',
        blocking: false,
      });

      const status = (await g.request('GET', '/api/v1/ota/safety', { token: viewer })).body.data;
      expect(status).toMatchObject({ force_override: true, update_allowed: true });
      expect(status.override).toEqual({
        constraints: ['crane_motion'],
        expires_at: '2025-03-15T12:15:00Z',
        reason: 'Emergency update required',
        enabled_by: 'admin',
      });
      expect(status.constraints.crane_motion).toMatchObject({ blocking: false, overridden: true });
      expect(() => g.deps.safety.assertAllowed(GATEWAY, 'install')).not.toThrow();

      const off = await g.request('POST', '/api/v1/ota/safety/override', {
        token: admin,
        body: { enable: false },
      });
      expect(off.status).toBe(200);
      expect(off.body.message).toBe('Safety override disabled');
      expect(off.body.data).toEqual({
        override_enabled: false,
        expires_at: null,
        overridden_constraints: [],
        update_allowed: false,
      });
      const logs = (await g.request('GET', '/api/v1/ota/logs?limit=50', { token: viewer })).body.data.logs;
      const messages = logs.map((l: { message: string }) => l.message);
      expect(messages).toContain('Safety override disabled by admin (crane_motion)');
      expect(
        messages.some((m: string) => m.startsWith('Safety override enabled by admin for crane_motion')),
      ).toBe(true);
      expect(messages.join('\n')).not.toContain(PIN);
    } finally {
      ws.close();
    }
  });

  it('should end an override given while idle when the next operation completes, and tell onChange', async () => {
    const changes: string[][] = [];
    const off = g.deps.safety.onChange(GATEWAY, (b) => changes.push(b));
    try {
      await g.request('POST', '/api/v1/ota/safety/override', {
        token: admin,
        body: { enable: true, pin: PIN, reason: 'planned', constraints: ['crane_motion'] },
      });
      expect(changes).toEqual([[]]);
      g.deps.safety.operationCompleted(GATEWAY, 'job-42');
      expect(changes).toEqual([[], ['crane_motion']]);
      expect((await g.request('GET', '/api/v1/ota/safety', { token: viewer })).body.data.force_override).toBe(
        false,
      );
    } finally {
      off();
    }
  });

  it('should honour constraints turned off in the settings (admin) and show them disabled', async () => {
    const set = await g.request('POST', '/api/v1/ota/settings', {
      token: admin,
      body: { safety: { crane_motion: false } },
    });
    expect(set.status).toBe(200);
    let data = (await g.request('GET', '/api/v1/ota/safety', { token: viewer })).body.data;
    expect(data.constraints.crane_motion).toMatchObject({
      enabled: false,
      status: 'moving',
      blocking: false,
    });
    expect(data.update_allowed).toBe(true);
    await g.request('POST', '/api/v1/ota/settings', {
      token: admin,
      body: { safety: { crane_motion: true } },
    });
    data = (await g.request('GET', '/api/v1/ota/safety', { token: viewer })).body.data;
    expect(data.constraints.crane_motion.blocking).toBe(true);
  });

  it('should follow the UPS threshold from the settings', async () => {
    await g.request('POST', '/api/v1/dev/simulator/sensors', {
      token: admin,
      body: { crane_motion: 'idle', ups_battery: 25 },
    });
    let data = (await g.request('GET', '/api/v1/ota/safety', { token: viewer })).body.data;
    expect(data.constraints.ups_battery).toMatchObject({ level: 25, status: 'low', blocking: true });
    expect(() => g.deps.safety.assertAllowed(GATEWAY, 'reboot')).toThrow(
      'Update blocked by safety constraints: ups_battery (25% < 30%)',
    );
    await g.request('POST', '/api/v1/ota/settings', {
      token: admin,
      body: { safety: { ups_min_battery_percent: 20 } },
    });
    data = (await g.request('GET', '/api/v1/ota/safety', { token: viewer })).body.data;
    expect(data.constraints.ups_battery).toMatchObject({ status: 'ok', blocking: false });
    expect(data.thresholds.ups_min_battery_percent).toBe(20);
    await g.request('POST', '/api/v1/ota/settings', {
      token: admin,
      body: { safety: { ups_min_battery_percent: 30 } },
    });
    await g.request('POST', '/api/v1/dev/simulator/sensors', { token: admin, body: SAFE_SENSORS });
  });

  it('should answer the simulator boot-failure and reboot controls', async () => {
    const fail = await g.request('POST', '/api/v1/dev/simulator/boot-failures', {
      token: admin,
      body: { slot: 'B', count: 2 },
    });
    expect(fail.status).toBe(200);
    expect(fail.body.data).toEqual({ slot: 'B', count: 2 });
    const cleared = await g.request('POST', '/api/v1/dev/simulator/boot-failures', {
      token: admin,
      body: { slot: 'B', count: 0 },
    });
    expect(cleared.status).toBe(200);
    const reboot = await g.request('POST', '/api/v1/dev/simulator/reboot', { token: admin });
    expect(reboot.status).toBe(200);
    expect(reboot.body.data).toMatchObject({ booted_slot: 'A', upgrade_available: false });
  });

  it('should answer the simulator controls with 404 on a gateway whose device is not simulated', async () => {
    const runtime = g.deps.gateways.get(GATEWAY)!;
    const real = runtime.device;
    // Stands in for the Linux device: anything that is not a SimulatedDevice.
    Object.defineProperty(runtime, 'device', { value: { ...real }, configurable: true });
    try {
      for (const [route, body] of [
        ['sensors', { crane_motion: 'moving' }],
        ['boot-failures', { slot: 'B', count: 1 }],
        ['self-test', { slot: 'B', fails: true }],
        ['reboot', undefined],
      ] as const) {
        const res = await g.request('POST', `/api/v1/dev/simulator/${route}`, { token: admin, body });
        expect(res.status).toBe(404);
        expect(res.body.error.code).toBe('NOT_FOUND');
      }
    } finally {
      Object.defineProperty(runtime, 'device', { value: real, configurable: true });
    }
  });
});

describe('Safety override across a restart', () => {
  it('should keep the same expires_at after a restart (no extension) and expire on time', async () => {
    const clock = fakeClock();
    const env = { GANTRY_SAFETY_PIN: PIN };
    let g = await startTestGantry({ clock: clock.now, env });
    try {
      let admin = await g.login();
      await g.request('POST', '/api/v1/dev/simulator/sensors', {
        token: admin,
        body: { ...SAFE_SENSORS, crane_motion: 'moving' },
      });
      const on = await g.request('POST', '/api/v1/ota/safety/override', {
        token: admin,
        body: { enable: true, pin: PIN, reason: 'before restart', constraints: ['crane_motion'] },
      });
      expect(on.body.data.expires_at).toBe('2025-03-15T12:15:00Z');

      clock.advance(5 * MIN);
      await g.stop();
      g = await startTestGantry({ clock: clock.now, env, dataDir: g.dataDir });
      admin = await g.login();
      let data = (await g.request('GET', '/api/v1/ota/safety', { token: admin })).body.data;
      expect(data.override?.expires_at).toBe('2025-03-15T12:15:00Z');
      expect(data).toMatchObject({ force_override: true, update_allowed: true });
      expect(data.constraints.crane_motion).toMatchObject({ status: 'moving', overridden: true });

      clock.advance(10 * MIN);
      data = (await g.request('GET', '/api/v1/ota/safety', { token: admin })).body.data;
      expect(data).toMatchObject({ force_override: false, update_allowed: false, override: null });
      expect(() => g.deps.safety.assertAllowed(GATEWAY, 'install')).toThrow(GantryError);
      const logs = (await g.request('GET', '/api/v1/ota/logs?limit=20', { token: admin })).body.data.logs;
      expect(logs.map((l: { message: string }) => l.message)).toContain(
        'Safety override expired (crane_motion)',
      );
    } finally {
      await g.stop();
    }
  });
});
