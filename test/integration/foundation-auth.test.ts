import { randomBytes, scryptSync } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { users } from '../../drizzle/schema.js';
import { ADMIN_PASSWORD, GATEWAY, startTestGantry, type TestGantry } from '../helpers/gantry.js';

/** The session_token Set-Cookie of a response, split into its value and lower-cased attributes. */
function sessionCookie(headers: Headers): { value: string; attributes: string[]; raw: string } | undefined {
  const raw = headers.getSetCookie().find((c) => c.startsWith('session_token='));
  if (!raw) return undefined;
  const [pair, ...attributes] = raw.split(';').map((s) => s.trim());
  return { value: decodeURIComponent(pair!.slice('session_token='.length)), attributes, raw };
}

function hasAttribute(attributes: string[], name: string): boolean {
  return attributes.some((a) => a.toLowerCase() === name.toLowerCase());
}

describe('foundation: authentication (REST)', () => {
  let g: TestGantry;
  beforeAll(async () => {
    g = await startTestGantry();
  });
  afterAll(() => g.stop());

  function latestAudit(action: string) {
    return g.deps.audit.recent(50).find((row) => row.action === action);
  }

  describe('POST /api/v1/auth/login', () => {
    it('should return a bearer token, its expiry and the user', async () => {
      const before = Date.now();
      const res = await g.request('POST', '/api/v1/auth/login', {
        body: { username: 'admin', password: ADMIN_PASSWORD },
        gateway: null,
      });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({
        success: true,
        message: 'Login successful',
        data: {
          token_type: 'Bearer',
          user: { username: 'admin', role: 'admin', gateways: ['*'] },
        },
      });
      expect(res.body.data.token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
      expect(res.body.data.expires_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      const ttl = Date.parse(res.body.data.expires_at) - before;
      expect(ttl).toBeGreaterThan(1790_000);
      expect(ttl).toBeLessThanOrEqual(1801_000);
      expect(latestAudit('auth.login')).toMatchObject({ username: 'admin', outcome: 'success' });

      const status = await g.request('GET', '/api/v1/ota/status', { token: res.body.data.token });
      expect(status.status).toBe(200);
    });

    it('should set an HttpOnly, SameSite=Strict session_token cookie holding the token', async () => {
      const res = await g.request('POST', '/api/v1/auth/login', {
        body: { username: 'admin', password: ADMIN_PASSWORD },
        gateway: null,
      });
      const cookie = sessionCookie(res.headers);
      expect(cookie).toBeDefined();
      expect(cookie!.value).toBe(res.body.data.token);
      expect(hasAttribute(cookie!.attributes, 'HttpOnly')).toBe(true);
      expect(hasAttribute(cookie!.attributes, 'SameSite=Strict')).toBe(true);
      expect(hasAttribute(cookie!.attributes, 'Path=/')).toBe(true);
      expect(hasAttribute(cookie!.attributes, 'Max-Age=1800')).toBe(true);
      // GANTRY_COOKIE_SECURE defaults to false (plain HTTP on the plant network).
      expect(hasAttribute(cookie!.attributes, 'Secure')).toBe(false);
    });

    it('should refuse a wrong password and an unknown user alike, with no cookie', async () => {
      const wrong = await g.request('POST', '/api/v1/auth/login', {
        body: { username: 'admin', password: 'not-the-password' },
        gateway: null,
      });
      const unknown = await g.request('POST', '/api/v1/auth/login', {
        body: { username: 'nobody', password: 'not-the-password' },
        gateway: null,
      });
      for (const res of [wrong, unknown]) {
        expect(res.status).toBe(401);
        expect(res.body.success).toBe(false);
        expect(res.body.error.code).toBe('AUTH_INVALID_CREDENTIALS');
        expect(sessionCookie(res.headers)).toBeUndefined();
      }
      expect(wrong.body.message).toBe(unknown.body.message);
      const rows = g.deps.audit.recent(10).filter((r) => r.action === 'auth.login');
      expect(rows[0]).toMatchObject({
        username: 'nobody',
        outcome: 'failure',
        detail: 'AUTH_INVALID_CREDENTIALS',
      });
      expect(rows[1]).toMatchObject({
        username: 'admin',
        outcome: 'failure',
        detail: 'AUTH_INVALID_CREDENTIALS',
      });
      // The audit trail never holds the attempted password.
      expect(JSON.stringify(rows)).not.toContain('not-the-password');
    });

    it('should store a password hashed with older scrypt parameters anew at its next login', async () => {
      const username = 'old-hash';
      await g.deps.users.create({ username, password: 'password-old-1', role: 'viewer', gateways: ['*'] });
      // The hash as a release before the parameter change wrote it (N=2^14, r=8, p=1).
      const salt = randomBytes(16);
      const key = scryptSync('password-old-1', salt, 32, { N: 16384, r: 8, p: 1 });
      const legacy = ['scrypt', 16384, 8, 1, salt.toString('base64'), key.toString('base64')].join('$');
      g.deps.db.update(users).set({ passwordHash: legacy }).where(eq(users.username, username)).run();
      const storedHash = () =>
        g.deps.db.select().from(users).where(eq(users.username, username)).get()!.passwordHash;

      const wrong = await g.request('POST', '/api/v1/auth/login', {
        body: { username, password: 'password-old-2' },
        gateway: null,
      });
      expect(wrong.status).toBe(401);
      expect(storedHash()).toBe(legacy);

      const first = await g.request('POST', '/api/v1/auth/login', {
        body: { username, password: 'password-old-1' },
        gateway: null,
      });
      expect(first.status).toBe(200);
      expect(storedHash()).toMatch(/^scrypt\$8192\$8\$10\$/);
      const again = await g.request('POST', '/api/v1/auth/login', {
        body: { username, password: 'password-old-1' },
        gateway: null,
      });
      expect(again.status).toBe(200);
    });

    it.each([
      ['malformed JSON', { rawBody: '{"username": "admin", ' }, /JSON/],
      ['a missing password', { body: { username: 'admin' } }, /password/],
      ['a wrong field type', { body: { username: 42, password: ADMIN_PASSWORD } }, /username/],
      [
        'an unknown field',
        { body: { username: 'admin', password: ADMIN_PASSWORD, remember: true } },
        /remember/,
      ],
      ['an empty username', { body: { username: '', password: 'x' } }, /username/],
    ])('should answer %s with 400 VALIDATION_ERROR naming the problem', async (_name, input, named) => {
      const res = await g.request('POST', '/api/v1/auth/login', { ...input, gateway: null });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('VALIDATION_ERROR');
      expect(res.body.message).toMatch(named);
      expect(sessionCookie(res.headers)).toBeUndefined();
    });
  });

  describe('bearer token checks', () => {
    it('should answer a request without a token with 401 AUTH_REQUIRED', async () => {
      const res = await g.request('GET', '/api/v1/ota/status');
      expect(res.status).toBe(401);
      expect(res.body).toMatchObject({ success: false, error: { code: 'AUTH_REQUIRED' } });
    });

    it('should answer a non-Bearer Authorization header with 401 AUTH_REQUIRED', async () => {
      const res = await g.request('GET', '/api/v1/ota/status', {
        headers: { authorization: `Basic ${Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64')}` },
      });
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('AUTH_REQUIRED');
    });

    it('should answer an expired token with 401 AUTH_TOKEN_EXPIRED', async () => {
      const res = await g.request('GET', '/api/v1/ota/status', {
        token: g.signToken({}, { expiresInSeconds: -5 }),
      });
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('AUTH_TOKEN_EXPIRED');
    });

    it('should answer a token signed with another key with 401 AUTH_INVALID_TOKEN', async () => {
      const forged = g.signToken({}, { secret: 'an-attacker-chosen-secret-of-sufficient-length' });
      const res = await g.request('GET', '/api/v1/ota/status', { token: forged });
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('AUTH_INVALID_TOKEN');
    });

    it('should answer a token for another audience with 401 AUTH_INVALID_TOKEN', async () => {
      const res = await g.request('GET', '/api/v1/ota/status', {
        token: g.signToken({}, { audience: 'other' }),
      });
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('AUTH_INVALID_TOKEN');
    });

    it('should answer a well-signed token of a user that does not exist with 401 AUTH_INVALID_TOKEN', async () => {
      const res = await g.request('GET', '/api/v1/ota/status', { token: g.signToken({ sub: 'ghost' }) });
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('AUTH_INVALID_TOKEN');
    });

    it('should take role and gateways from the store, not from the token', async () => {
      // A viewer's token re-signed with admin claims would be a forgery; a token whose claims are
      // stale (the user was changed) must not grant more than the user now has.
      await g.deps.users.create({
        username: 'demoted',
        password: 'password-123',
        role: 'viewer',
        gateways: ['*'],
      });
      const stale = g.signToken({ sub: 'demoted', role: 'admin', ver: 0 });
      const res = await g.request('POST', '/api/v1/ota/settings', {
        token: stale,
        body: { auto_rollback: false },
      });
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('FORBIDDEN');
    });
  });

  describe('cookie authentication and CSRF', () => {
    let cookie: string;
    beforeAll(async () => {
      const res = await g.request('POST', '/api/v1/auth/login', {
        body: { username: 'admin', password: ADMIN_PASSWORD },
        gateway: null,
      });
      cookie = `session_token=${encodeURIComponent(sessionCookie(res.headers)!.value)}`;
    });

    async function currentSettings() {
      const res = await g.request('GET', '/api/v1/ota/settings', { token: await g.login() });
      expect(res.status).toBe(200);
      return res.body.data;
    }

    it('should authenticate reads with the cookie alone', async () => {
      const res = await g.request('GET', '/api/v1/ota/status', { headers: { cookie } });
      expect(res.status).toBe(200);
    });

    it('should refuse a cookie-authenticated write without Origin with 403 CSRF_REJECTED and change nothing', async () => {
      const before = await currentSettings();
      const res = await g.request('POST', '/api/v1/ota/settings', {
        headers: { cookie },
        body: { update_strategy: before.update_strategy === 'rolling' ? 'seamless' : 'rolling' },
      });
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('CSRF_REJECTED');
      expect(await currentSettings()).toEqual(before);
      expect(latestAudit('settings.update')).toMatchObject({
        username: 'admin',
        gatewayId: GATEWAY,
        outcome: 'failure',
        detail: 'CSRF_REJECTED',
      });
    });

    it('should refuse a cookie-authenticated write from a foreign Origin', async () => {
      const before = await currentSettings();
      const res = await g.request('POST', '/api/v1/ota/auto-update', {
        headers: { cookie, origin: 'https://evil.example.com' },
        body: { enabled: !before.auto_update.enabled },
      });
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('CSRF_REJECTED');
      expect(await currentSettings()).toEqual(before);
      expect(latestAudit('settings.setAutoUpdate')).toMatchObject({
        outcome: 'failure',
        detail: 'CSRF_REJECTED',
      });
    });

    it('should refuse a look-alike Origin on another port', async () => {
      const res = await g.request('POST', '/api/v1/ota/settings', {
        headers: { cookie, origin: `http://127.0.0.1:${g.port + 1}` },
        body: { auto_rollback: true },
      });
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('CSRF_REJECTED');
    });

    it('should accept a cookie-authenticated write with this server’s Origin', async () => {
      const res = await g.request('POST', '/api/v1/ota/settings', {
        headers: { cookie, origin: g.url },
        body: { update_strategy: 'rolling' },
      });
      expect(res.status).toBe(200);
      expect(res.body.data.updated).toBe(true);
      expect((await currentSettings()).update_strategy).toBe('rolling');
      expect(latestAudit('settings.update')).toMatchObject({ outcome: 'success', detail: null });
    });

    it('should accept a same-origin Referer when Origin is absent', async () => {
      const res = await g.request('POST', '/api/v1/ota/settings', {
        headers: { cookie, referer: `${g.url}/ota-system-updates` },
        body: { update_strategy: 'seamless' },
      });
      expect(res.status).toBe(200);
      expect((await currentSettings()).update_strategy).toBe('seamless');
    });

    it('should not require Origin when a Bearer token is sent (even beside the cookie)', async () => {
      const res = await g.request('POST', '/api/v1/ota/settings', {
        token: await g.login(),
        headers: { cookie: 'session_token=garbage' },
        body: { update_strategy: 'seamless' },
      });
      expect(res.status).toBe(200);
    });
  });

  describe('POST /api/v1/auth/logout', () => {
    async function userWithToken(username: string, role: 'viewer' | 'operator' = 'operator') {
      await g.deps.users.create({ username, password: 'password-123', role, gateways: ['*'] });
      return g.login(username, 'password-123');
    }

    it('should revoke the token and every other token of the user, and clear the cookie', async () => {
      const token = await userWithToken('leaving');
      const sameUserOther = await g.login('leaving', 'password-123');
      const otherUser = await userWithToken('staying');
      expect((await g.request('GET', '/api/v1/ota/status', { token })).status).toBe(200);

      const res = await g.request('POST', '/api/v1/auth/logout', { token, gateway: null });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ success: true, data: { logged_out: true }, message: 'Logged out' });
      const cleared = sessionCookie(res.headers);
      expect(cleared?.value).toBe('');
      expect(cleared?.raw).toMatch(/Expires=Thu, 01 Jan 1970/);

      for (const revoked of [token, sameUserOther]) {
        const after = await g.request('GET', '/api/v1/ota/status', { token: revoked });
        expect(after.status).toBe(401);
        expect(after.body.error.code).toBe('AUTH_INVALID_TOKEN');
      }
      expect((await g.request('GET', '/api/v1/ota/status', { token: otherUser })).status).toBe(200);
      expect(latestAudit('auth.logout')).toMatchObject({ username: 'leaving', outcome: 'success' });
    });

    it('should let the user log in again after logout', async () => {
      const token = await userWithToken('returning', 'viewer');
      await g.request('POST', '/api/v1/auth/logout', { token, gateway: null });
      const fresh = await g.login('returning', 'password-123');
      expect((await g.request('GET', '/api/v1/ota/status', { token: fresh })).status).toBe(200);
    });

    it('should answer logout without a token with 401 AUTH_REQUIRED and audit it', async () => {
      const res = await g.request('POST', '/api/v1/auth/logout', { gateway: null });
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('AUTH_REQUIRED');
      expect(latestAudit('auth.logout')).toMatchObject({ outcome: 'failure', detail: 'AUTH_REQUIRED' });
    });

    it('should refuse a cookie-authenticated logout without Origin (CSRF)', async () => {
      const token = await g.tokenFor('viewer');
      const res = await g.request('POST', '/api/v1/auth/logout', {
        headers: { cookie: `session_token=${token}` },
        gateway: null,
      });
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('CSRF_REJECTED');
      expect((await g.request('GET', '/api/v1/ota/status', { token })).status).toBe(200);
    });
  });
});

describe('foundation: login rate limiting and cookie options', () => {
  let g: TestGantry;
  beforeAll(async () => {
    g = await startTestGantry({
      env: {
        GANTRY_LOGIN_ATTEMPTS_PER_MINUTE: '3',
        GANTRY_COOKIE_SECURE: 'true',
        GANTRY_TRUSTED_ORIGINS: 'https://scada.example.com',
      },
    });
  });
  afterAll(() => g.stop());

  const attempt = (username: string, password: string) =>
    g.request('POST', '/api/v1/auth/login', { body: { username, password }, gateway: null });

  it('should answer the 4th failed attempt within a minute with 429 AUTH_RATE_LIMITED', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await attempt('admin', `wrong-${i}`);
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('AUTH_INVALID_CREDENTIALS');
    }
    const limited = await attempt('admin', 'wrong-3');
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe('AUTH_RATE_LIMITED');
    expect(limited.body.error.details.retry_after_seconds).toBeGreaterThan(0);
    expect(limited.body.error.details.retry_after_seconds).toBeLessThanOrEqual(60);
    expect(g.deps.audit.recent(1)[0]).toMatchObject({
      action: 'auth.login',
      outcome: 'failure',
      detail: 'AUTH_RATE_LIMITED',
    });
  });

  it('should not let parallel guesses past the limit while the first ones are still hashing (regression)', async () => {
    await g.deps.users.create({
      username: 'target',
      password: 'target-password',
      role: 'viewer',
      gateways: ['*'],
    });
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => attempt('target', `guess-${i}`)));
    const statuses = results.map((r) => r.status);
    // Exactly the allowed 3 are checked against the password; the rest are refused unchecked.
    expect(statuses.filter((s) => s === 401)).toHaveLength(3);
    expect(statuses.filter((s) => s === 429)).toHaveLength(9);
  });

  it('should keep refusing the limited user even with the right password', async () => {
    const res = await attempt('admin', ADMIN_PASSWORD);
    expect(res.status).toBe(429);
    expect(sessionCookie(res.headers)).toBeUndefined();
  });

  it('should not lock out another user from the same address', async () => {
    await g.deps.users.create({ username: 'op', password: 'op-password', role: 'operator', gateways: ['*'] });
    const res = await attempt('op', 'op-password');
    expect(res.status).toBe(200);
  });

  it('should forget failures after a successful login', async () => {
    await g.deps.users.create({
      username: 'op2',
      password: 'op2-password',
      role: 'operator',
      gateways: ['*'],
    });
    for (let i = 0; i < 2; i++) expect((await attempt('op2', 'nope')).status).toBe(401);
    expect((await attempt('op2', 'op2-password')).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await attempt('op2', 'nope')).status).toBe(401);
    expect((await attempt('op2', 'nope')).status).toBe(429);
  });

  it('should mark the cookie Secure when GANTRY_COOKIE_SECURE=true', async () => {
    const res = await attempt('op', 'op-password');
    const cookie = sessionCookie(res.headers)!;
    expect(hasAttribute(cookie.attributes, 'Secure')).toBe(true);
    expect(hasAttribute(cookie.attributes, 'HttpOnly')).toBe(true);
  });

  it('should accept a cookie-authenticated write from a GANTRY_TRUSTED_ORIGINS origin', async () => {
    await g.deps.users.create({
      username: 'boss',
      password: 'boss-password',
      role: 'admin',
      gateways: ['*'],
    });
    const login = await attempt('boss', 'boss-password');
    const cookie = `session_token=${sessionCookie(login.headers)!.value}`;
    const trusted = await g.request('POST', '/api/v1/ota/settings', {
      headers: { cookie, origin: 'https://scada.example.com' },
      body: { update_strategy: 'rolling' },
    });
    expect(trusted.status).toBe(200);
    const untrusted = await g.request('POST', '/api/v1/ota/settings', {
      headers: { cookie, origin: 'https://scada.example.com.evil.net' },
      body: { update_strategy: 'seamless' },
    });
    expect(untrusted.status).toBe(403);
    expect(untrusted.body.error.code).toBe('CSRF_REJECTED');
  });
});
