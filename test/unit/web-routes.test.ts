import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ensureWebBuilt } from '../../scripts/build-web.js';
import { startTestGantry, type TestGantry } from '../helpers/gantry.js';

/**
 * The page routes over real HTTP: who gets the page, which gateway it shows, the headers it is
 * sent with, the inspector's gate, and the WebSocket's cookie authentication for the page.
 */

const GW_A = 'GW-3920A9';
const GW_B = 'GW-7781B2';

function decodeAttr(value: string): string {
  return value
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&#96;/g, '`')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

function dataAttr(page: string, name: string): unknown {
  const m = page.match(new RegExp(`data-${name}=(['"])(.*?)\\1`));
  if (!m) throw new Error(`no data-${name}`);
  return JSON.parse(decodeAttr(m[2]!));
}

interface SessionView {
  username: string;
  role: string;
  gateway: string;
  gateways: string[];
}
const session = (page: string) => dataAttr(page, 'session') as SessionView;

describe('web pages: /ota-system-updates, /login, /dev/inspector', () => {
  let g: TestGantry;
  let admin: string;
  let onlyB: string;
  let operator: string;

  beforeAll(async () => {
    await ensureWebBuilt();
    g = await startTestGantry({ env: { GANTRY_GATEWAYS: `${GW_A}:Univa-GW-Pro,${GW_B}:Univa-GW-Pro` } });
    admin = await g.login();
    onlyB = await g.tokenFor('viewer', [GW_B]);
    operator = await g.tokenFor('operator');
  });
  afterAll(() => g.stop());

  const get = (path: string, opts: { token?: string; headers?: Record<string, string> } = {}) =>
    fetch(g.url + path, {
      redirect: 'manual',
      headers: { ...(opts.token ? { cookie: `session_token=${opts.token}` } : {}), ...opts.headers },
    });

  it('should redirect to /login without a valid session', async () => {
    for (const token of [undefined, 'not-a-token', g.signToken({}, { expiresInSeconds: -10 })]) {
      const res = await get('/ota-system-updates', { token });
      expect(res.status).toBe(302);
      expect(res.headers.get('location')).toBe('/login');
    }
  });

  it('should render the page with the data of /status, /updates, /settings and /safety, under a strict CSP', async () => {
    const res = await get('/ota-system-updates', { token: admin });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(res.headers.get('cache-control')).toBe('no-store');
    const page = await res.text();
    expect(page).toContain('<title>OTA &amp; System Updates - Univa Gateway</title>');
    const api = async (path: string) =>
      (await g.request('GET', `/api/v1/ota/${path}`, { token: admin, gateway: GW_A })).body.data;
    expect(dataAttr(page, 'system')).toEqual(await api('status'));
    expect(dataAttr(page, 'updates')).toEqual((await api('updates')).updates);
    expect(dataAttr(page, 'settings')).toEqual(await api('settings'));
    const safety = dataAttr(page, 'safety') as { constraints: object };
    expect(Object.keys(safety.constraints)).toEqual(Object.keys((await api('safety')).constraints));
    expect(session(page)).toMatchObject({ username: 'admin', role: 'admin', gateway: GW_A });
  });

  it('should take the gateway from X-Gateway-ID, refusing one the user may not see', async () => {
    const b = await get('/ota-system-updates', { token: admin, headers: { 'x-gateway-id': GW_B } });
    expect(session(await b.text()).gateway).toBe(GW_B);
    expect(
      (await get('/ota-system-updates', { token: admin, headers: { 'x-gateway-id': 'GW-NOPE' } })).status,
    ).toBe(404);
    const forbidden = await get('/ota-system-updates', { token: onlyB, headers: { 'x-gateway-id': GW_A } });
    expect(forbidden.status).toBe(403);
    // Without a header: the first gateway this user may access.
    const first = await get('/ota-system-updates', { token: onlyB });
    expect(session(await first.text())).toMatchObject({ gateway: GW_B, gateways: [GW_B] });
  });

  it('should remember the picked gateway in a cookie, only among those allowed', async () => {
    const pick = await get(`/ota-system-updates?gateway=${GW_B}`, { token: admin });
    expect(pick.status).toBe(303);
    expect(pick.headers.get('location')).toBe('/ota-system-updates');
    const cookie = pick.headers.get('set-cookie') ?? '';
    expect(cookie).toMatch(new RegExp(`^gateway_id=${GW_B};`));
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).toMatch(/SameSite=Strict/i);
    const page = await get('/ota-system-updates', {
      headers: { cookie: `session_token=${admin}; gateway_id=${GW_B}` },
    });
    expect(session(await page.text()).gateway).toBe(GW_B);

    const refused = await get(`/ota-system-updates?gateway=${GW_A}`, { token: onlyB });
    expect(refused.headers.get('set-cookie')).toBeNull();
    const stale = await get('/ota-system-updates', {
      headers: { cookie: `session_token=${onlyB}; gateway_id=${GW_A}` },
    });
    expect(session(await stale.text()).gateway).toBe(GW_B);
  });

  it('should serve the login page and the built assets', async () => {
    const login = await get('/login');
    expect(login.status).toBe(200);
    expect(login.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(await login.text()).toContain('id="login-form"');
    const js = await get('/assets/app.js');
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toMatch(/javascript/);
    expect((await get('/assets/app.css')).headers.get('content-type')).toMatch(/text\/css/);
    expect((await get('/assets/nope.js')).status).toBe(404);
  });

  it('should show the inspector and its state to admins only (404 for everyone else)', async () => {
    expect((await get('/dev/inspector')).status).toBe(404);
    expect((await get('/dev/inspector', { token: operator })).status).toBe(404);
    expect((await get('/dev/inspector/jobs/OTA-JOB-NOPE/transitions', { token: operator })).status).toBe(404);
    const page = await get('/dev/inspector', { token: admin });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    const body = await page.text();
    const machines = dataAttr(body, 'machines') as Array<{ id: string }>;
    expect(machines.map((m) => m.id)).toEqual([
      'updateJob',
      'partition',
      'safetyInterlock',
      'zipOp',
      'componentSequence',
    ]);
    const state = dataAttr(body, 'state') as { gateways: unknown[] };
    expect(state.gateways).toEqual([
      { id: GW_A, partition: 'stable', safety: 'normal' },
      { id: GW_B, partition: 'stable', safety: 'normal' },
    ]);
    expect((await get('/dev/inspector/jobs/OTA-JOB-NOPE/transitions', { token: admin })).status).toBe(404);
  });
});

describe('/api/v1/ota/ws with the session cookie ({"type":"auth","token":"cookie"})', () => {
  let g: TestGantry;
  let token: string;

  beforeAll(async () => {
    g = await startTestGantry();
    token = await g.login();
  });
  afterAll(() => g.stop());

  /** Connects, sends the cookie auth message, and resolves with the first message or the close. */
  function connect(
    headers: Record<string, string>,
  ): Promise<{ type?: string; code?: number; reason?: string }> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${g.url.replace('http', 'ws')}/api/v1/ota/ws`, { headers });
      ws.once('open', () => ws.send(JSON.stringify({ type: 'auth', token: 'cookie', gateway_id: GW_A })));
      ws.once('message', (raw) => {
        resolve(JSON.parse(String(raw)));
        ws.close();
      });
      ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }));
      ws.once('error', reject);
    });
  }

  it('should accept the cookie of a page of this origin', async () => {
    const first = await connect({ cookie: `session_token=${token}`, origin: g.url });
    expect(first.type).toBe('auth_ok');
  });

  it("should refuse another site's page (4403) and a missing or forged cookie (4401)", async () => {
    expect(await connect({ cookie: `session_token=${token}`, origin: 'http://evil.example' })).toMatchObject({
      code: 4403,
    });
    expect(await connect({ origin: g.url })).toMatchObject({ code: 4401 });
    expect(await connect({ cookie: 'session_token=forged', origin: g.url })).toMatchObject({ code: 4401 });
  });
});
