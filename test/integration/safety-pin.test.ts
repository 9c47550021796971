import { randomBytes, scryptSync } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { hashSecret } from '../../core/auth.js';
import { logs as logTable, safetyPins } from '../../drizzle/schema.js';
import { GATEWAY, startTestGantry, type TestGantry } from '../helpers/gantry.js';

const PIN = '7392';
const T0 = Date.parse('2025-03-15T12:00:00Z');
const MIN = 60_000;

function fakeClock() {
  let now = T0;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

function override(g: TestGantry, token: string, pin: string) {
  return g.request('POST', '/api/v1/ota/safety/override', {
    token,
    body: { enable: true, pin, reason: 'PIN test', constraints: ['crane_motion'] },
  });
}

describe('Safety override PIN', () => {
  it('should lock overrides after 5 wrong PINs, even for the right one, across a restart, for 15 minutes', async () => {
    const clock = fakeClock();
    const env = { GANTRY_SAFETY_PIN: PIN };
    let g = await startTestGantry({ clock: clock.now, env });
    try {
      let admin = await g.login();
      for (let left = 4; left >= 1; left--) {
        const res = await override(g, admin, '0000');
        expect(res.status).toBe(403);
        expect(res.body.error.code).toBe('OTA_INVALID_PIN');
        expect(res.body.error.details).toEqual({ attempts_left: left });
      }
      const fifth = await override(g, admin, '0000');
      expect(fifth.status).toBe(423);
      expect(fifth.body.error).toEqual({
        code: 'OTA_PIN_LOCKED',
        message: 'Safety override locked after 5 wrong PINs until 2025-03-15T12:15:00Z',
        details: { locked_until: '2025-03-15T12:15:00Z' },
      });
      const right = await override(g, admin, PIN);
      expect(right.status).toBe(423);
      expect(right.body.error.code).toBe('OTA_PIN_LOCKED');

      // The lockout is in the store: a restart does not hand out five fresh guesses.
      await g.stop();
      g = await startTestGantry({ clock: clock.now, env, dataDir: g.dataDir });
      admin = await g.login();
      expect((await override(g, admin, PIN)).status).toBe(423);

      clock.advance(15 * MIN - 1000);
      expect((await override(g, admin, PIN)).status).toBe(423);
      clock.advance(1000);
      const after = await override(g, admin, PIN);
      expect(after.status).toBe(200);
      expect(after.body.data.override_enabled).toBe(true);
      // A success starts the count over: one wrong PIN leaves four attempts again.
      const wrong = await override(g, admin, '1111');
      expect(wrong.body.error.details).toEqual({ attempts_left: 4 });

      const audit = g.deps.audit.recent(50).filter((a) => a.action === 'safety.override');
      expect(audit.map((a) => a.detail)).toContain('OTA_PIN_LOCKED');
      expect(JSON.stringify(audit)).not.toContain(PIN);
    } finally {
      await g.stop();
    }
  });

  // Regression (issue 11.5): a PIN that was not 4-8 digits answered 400 VALIDATION_ERROR and was
  // not counted, so malformed PINs were free probes of the endpoint.
  it('should answer a malformed PIN as a wrong one and lock after 5 of them', async () => {
    const g = await startTestGantry({ env: { GANTRY_SAFETY_PIN: PIN } });
    try {
      const admin = await g.login();
      const malformed = ['12', 'abcd', '123456789', '', `${PIN} `];
      for (const [i, pin] of malformed.slice(0, 4).entries()) {
        const res = await override(g, admin, pin);
        expect(res.status, JSON.stringify(res.body)).toBe(403);
        expect(res.body.error.code).toBe('OTA_INVALID_PIN');
        expect(res.body.error.details).toEqual({ attempts_left: 4 - i });
      }
      const fifth = await override(g, admin, malformed[4]!);
      expect(fifth.status).toBe(423);
      expect(fifth.body.error.code).toBe('OTA_PIN_LOCKED');
      // Locked for the right PIN too, and on the factory reset that shares the count.
      expect((await override(g, admin, PIN)).body.error.code).toBe('OTA_PIN_LOCKED');
      const factory = await g.request('POST', '/api/v1/ota/recovery/factory', {
        token: admin,
        body: { pin: PIN, confirm: true, wipe_data: false, reason: 'PIN test' },
      });
      expect(factory.body.error.code).toBe('OTA_PIN_LOCKED');

      const audit = g.deps.audit.recent(50).filter((a) => a.action === 'safety.override');
      expect(audit.filter((a) => a.detail === 'OTA_INVALID_PIN')).toHaveLength(4);
      expect(audit.map((a) => a.detail)).toContain('OTA_PIN_LOCKED');
    } finally {
      await g.stop();
    }
  });

  it('should keep a missing, non-string or oversized PIN a validation error that costs no attempt', async () => {
    const g = await startTestGantry({ env: { GANTRY_SAFETY_PIN: PIN } });
    try {
      const admin = await g.login();
      const body = { enable: true, reason: 'PIN test', constraints: ['crane_motion'] };
      for (const extra of [{}, { pin: 7392 }, { pin: null }, { pin: '1'.repeat(65) }]) {
        const res = await g.request('POST', '/api/v1/ota/safety/override', {
          token: admin,
          body: { ...body, ...extra },
        });
        expect(res.status, JSON.stringify(extra)).toBe(400);
        expect(res.body.error.code).toBe('VALIDATION_ERROR');
        expect(res.body.error.message).toContain('pin');
      }
      // None of them counted: the first wrong PIN still leaves four attempts.
      const wrong = await override(g, admin, '0000');
      expect(wrong.body.error.details).toEqual({ attempts_left: 4 });
    } finally {
      await g.stop();
    }
  });

  it('should not let parallel guesses slip past the count', async () => {
    const g = await startTestGantry({ env: { GANTRY_SAFETY_PIN: PIN } });
    try {
      const admin = await g.login();
      const guesses = await Promise.all(
        Array.from({ length: 8 }, (_, i) => override(g, admin, String(1000 + i))),
      );
      const codes = guesses.map((r) => r.body.error.code).sort();
      expect(codes.filter((c) => c === 'OTA_INVALID_PIN')).toHaveLength(4);
      expect(codes.filter((c) => c === 'OTA_PIN_LOCKED')).toHaveLength(4);
    } finally {
      await g.stop();
    }
  });

  it('should generate a 6-digit PIN on first start when none is configured, keep only its hash, and hand it out once', async () => {
    const g = await startTestGantry();
    let dataDir = '';
    let pin = '';
    try {
      dataDir = g.dataDir;
      pin = (await g.deps.safety.takeGeneratedPins())[GATEWAY] ?? '';
      expect(pin).toMatch(/^\d{6}$/);
      expect(await g.deps.safety.takeGeneratedPins()).toEqual({});
      const row = g.deps.db.select().from(safetyPins).where(eq(safetyPins.gatewayId, GATEWAY)).get();
      expect(row).toMatchObject({ source: 'generated', failedAttempts: 0, lockedUntil: null });
      expect(row!.pinHash).toMatch(/^scrypt\$8192\$8\$10\$/);
      const admin = await g.login();
      expect((await override(g, admin, pin)).status).toBe(200);
      expect((await override(g, admin, pin === '000000' ? '000001' : '000000')).status).toBe(403);
    } finally {
      await g.stop();
    }
    // A second start generates nothing; the PIN is in no log line or audit row.
    const again = await startTestGantry({ dataDir });
    try {
      expect(await again.deps.safety.takeGeneratedPins()).toEqual({});
      const logs = again.deps.db.select().from(logTable).all();
      expect(logs.some((l) => l.message.startsWith('Safety override enabled'))).toBe(true);
      // Text fields only: a 13-digit timestamp could hold any 6 digits by chance.
      expect(logs.map((l) => l.message).join('\n')).not.toContain(pin);
      expect(
        again.deps.audit
          .recent(100)
          .map((a) => `${a.action} ${a.detail}`)
          .join('\n'),
      ).not.toContain(pin);
    } finally {
      await again.stop();
    }
  });

  it('should take a provisioned PIN as a plain PIN or as a hashSecret hash, and refuse unusable hashes', async () => {
    const g = await startTestGantry({ env: { GANTRY_SAFETY_PIN: PIN } });
    try {
      const admin = await g.login();
      await g.deps.safety.setPin(GATEWAY, { hash: await hashSecret('55556666') });
      expect((await override(g, admin, PIN)).status).toBe(403);
      expect((await override(g, admin, '55556666')).status).toBe(200);
      // A hash made with older parameters (N=2^14, r=8, p=1) is stored anew once the PIN is right.
      const salt = randomBytes(16);
      const key = scryptSync('13572468', salt, 32, { N: 16384, r: 8, p: 1 });
      const legacy = ['scrypt', 16384, 8, 1, salt.toString('base64'), key.toString('base64')].join('$');
      await g.deps.safety.setPin(GATEWAY, { hash: legacy });
      const pinHash = () =>
        g.deps.db.select().from(safetyPins).where(eq(safetyPins.gatewayId, GATEWAY)).get()!.pinHash;
      expect((await override(g, admin, '13572460')).status).toBe(403);
      expect(pinHash()).toBe(legacy);
      expect((await override(g, admin, '13572468')).status).toBe(200);
      expect(pinHash()).toMatch(/^scrypt\$8192\$8\$10\$/);
      expect((await override(g, admin, '13572468')).status).toBe(200);
      await g.deps.safety.setPin(GATEWAY, { pin: '2468' });
      expect((await override(g, admin, '2468')).status).toBe(200);
      const row = g.deps.db.select().from(safetyPins).where(eq(safetyPins.gatewayId, GATEWAY)).get();
      expect(row).toMatchObject({ source: 'provisioned', failedAttempts: 0 });

      for (const bad of [
        'not-a-hash',
        '2468',
        // N = 2^24 would make every verification allocate gigabytes.
        'scrypt$16777216$8$1$c2FsdA==$aGFzaA==',
        'scrypt$1000$8$1$c2FsdA==$aGFzaA==',
      ]) {
        await expect(g.deps.safety.setPin(GATEWAY, { hash: bad })).rejects.toMatchObject({
          gantryCode: 'VALIDATION_ERROR',
        });
      }
      await expect(g.deps.safety.setPin(GATEWAY, { pin: '12' })).rejects.toMatchObject({
        gantryCode: 'VALIDATION_ERROR',
      });
      await expect(g.deps.safety.setPin(GATEWAY, {})).rejects.toMatchObject({
        gantryCode: 'VALIDATION_ERROR',
      });
      await expect(g.deps.safety.setPin('GW-NOPE', { pin: '1234' })).rejects.toMatchObject({
        gantryCode: 'GATEWAY_NOT_FOUND',
      });
    } finally {
      await g.stop();
    }
  });

  it('should refuse a malformed GANTRY_SAFETY_PIN at start-up, naming the variable', async () => {
    await expect(startTestGantry({ env: { GANTRY_SAFETY_PIN: '12ab' } })).rejects.toThrow(
      /GANTRY_SAFETY_PIN: must be 4 to 8 digits/,
    );
  });
});
