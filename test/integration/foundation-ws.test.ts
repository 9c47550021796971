import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startTestGantry, type TestGantry } from '../helpers/gantry.js';

/** The OTA WebSocket /api/v1/ota/ws with a real `ws` client against the real server. */

const GW_A = 'GW-3920A9';
const GW_B = 'GW-7781B2';
const T0 = Date.parse('2025-03-15T11:57:00Z');

type Message = Record<string, unknown> & { type: string };

/** A `ws` client that records every message and close, and waits for them by event (no sleeping). */
class OtaWsClient {
  readonly messages: Message[] = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly ws: WebSocket;
  private waiters: Array<() => void> = [];

  constructor(url: string, headers: Record<string, string> = {}) {
    this.ws = new WebSocket(url, { headers });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.closed = new Promise((resolve) =>
      this.ws.once('close', (code, reason) => {
        resolve({ code, reason: reason.toString() });
        this.notify();
      }),
    );
    this.ws.on('message', (raw) => {
      this.messages.push(JSON.parse(String(raw)) as Message);
      this.notify();
    });
  }

  private notify(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  send(message: unknown): void {
    this.ws.send(typeof message === 'string' ? message : JSON.stringify(message));
  }

  async auth(token: string, gatewayId?: string): Promise<Message> {
    await this.opened;
    this.send({ type: 'auth', token, ...(gatewayId ? { gateway_id: gatewayId } : {}) });
    return this.waitFor((m) => m.type === 'auth_ok');
  }

  /** Resolves with the first message (already received or coming) that matches. */
  async waitFor(match: (m: Message) => boolean, timeoutMs = 5000): Promise<Message> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.find(match);
      if (found) return found;
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error('socket closed before the message came');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching message; got ${JSON.stringify(this.messages)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  get readyState(): number {
    return this.ws.readyState;
  }

  close(): void {
    this.ws.terminate();
  }
}

describe('foundation: OTA WebSocket /api/v1/ota/ws', () => {
  let g: TestGantry;
  const clock = { now: T0 };
  let admin: string;
  const clients: OtaWsClient[] = [];

  beforeAll(async () => {
    g = await startTestGantry({
      clock: () => clock.now,
      env: { GANTRY_GATEWAYS: `${GW_A}:Univa-GW-Pro,${GW_B}:Univa-GW-Lite:Europe/Amsterdam` },
      // Only the system_status sent right after auth: the periodic one is tested below.
      ws: { authTimeoutMs: 10_000, statusIntervalMs: 3_600_000 },
    });
    admin = await g.login();
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  afterAll(() => g.stop());

  function connect(headers: Record<string, string> = {}): OtaWsClient {
    const client = new OtaWsClient(`${g.url.replace(/^http/, 'ws')}/api/v1/ota/ws`, headers);
    clients.push(client);
    return client;
  }

  it('should confirm auth, then send a system_status in the documented shape', async () => {
    const ws = connect();
    const ok = await ws.auth(admin, GW_A);
    expect(ok).toEqual({ type: 'auth_ok', gateway_id: GW_A, user: 'admin' });
    const status = await ws.waitFor((m) => m.type === 'system_status');
    expect(status).toEqual({
      type: 'system_status',
      status: 'idle',
      current_operation: 'none',
      progress: 0,
      resources: { cpu_usage: expect.any(Number), memory_usage: expect.any(Number) },
      timestamp: '2025-03-15T11:57:00Z',
    });
    expect(ws.messages[0]!.type).toBe('auth_ok');
  });

  it('should take the gateway from the X-Gateway-ID header of the upgrade', async () => {
    const ws = connect({ 'X-Gateway-ID': GW_B });
    expect((await ws.auth(admin)).gateway_id).toBe(GW_B);
  });

  it('should push a log_entry when a setting is changed through REST', async () => {
    const ws = connect();
    await ws.auth(admin, GW_A);
    const res = await g.request('POST', '/api/v1/ota/settings', {
      token: admin,
      gateway: GW_A,
      body: { update_strategy: 'rolling' },
    });
    expect(res.status).toBe(200);
    const entry = await ws.waitFor((m) => m.type === 'log_entry');
    expect(entry).toEqual({
      type: 'log_entry',
      timestamp: '2025-03-15T11:57:00Z',
      level: 'info',
      source: 'settings',
      message: 'Settings updated by admin',
    });
  });

  it('should never deliver events of another gateway', async () => {
    const a = connect();
    await a.auth(admin, GW_A);
    const b = connect();
    await b.auth(admin, GW_B);

    await g.request('POST', '/api/v1/ota/settings', {
      token: admin,
      gateway: GW_B,
      body: { auto_check: false },
    });
    await g.request('POST', '/api/v1/ota/auto-update', {
      token: admin,
      gateway: GW_B,
      body: { enabled: true },
    });
    g.deps.logs.warn(GW_B, 'test', 'marker of B');
    // Events on one socket arrive in order: once A's own marker is in, B's would have been too.
    g.deps.logs.warn(GW_A, 'test', 'marker of A');

    await a.waitFor((m) => m.message === 'marker of A');
    await b.waitFor((m) => m.message === 'marker of B');
    const logsOfA = a.messages.filter((m) => m.type === 'log_entry').map((m) => m.message);
    expect(logsOfA).toEqual(['marker of A']);
    expect(b.messages.filter((m) => m.type === 'log_entry').map((m) => m.message)).toEqual([
      'Settings updated by admin',
      'Auto-update enabled by admin',
      'marker of B',
    ]);
  });

  it('should deliver to a viewer scoped to the gateway', async () => {
    const viewer = await g.tokenFor('viewer', [GW_B]);
    const ws = connect();
    await ws.auth(viewer, GW_B);
    g.deps.logs.info(GW_B, 'test', 'for the viewer');
    expect((await ws.waitFor((m) => m.type === 'log_entry')).message).toBe('for the viewer');
  });

  it('should stop publishing to a client once it disconnected', async () => {
    const ws = connect();
    await ws.auth(admin, GW_A);
    const before = g.deps.bus.listenerCount(GW_A);
    ws.close();
    await ws.closed;
    // The server sees the close asynchronously: yield to the event loop until its listener goes.
    const deadline = Date.now() + 5000;
    while (g.deps.bus.listenerCount(GW_A) >= before && Date.now() < deadline) {
      await new Promise((r) => setImmediate(r));
    }
    expect(g.deps.bus.listenerCount(GW_A)).toBe(before - 1);
  });

  it('should ignore further messages after auth and keep the channel open', async () => {
    const ws = connect();
    await ws.auth(admin, GW_A);
    ws.send({ type: 'auth', token: 'garbage' });
    ws.send('not json');
    g.deps.logs.info(GW_A, 'test', 'still here');
    expect((await ws.waitFor((m) => m.message === 'still here')).type).toBe('log_entry');
    expect(ws.readyState).toBe(WebSocket.OPEN);
  });

  describe('refusals (close codes)', () => {
    it('should close with 4401 for a garbage token', async () => {
      const ws = connect();
      await ws.opened;
      ws.send({ type: 'auth', token: 'not-a-token', gateway_id: GW_A });
      expect(await ws.closed).toEqual({ code: 4401, reason: 'AUTH_INVALID_TOKEN' });
      expect(ws.messages).toEqual([]);
    });

    it('should close with 4401 for a forged token', async () => {
      const ws = connect();
      await ws.opened;
      ws.send({
        type: 'auth',
        token: g.signToken({}, { secret: 'forged-forged-forged-forged-forged!' }),
        gateway_id: GW_A,
      });
      expect((await ws.closed).code).toBe(4401);
    });

    it('should close with 4401 AUTH_TOKEN_EXPIRED for an expired token', async () => {
      const ws = connect();
      await ws.opened;
      ws.send({ type: 'auth', token: g.signToken({}, { expiresInSeconds: -1 }), gateway_id: GW_A });
      expect(await ws.closed).toEqual({ code: 4401, reason: 'AUTH_TOKEN_EXPIRED' });
    });

    it('should close an open channel before delivering the next event once the session is revoked', async () => {
      await g.deps.users.create({
        username: 'quitter',
        password: 'password-123',
        role: 'viewer',
        gateways: ['*'],
      });
      const token = await g.login('quitter', 'password-123');
      const ws = connect();
      await ws.auth(token, GW_A);
      await g.request('POST', '/api/v1/auth/logout', { token, gateway: null });
      // The status interval of this server is an hour: the event itself must trigger the check.
      g.deps.logs.info(GW_A, 'test', 'after the logout');
      expect(await ws.closed).toEqual({ code: 4401, reason: 'AUTH_INVALID_TOKEN' });
      expect(ws.messages.some((m) => m.message === 'after the logout')).toBe(false);
    });

    it('should close with 4401 for a token revoked by logout', async () => {
      await g.deps.users.create({
        username: 'gone',
        password: 'password-123',
        role: 'viewer',
        gateways: ['*'],
      });
      const token = await g.login('gone', 'password-123');
      await g.request('POST', '/api/v1/auth/logout', { token, gateway: null });
      const ws = connect();
      await ws.opened;
      ws.send({ type: 'auth', token, gateway_id: GW_A });
      expect((await ws.closed).code).toBe(4401);
    });

    it('should close with 4403 for a gateway the token may not act on', async () => {
      const onlyB = await g.tokenFor('admin', [GW_B]);
      const ws = connect();
      await ws.opened;
      ws.send({ type: 'auth', token: onlyB, gateway_id: GW_A });
      expect(await ws.closed).toEqual({ code: 4403, reason: 'GATEWAY_FORBIDDEN' });
      expect(ws.messages).toEqual([]);
    });

    it('should close with 4404 for an unknown gateway, or none at all', async () => {
      const unknown = connect();
      await unknown.opened;
      unknown.send({ type: 'auth', token: admin, gateway_id: 'GW-NOPE' });
      expect((await unknown.closed).code).toBe(4404);

      const none = connect();
      await none.opened;
      none.send({ type: 'auth', token: admin });
      expect((await none.closed).code).toBe(4404);
    });

    it.each([['not json'], [JSON.stringify({ type: 'hello' })], [JSON.stringify({ type: 'auth' })]])(
      'should close with 4400 for a malformed first message %s',
      async (first) => {
        const ws = connect();
        await ws.opened;
        ws.send(first);
        expect((await ws.closed).code).toBe(4400);
      },
    );

    it('should refuse an upgrade on an unknown path', async () => {
      const ws = new WebSocket(`${g.url.replace(/^http/, 'ws')}/api/v1/ota/nope`);
      const err = await new Promise<Error>((resolve) => ws.once('error', resolve));
      expect(err.message).toMatch(/404/);
    });
  });
});

describe('foundation: OTA WebSocket timers', () => {
  // Shortened timers: the logic under test is "a timer fires", not how long 5 s is. The auth
  // timeout gets its own server so a slow machine cannot make the other tests miss it.
  let authTimeout: TestGantry;
  let g: TestGantry;
  let admin: string;
  beforeAll(async () => {
    authTimeout = await startTestGantry({ ws: { authTimeoutMs: 50 } });
    g = await startTestGantry({ ws: { authTimeoutMs: 10_000, statusIntervalMs: 20 } });
    admin = await g.login();
  });
  afterAll(async () => {
    await authTimeout.stop();
    await g.stop();
  });

  const wsUrl = (server: TestGantry) => `${server.url.replace(/^http/, 'ws')}/api/v1/ota/ws`;
  const url = () => wsUrl(g);

  it('should close with 4408 when no auth message comes in time', async () => {
    const ws = new OtaWsClient(wsUrl(authTimeout));
    await ws.opened;
    expect(await ws.closed).toEqual({ code: 4408, reason: 'auth message not received in time' });
    expect(ws.messages).toEqual([]);
  });

  it('should close an open channel with 4401 once its session is revoked by logout (regression)', async () => {
    await g.deps.users.create({
      username: 'leaver',
      password: 'password-123',
      role: 'viewer',
      gateways: ['*'],
    });
    const token = await g.login('leaver', 'password-123');
    const ws = new OtaWsClient(url());
    try {
      await ws.auth(token, 'GW-3920A9');
      expect((await g.request('POST', '/api/v1/auth/logout', { token, gateway: null })).status).toBe(200);
      expect(await ws.closed).toEqual({ code: 4401, reason: 'AUTH_INVALID_TOKEN' });
    } finally {
      ws.close();
    }
  });

  it('should send system_status again at every interval while connected', async () => {
    const ws = new OtaWsClient(url());
    try {
      await ws.auth(admin, 'GW-3920A9');
      await ws.waitFor(() => ws.messages.filter((m) => m.type === 'system_status').length >= 3);
      // Authenticated in time: the auth timer must not close it afterwards.
      expect(ws.readyState).toBe(WebSocket.OPEN);
    } finally {
      ws.close();
    }
  });
});
