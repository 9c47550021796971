import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGetLane } from '../../rest-compat/fast-get.js';
import { restRouteTable } from '../../rest-compat/table.js';
import { GATEWAY, startTestGantry, type TestGantry } from '../helpers/gantry.js';

/**
 * The GET lane (rest-compat/fast-get.ts) answers plain JSON GETs without Express, and /status no
 * longer re-reads what only this process writes (device records, component records, settings,
 * user rows). Both must be invisible to a client: the lane answers exactly what Express answers,
 * and no cached value outlives the change that replaced it.
 */

/** A spelling of the same route that the lane leaves to Express (it takes exact paths only). */
const viaExpress = (path: string) => `${path}/`;

/** Every route the lane takes: JSON GETs of the table without path parameters. */
const LANE_PATHS = restRouteTable()
  .filter((r) => r.rest.method === 'get' && r.rest.reply.kind !== 'file' && r.pathParams.length === 0)
  .map((r) => r.rest.path);

/** A GET with a body, which fetch() refuses to send. */
function rawGet(
  base: string,
  path: string,
  headers: Record<string, string>,
  body: string,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const length = { 'content-length': String(Buffer.byteLength(body)) };
    const req = http.request(
      `${base}${path}`,
      { method: 'GET', headers: { ...headers, ...length } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const SAME_HEADERS = ['content-type', 'x-content-type-options', 'referrer-policy'];

describe('GET lane: the same answers as Express', () => {
  let g: TestGantry;
  let token: string;
  // A clock that stands still: /status's uptime is the same in both answers.
  const T0 = Date.parse('2026-12-05T06:00:00Z');
  beforeAll(async () => {
    g = await startTestGantry({ clock: () => T0 });
    token = await g.login();
  });
  afterAll(() => g.stop());

  it('should take /status, /progress, /monitor and the other JSON GETs', () => {
    expect(LANE_PATHS).toEqual(
      expect.arrayContaining([
        '/api/v1/ota/status',
        '/api/v1/ota/progress',
        '/api/v1/ota/monitor',
        '/api/v1/ota/safety',
      ]),
    );
  });

  it('should answer GET /status byte for byte as the Express route does, ETag included', async () => {
    const lane = await g.request('GET', '/api/v1/ota/status', { token });
    const express = await g.request('GET', viaExpress('/api/v1/ota/status'), { token });
    expect(lane.status).toBe(200);
    expect(express.status).toBe(200);
    expect(lane.body).toEqual(express.body);
    expect(lane.body).toMatchObject({ success: true, message: 'Gateway status retrieved successfully' });
    for (const name of [...SAME_HEADERS, 'etag', 'content-length']) {
      expect(lane.headers.get(name), name).toBe(express.headers.get(name));
    }
    expect(lane.headers.get('etag')).toMatch(/^W\/"[0-9a-f]+-/);
  });

  it('should leave a conditional GET to Express, which answers 304 for the ETag the lane sent', async () => {
    const first = await g.request('GET', '/api/v1/ota/status', { token });
    const again = await g.request('GET', '/api/v1/ota/status', {
      token,
      // fetch() would add `Cache-Control: no-cache` to a conditional request, which forbids a 304.
      headers: { 'if-none-match': first.headers.get('etag')!, 'cache-control': 'max-age=0' },
    });
    expect(again.status).toBe(304);
  });

  it('should answer every lane route with the status, headers and body shape of the Express route', async () => {
    for (const path of LANE_PATHS) {
      const lane = await g.request('GET', path, { token });
      const express = await g.request('GET', viaExpress(path), { token });
      expect(lane.status, path).toBe(express.status);
      for (const name of SAME_HEADERS)
        expect(lane.headers.get(name), `${path} ${name}`).toBe(express.headers.get(name));
      expect(Object.keys(lane.body as object).sort(), path).toEqual(
        Object.keys(express.body as object).sort(),
      );
    }
  });

  it.each([
    ['no token', { token: undefined }, 401, 'AUTH_REQUIRED'],
    ['a forged token', { token: 'forged' }, 401, 'AUTH_INVALID_TOKEN'],
    ['no X-Gateway-ID', { gateway: null }, 400, 'GATEWAY_REQUIRED'],
    ['an unknown X-Gateway-ID', { gateway: 'GW-NOPE' }, 404, 'GATEWAY_NOT_FOUND'],
  ] as const)(
    'should refuse a request with %s exactly as Express does',
    async (_what, override, status, code) => {
      const creds = { token, ...override };
      const lane = await g.request('GET', '/api/v1/ota/status', creds);
      const express = await g.request('GET', viaExpress('/api/v1/ota/status'), creds);
      expect(lane.status).toBe(status);
      expect(lane.body.error.code).toBe(code);
      expect(lane.body).toEqual(express.body);
      for (const name of [...SAME_HEADERS, 'etag'])
        expect(lane.headers.get(name), name).toBe(express.headers.get(name));
    },
  );

  it("should take a query string, parsed as Express's query parser does, and answer as Express does", async () => {
    const lane = createGetLane(g.deps, restRouteTable());
    const taken = (url: string) => {
      const res = { writeHead: () => res, end: () => undefined, headersSent: false };
      return lane(
        { method: 'GET', url, headers: {}, socket: { remoteAddress: '127.0.0.1' } } as never,
        res as never,
      );
    };
    expect(taken('/api/v1/ota/progress?job_id=OTA-JOB-1')).toBe(true);
    expect(taken('/api/v1/ota/logs?limit=1')).toBe(true);
    expect(taken('/api/v1/ota/logs/?limit=1')).toBe(false);

    for (const query of [
      '?limit=0',
      '?limit=1',
      '?limit=1&limit=2',
      '?level=warn&limit=2',
      '?',
      '?limit=%31',
    ]) {
      const viaLane = await g.request('GET', `/api/v1/ota/logs${query}`, { token });
      const express = await g.request('GET', `${viaExpress('/api/v1/ota/logs')}${query}`, { token });
      expect(viaLane.status, query).toBe(express.status);
      for (const name of SAME_HEADERS)
        expect(viaLane.headers.get(name), `${query} ${name}`).toBe(express.headers.get(name));
      if (viaLane.status === 200)
        expect(viaLane.body.data.logs.length, query).toBe(express.body.data.logs.length);
      else expect(viaLane.body, query).toEqual(express.body);
    }
    // /logs validates its query: a bad one is refused, a good one honoured.
    expect((await g.request('GET', '/api/v1/ota/logs?limit=0', { token })).status).toBe(400);
    const one = await g.request('GET', '/api/v1/ota/logs?limit=1', { token });
    expect(one.body.data.logs).toHaveLength(1);
    // The operator's progress poll: an unknown job, refused alike.
    const unknown = await g.request('GET', '/api/v1/ota/progress?job_id=OTA-JOB-NOPE', { token });
    const unknownViaExpress = await g.request(
      'GET',
      `${viaExpress('/api/v1/ota/progress')}?job_id=OTA-JOB-NOPE`,
      {
        token,
      },
    );
    expect(unknown.status).toBe(unknownViaExpress.status);
    expect(unknown.body).toEqual(unknownViaExpress.body);
  });

  it('should leave a request with a body to Express', async () => {
    // A malformed JSON body on a GET (fetch() sends none): Express's body parser refuses it.
    const body = await rawGet(
      g.url,
      '/api/v1/ota/status',
      {
        authorization: `Bearer ${token}`,
        'x-gateway-id': GATEWAY,
        'content-type': 'application/json',
      },
      '{nope',
    );
    expect(body.status).toBe(400);
    expect(JSON.parse(body.text).error.code).toBe('VALIDATION_ERROR');
  });
});

describe('GET /status: nothing cached outlives its change', () => {
  let g: TestGantry;
  let token: string;
  beforeAll(async () => {
    g = await startTestGantry();
    token = await g.login();
  });
  afterAll(() => g.stop());

  const status = async (t = token, gateway?: string) => {
    const res = await g.request('GET', '/api/v1/ota/status', { token: t, gateway });
    return res;
  };

  it('should show changed settings at once', async () => {
    const before = await status();
    expect(before.body.data.partitions).toMatchObject({ auto_rollback: true, rollback_retries: 3 });
    const res = await g.request('POST', '/api/v1/ota/settings', {
      token,
      body: { auto_rollback: false, rollback_retries: 5 },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const after = await status();
    expect(after.body.data.partitions).toMatchObject({ auto_rollback: false, rollback_retries: 5 });
  });

  it('should show a rollback (next boot) and the reboot into the other slot at once', async () => {
    const before = await status();
    expect(before.body.data.partitions.active).toMatchObject({ id: 'A', booted: true, next_boot: true });
    expect(before.body.data.partitions.inactive).toMatchObject({ id: 'B', next_boot: false });
    const rolled = await g.request('POST', '/api/v1/ota/recovery/rollback', {
      token,
      body: { action: 'rollback_to_b' },
    });
    expect(rolled.status, JSON.stringify(rolled.body)).toBe(200);
    const staged = await status();
    expect(staged.body.data.partitions.active).toMatchObject({ id: 'A', next_boot: false });
    expect(staged.body.data.partitions.inactive).toMatchObject({ id: 'B', next_boot: true });

    await g.deps.gateways.get(GATEWAY)!.device.reboot();
    const booted = await status();
    expect(booted.body.data.partitions.active).toMatchObject({ id: 'B', version: 'v5.0.3', booted: true });
    expect(booted.body.data.gateway.os_version).toBe('v5.0.3');
    expect(booted.body.data.components[0]).toMatchObject({ name: 'rootfs', version: 'v5.0.3', slot: 'B' });
  });

  it('should refuse a token from its logout on, though it was just used', async () => {
    await g.deps.users.create({
      username: 'poller',
      password: 'password-123',
      role: 'viewer',
      gateways: ['*'],
    });
    const t = await g.login('poller', 'password-123');
    expect((await status(t)).status).toBe(200);
    const out = await g.request('POST', '/api/v1/auth/logout', { token: t, gateway: null });
    expect(out.status).toBe(200);
    const after = await status(t);
    expect(after.status).toBe(401);
    expect(after.body.error.code).toBe('AUTH_INVALID_TOKEN');
    // A new login of the same user counts again (its row was read afresh).
    expect((await status(await g.login('poller', 'password-123'))).status).toBe(200);
  });

  it('should refuse a token once its exp has passed, though it was accepted before', async () => {
    const t = g.signToken({}, { expiresInSeconds: 1 });
    expect((await status(t)).status).toBe(200);
    const exp = JSON.parse(Buffer.from(t.split('.')[1]!, 'base64url').toString()).exp as number;
    await new Promise((r) => setTimeout(r, Math.max(0, exp * 1000 - Date.now()) + 50));
    const after = await status(t);
    expect(after.status).toBe(401);
    expect(after.body.error.code).toBe('AUTH_TOKEN_EXPIRED');
  });

  it('should check X-Gateway-ID on every request of a token it just accepted', async () => {
    expect((await status()).status).toBe(200);
    const unknown = await status(token, 'GW-NOPE');
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('GATEWAY_NOT_FOUND');
    const limited = await g.tokenFor('viewer', ['GW-ELSEWHERE']);
    const forbidden = await status(limited);
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.error.code).toBe('GATEWAY_FORBIDDEN');
  });
});
