import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { safetyPins } from '../../drizzle/schema.js';
import { REDACTED, redactSecrets } from '../../services/debug-bundle.js';
import { startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { untar } from '../helpers/tar.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies off the wire */

const GW_A = 'GW-3920A9';
const GW_B = 'GW-7781B2';
const TWO_GATEWAYS = { GANTRY_GATEWAYS: `${GW_A},${GW_B}` };
const ALL_ENTRIES = [
  'manifest.json',
  'logs/logs.jsonl',
  'config/settings.json',
  'config/slots.json',
  'config/boot-env.json',
  'config/gateway.json',
  'config/gantry.json',
  'metrics/metrics.json',
  'jobs/jobs.jsonl',
  'jobs/transitions.jsonl',
];

async function until<T>(probe: () => Promise<T | undefined>, what: string): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The raw download (binary: not through the JSON helper). */
async function download(g: TestGantry, url: string, token: string, gateway: string) {
  const res = await fetch(g.url + url, {
    headers: { authorization: `Bearer ${token}`, 'x-gateway-id': gateway },
  });
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) };
}

async function downloadWhenReady(g: TestGantry, url: string, token: string, gateway: string) {
  return until(async () => {
    const res = await download(g, url, token, gateway);
    if (res.status === 200) return res;
    expect(res.status).toBe(404);
    expect(JSON.parse(res.bytes.toString()).error.message).toMatch(/is not ready yet \(creating\)/);
    return undefined;
  }, `${url} to be ready`);
}

const jsonLines = (buf: Buffer) =>
  buf
    .toString('utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));

describe('debug bundles over HTTP', () => {
  const running: TestGantry[] = [];
  afterEach(async () => {
    for (const g of running.splice(0)) await g.stop();
  });

  async function start(opts: { dataDir?: string } = {}) {
    const g = await startTestGantry({ ...opts, env: TWO_GATEWAYS });
    running.push(g);
    return g;
  }

  it('should build a tar.gz with logs, configuration, metrics and job histories, secrets redacted', async () => {
    const g = await start();
    const operator = await g.tokenFor('operator');
    const jwtSecret = g.jwtSecret();
    g.deps.logs.info(GW_A, 'ota', 'marker only on A');
    g.deps.logs.info(GW_B, 'ota', 'marker only on B');
    // A careless log line carrying the signing secret: scrubbed by value, wherever it is.
    g.deps.logs.warn(GW_A, 'auth', `token secret was ${jwtSecret} (oops)`);
    // A job whose request held a PIN: redacted by field name.
    g.deps.jobs.create({
      id: 'FACTORY-TEST1',
      gatewayId: GW_A,
      kind: 'factory',
      state: 'complete',
      request: { pin: '98765432', confirm: true, reason: 'decommissioning' },
    });

    const res = await g.request('POST', '/api/v1/ota/debug-bundle', {
      token: operator,
      gateway: GW_A,
      body: { include_logs: true, include_configs: true, include_metrics: true },
    });
    expect(res.status).toBe(200);
    expect(res.body.message).toBe('Debug bundle creation started');
    const id: string = res.body.data.bundle_id;
    expect(id).toMatch(/^debug-\d{8}-001$/);
    expect(res.body.data).toEqual({
      bundle_id: id,
      status: 'creating',
      estimated_size: expect.stringMatching(/^\d+(\.\d)? (B|KB|MB|GB)$/),
      download_url: `/api/v1/ota/debug/download/${id}.tar.gz`,
    });

    const file = await downloadWhenReady(g, res.body.data.download_url, operator, GW_A);
    expect(file.headers.get('content-type')).toBe('application/gzip');
    expect(file.headers.get('content-disposition')).toBe(`attachment; filename="${id}.tar.gz"`);
    expect(Number(file.headers.get('content-length'))).toBe(file.bytes.length);
    const tarBytes = zlib.gunzipSync(file.bytes);
    const entries = await untar(tarBytes);
    expect([...entries.keys()]).toEqual(ALL_ENTRIES.map((e) => `${id}/${e}`));
    const entry = (name: string) => entries.get(`${id}/${name}`)!;

    const manifest = JSON.parse(entry('manifest.json').toString());
    expect(manifest).toMatchObject({
      bundle_id: id,
      gateway_id: GW_A,
      includes: { logs: true, configs: true, metrics: true, jobs: true },
    });
    const logs = jsonLines(entry('logs/logs.jsonl'));
    expect(logs.map((l) => l.message)).toContain('marker only on A');
    expect(logs.map((l) => l.message)).not.toContain('marker only on B');
    expect(logs.map((l) => l.message)).toContain(`token secret was ${REDACTED} (oops)`);
    expect(JSON.parse(entry('config/settings.json').toString())).toEqual(g.deps.settings.get(GW_A));
    expect(JSON.parse(entry('config/slots.json').toString())).toMatchObject({ A: { version: 'v5.0.4' } });
    expect(JSON.parse(entry('config/boot-env.json').toString())).toMatchObject({ bootSlot: 'A' });
    expect(JSON.parse(entry('config/gateway.json').toString())).toMatchObject({ id: GW_A, booted_slot: 'A' });
    const gantry = JSON.parse(entry('config/gantry.json').toString());
    expect(gantry.configured_gateways.map((c: any) => c.id)).toEqual([GW_A, GW_B]);
    expect(gantry.config.adminPassword).toBe(REDACTED);
    const metrics = JSON.parse(entry('metrics/metrics.json').toString());
    expect(metrics.resources).toHaveProperty('cpuUsage');
    expect(metrics.storage).toHaveProperty('freeBytes');
    expect(metrics.uptime.gateway_seconds).toEqual(expect.any(Number));
    expect(metrics.process.memory.rss).toBeGreaterThan(0);
    const jobs = jsonLines(entry('jobs/jobs.jsonl'));
    expect(jobs.find((j) => j.id === 'FACTORY-TEST1').request).toEqual({
      pin: REDACTED,
      confirm: true,
      reason: 'decommissioning',
    });
    expect(jobs.find((j) => j.id === id)).toMatchObject({ kind: 'debug-bundle', state: 'creating' });
    expect(jobs.every((j) => j.gatewayId === GW_A)).toBe(true);
    const transitions = jsonLines(entry('jobs/transitions.jsonl'));
    expect(transitions).toContainEqual(expect.objectContaining({ jobId: 'FACTORY-TEST1', event: 'create' }));

    // No secret anywhere in the bytes.
    const text = tarBytes.toString('latin1');
    const adminHash = g.deps.users.find('admin')!.passwordHash;
    const pinHashes = g.deps.db
      .select()
      .from(safetyPins)
      .all()
      .map((r) => r.pinHash);
    expect(pinHashes.length).toBeGreaterThan(0);
    for (const secret of [adminHash, jwtSecret, ...pinHashes, '98765432', 'admin-test-password']) {
      expect(text.includes(secret), `bundle contains ${secret.slice(0, 12)}…`).toBe(false);
    }
    expect(fs.readdirSync(path.join(g.dataDir, 'gateways', GW_A, 'debug'))).toEqual([`${id}.tar.gz`]);
  });

  it('should include only what the flags ask for, plus the job histories', async () => {
    const g = await start();
    const operator = await g.tokenFor('operator');
    const res = await g.request('POST', '/api/v1/ota/debug-bundle', {
      token: operator,
      body: { include_logs: false, include_configs: false, include_metrics: false },
    });
    expect(res.status).toBe(200);
    const id = res.body.data.bundle_id;
    const file = await downloadWhenReady(g, res.body.data.download_url, operator, GW_A);
    const entries = await untar(zlib.gunzipSync(file.bytes));
    expect([...entries.keys()]).toEqual([
      `${id}/manifest.json`,
      `${id}/jobs/jobs.jsonl`,
      `${id}/jobs/transitions.jsonl`,
    ]);
    expect(JSON.parse(entries.get(`${id}/manifest.json`)!.toString()).includes).toEqual({
      logs: false,
      configs: false,
      metrics: false,
      jobs: true,
    });

    // Defaults: every flag true; the next bundle of the day gets the next number.
    const defaults = await g.request('POST', '/api/v1/ota/debug-bundle', { token: operator, body: {} });
    expect(defaults.body.data.bundle_id).toBe(id.replace(/-001$/, '-002'));
    const all = await downloadWhenReady(g, defaults.body.data.download_url, operator, GW_A);
    expect((await untar(zlib.gunzipSync(all.bytes))).size).toBe(ALL_ENTRIES.length);
  });

  it("should answer 404 for an unknown bundle and for another gateway's", async () => {
    const g = await start();
    const operator = await g.tokenFor('operator');
    const onB = await g.request('POST', '/api/v1/ota/debug-bundle', {
      token: operator,
      gateway: GW_B,
      body: {},
    });
    expect(onB.status).toBe(200);
    const url = onB.body.data.download_url;
    expect((await downloadWhenReady(g, url, operator, GW_B)).status).toBe(200);

    const fromA = await g.request('GET', url, { token: operator, gateway: GW_A });
    expect(fromA.status).toBe(404);
    expect(fromA.body).toMatchObject({ success: false, error: { code: 'NOT_FOUND' } });
    const unknown = await g.request('GET', '/api/v1/ota/debug/download/debug-20990101-001.tar.gz', {
      token: operator,
      gateway: GW_A,
    });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toEqual({
      code: 'NOT_FOUND',
      message: 'Debug bundle debug-20990101-001 not found',
    });
    const noSuffix = await g.request('GET', url.replace(/\.tar\.gz$/, ''), {
      token: operator,
      gateway: GW_B,
    });
    expect(noSuffix.status).toBe(404);

    // Authenticated and scoped like every route.
    expect((await g.request('GET', url, { gateway: GW_B })).status).toBe(401);
    const noGateway = await g.request('GET', url, { token: operator, gateway: null });
    expect(noGateway.status).toBe(400);
    expect(noGateway.body.error.code).toBe('GATEWAY_REQUIRED');
    const onlyA = await g.tokenFor('operator', [GW_A]);
    expect((await g.request('GET', url, { token: onlyA, gateway: GW_B })).status).toBe(403);
    const downloads = g.deps.audit.recent(50).filter((a) => a.action === 'maintenance.debugBundleDownload');
    expect(downloads.length).toBeGreaterThan(0);
    expect(downloads.every((a) => a.gatewayId === GW_B && a.outcome === 'success')).toBe(true);
  });

  it('should let only operators create and download bundles, and refuse bad input', async () => {
    const g = await start();
    const operator = await g.tokenFor('operator');
    const viewer = await g.tokenFor('viewer');
    const refused = await g.request('POST', '/api/v1/ota/debug-bundle', { token: viewer, body: {} });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('FORBIDDEN');
    const made = await g.request('POST', '/api/v1/ota/debug-bundle', { token: operator, body: {} });
    await downloadWhenReady(g, made.body.data.download_url, operator, GW_A);
    const viewerDownload = await g.request('GET', made.body.data.download_url, { token: viewer });
    expect(viewerDownload.status).toBe(403);

    for (const [body, field] of [
      [{ include_logs: 'yes' }, 'include_logs'],
      [{ include_metrics: 1 }, 'include_metrics'],
      [{ include_everything: true }, 'include_everything'],
    ] as const) {
      const res = await g.request('POST', '/api/v1/ota/debug-bundle', { token: operator, body });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('VALIDATION_ERROR');
      expect(res.body.error.details.fields[0].field).toBe(field);
    }
  });

  it('should mark a bundle interrupted by a restart as failed and remove its pieces', async () => {
    const dataDir = tempDataDir();
    const first = await start({ dataDir });
    const operator = await first.tokenFor('operator');
    // What a power cut mid-build leaves: the job row still creating, a staging dir and a .part file.
    first.deps.jobs.create({
      id: 'debug-20250315-007',
      gatewayId: GW_A,
      kind: 'debug-bundle',
      state: 'creating',
      request: {},
    });
    const dir = path.join(dataDir, 'gateways', GW_A, 'debug');
    fs.mkdirSync(path.join(dir, '.staging-debug-20250315-007'), { recursive: true });
    fs.writeFileSync(path.join(dir, '.debug-20250315-007.tar.gz.part'), 'partial');
    await first.stop();
    running.splice(running.indexOf(first), 1);

    const second = await start({ dataDir });
    expect(fs.readdirSync(dir)).toEqual([]);
    expect(second.deps.jobs.get('debug-20250315-007')).toMatchObject({
      state: 'error',
      errorCode: 'INTERNAL_ERROR',
    });
    const res = await second.request('GET', '/api/v1/ota/debug/download/debug-20250315-007.tar.gz', {
      token: operator,
    });
    expect(res.status).toBe(404);
    expect(res.body.error.message).toMatch(/failed: Debug bundle interrupted: Gantry stopped/);
  });

  it('should redact secret fields and known secret values at any depth', () => {
    const secrets = ['s3cr3t-value-long'];
    expect(
      redactSecrets(
        {
          password: 'x',
          passwordHash: 'scrypt$abc',
          nested: {
            jwtSecret: 'y',
            safety_pin_hash: 'z',
            pin: '1234',
            api_key: 'k',
            note: 'has s3cr3t-value-long inside',
          },
          list: [{ token: 't' }, 's3cr3t-value-long'],
          sha256: 'not-a-secret',
          version: 5,
          empty: null,
        },
        secrets,
      ),
    ).toEqual({
      password: REDACTED,
      passwordHash: REDACTED,
      nested: {
        jwtSecret: REDACTED,
        safety_pin_hash: REDACTED,
        pin: REDACTED,
        api_key: REDACTED,
        note: `has ${REDACTED} inside`,
      },
      list: [{ token: REDACTED }, REDACTED],
      sha256: 'not-a-secret',
      version: 5,
      empty: null,
    });
  });
});
