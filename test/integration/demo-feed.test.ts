import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configurationZip } from '../fixtures/zip/zips.js';
import { randomImage, startTestFeed, type TestFeed } from '../helpers/feed.js';
import { GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Gantry issue 11, point 1: the first start on the embedded default (simulated gateway, no feed
 * configured) can update at once from a local demo feed, marked as such; with no feed at all,
 * check-updates answers a clear refusal instead of a 502.
 */

const FAST_POLICY = { retryDelayMs: 10, checkpointMs: 0, checkpointBytes: 256 * 1024 };
const DEMO_LABEL = /^demo feed \(local, http:\/\/127\.0\.0\.1:\d+\)$/;
/** What `npm start` runs with: the test helper turns the demo feed off for every other test. */
const EMBEDDED_DEFAULT = { GANTRY_DEMO_FEED: 'auto' };

type Request = TestGantry['request'];

async function runToEnd(request: Request, token: string, jobId: string, status: string) {
  return waitFor(
    () => request('GET', `/api/v1/ota/progress?job_id=${jobId}`, { token }),
    (r) => r.body.data?.status === status || r.body.data?.status === 'error',
    `job ${jobId} ${status}`,
  );
}

function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

describe('demo feed on the embedded default', () => {
  const dataDir = tempDataDir();
  const demoDir = path.join(dataDir, 'demo-feed');
  let g: TestGantry;
  let token: string;

  beforeAll(async () => {
    g = await startTestGantry({ dataDir, env: EMBEDDED_DEFAULT, transferPolicy: FAST_POLICY });
    token = await g.login();
  });
  afterAll(async () => {
    await g.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  const updateId = async (version: string): Promise<string> => {
    const list = await g.request('GET', '/api/v1/ota/updates', { token });
    const found = (list.body.data.updates as Array<{ id: string; version: string }>).find(
      (u) => u.version === version,
    );
    if (!found) throw new Error(`${version} not listed: ${JSON.stringify(list.body.data)}`);
    return found.id;
  };

  it('should come up with the demo feed, marked as a demo in /updates, before any check', async () => {
    expect(g.deps.demoFeed?.generated).toBe(true);
    const list = await g.request('GET', '/api/v1/ota/updates', { token });
    expect(list.status).toBe(200);
    expect(list.body.data).toMatchObject({ updates: [], total_available: 0, demo_feed: true });
    expect(list.body.data.server).toMatch(DEMO_LABEL);
    expect(list.body.data.server).toBe(g.deps.demoFeed!.label);
  });

  it('should list the signed demo releases on check-updates, with the server marked as a demo', async () => {
    const check = await g.request('POST', '/api/v1/ota/check-updates', {
      token,
      body: { force: true, background: false },
    });
    expect(check.status).toBe(200);
    expect(check.body.data).toMatchObject({ status: 'completed', total_available: 2 });
    expect(check.body.data.server).toMatch(DEMO_LABEL);
    const list = await g.request('GET', '/api/v1/ota/updates', { token });
    expect(list.body.data.updates).toEqual([
      expect.objectContaining({
        version: 'v5.0.5',
        type: 'security',
        signature: 'verified',
        compatible: true,
      }),
      expect.objectContaining({
        version: 'v5.1.0',
        type: 'feature',
        signature: 'verified',
        compatible: true,
      }),
    ]);
    expect(list.body.data.updates[0].description).toMatch(/^Demo release/);
  });

  it('should download, install, reboot into and commit a demo release', async () => {
    const start = await g.request('POST', '/api/v1/ota/download', {
      token,
      body: { update_id: await updateId('v5.0.5') },
    });
    expect(start.status).toBe(200);
    expect(start.body.data.target_partition).toBe('B');
    const jobId: string = start.body.data.job_id;
    expect((await runToEnd(g.request, token, jobId, 'downloaded')).body.data.status).toBe('downloaded');
    const install = await g.request('POST', '/api/v1/ota/install', { token, body: { job_id: jobId } });
    expect(install.status).toBe(200);
    expect((await runToEnd(g.request, token, jobId, 'complete')).body.data.status).toBe('complete');
    const status = await waitFor(
      () => g.request('GET', '/api/v1/ota/status', { token }),
      (r) => r.body.data.partitions.active.status === 'healthy',
      'slot B committed',
    );
    expect(status.body.data.partitions.active).toMatchObject({ id: 'B', version: 'v5.0.5' });
    expect(status.body.data.gateway.os_version).toBe('v5.0.5');
  });

  it('should roll back a demo release whose boots the simulator control makes fail', async () => {
    const retries: number = (await g.request('GET', '/api/v1/ota/status', { token })).body.data.partitions
      .rollback_retries;
    const fail = await g.request('POST', '/api/v1/dev/simulator/boot-failures', {
      token,
      body: { slot: 'A', count: retries },
    });
    expect(fail.status).toBe(200);
    const start = await g.request('POST', '/api/v1/ota/download', {
      token,
      body: { update_id: await updateId('v5.1.0') },
    });
    expect(start.body.data.target_partition).toBe('A');
    const jobId: string = start.body.data.job_id;
    expect((await runToEnd(g.request, token, jobId, 'downloaded')).body.data.status).toBe('downloaded');
    expect((await g.request('POST', '/api/v1/ota/install', { token, body: { job_id: jobId } })).status).toBe(
      200,
    );
    const end = await runToEnd(g.request, token, jobId, 'complete');
    expect(end.body.data.status).toBe('error');
    expect(end.body.data.error.code).toBe('OTA_INSTALL_FAILED');
    const status = await g.request('GET', '/api/v1/ota/status', { token });
    expect(status.body.data.partitions.active).toMatchObject({
      id: 'B',
      version: 'v5.0.5',
      status: 'healthy',
    });
    expect(status.body.data.partitions.inactive).toMatchObject({ id: 'A', status: 'invalid' });
  });

  it('should reuse the generated feed after a restart: same keys and bundles, checks still verify', async () => {
    const files = ['keys/vendor.pub', 'keys/tuf.key', 'repo/root.json', 'repo/targets/gantry-v5.1.0.bundle'];
    const before = files.map((f) => sha256(path.join(demoDir, f)));
    await g.stop();
    g = await startTestGantry({ dataDir, env: EMBEDDED_DEFAULT, transferPolicy: FAST_POLICY });
    token = await g.login();
    expect(g.deps.demoFeed?.generated).toBe(false);
    expect(files.map((f) => sha256(path.join(demoDir, f)))).toEqual(before);
    const check = await g.request('POST', '/api/v1/ota/check-updates', { token, body: { force: true } });
    expect(check.status).toBe(200);
    expect(check.body.data).toMatchObject({ server: g.deps.demoFeed!.label, total_available: 2 });
    const list = await g.request('GET', '/api/v1/ota/updates', { token });
    expect(list.body.data.updates.map((u: { signature: string }) => u.signature)).toEqual([
      'verified',
      'verified',
    ]);
  });

  it('should stop using the demo feed once a configuration ZIP configures a feed, and say so', async () => {
    const { zip } = await configurationZip();
    const form = new FormData();
    form.append('ota_zip_file', new Blob([new Uint8Array(zip)]), 'site-config.zip');
    const res = await fetch(`${g.url}/ota-configure`, {
      method: 'POST',
      body: form,
      headers: { authorization: `Bearer ${token}`, 'x-gateway-id': GATEWAY },
    });
    expect(res.status).toBe(200);
    const { update_id: zipId } = (await res.json()) as { update_id: string };
    await g.deps.zipOps.settled(zipId);

    const list = await g.request('GET', '/api/v1/ota/updates', { token });
    expect(list.body.data).toMatchObject({
      server: 'https://updates.example.com',
      demo_feed: false,
      updates: [],
      total_available: 0,
    });
    const logs = await g.request('GET', '/api/v1/ota/logs?limit=50', { token });
    const messages: string[] = logs.body.data.logs.map((l: { message: string }) => l.message);
    expect(messages).toContain(
      'The demo feed is no longer used: updates now come from https://updates.example.com (the configuration ZIP)',
    );

    // The demo signing key was trusted only while the demo feed was in use.
    const form2 = new FormData();
    const bundle = fs.readFileSync(path.join(demoDir, 'repo', 'targets', 'gantry-v5.1.0.bundle'));
    form2.append('file', new Blob([new Uint8Array(bundle)]), 'gantry-v5.1.0.bundle');
    const verify = await fetch(`${g.url}/api/v1/ota/upload/verify`, {
      method: 'POST',
      body: form2,
      headers: { authorization: `Bearer ${token}`, 'x-gateway-id': GATEWAY },
    });
    expect(verify.status).toBe(422);
    expect(((await verify.json()) as { error: { code: string } }).error.code).toBe('OTA_SIGNATURE_FAILED');
  });
});

describe('a feed configured by environment', () => {
  let feed: TestFeed;
  let g: TestGantry;

  beforeAll(async () => {
    feed = await startTestFeed();
    await feed.publish({ version: 'v5.0.5' }, randomImage(64 * 1024));
    const dataDir = tempDataDir();
    feed.trustIn(dataDir);
    g = await startTestGantry({ dataDir, env: { ...EMBEDDED_DEFAULT, ...feed.env } });
  });
  afterAll(async () => {
    await g.stop();
    await feed.close();
    fs.rmSync(g.dataDir, { recursive: true, force: true });
  });

  it('should use that feed and never generate or serve the demo feed', async () => {
    expect(g.deps.demoFeed).toBeNull();
    expect(fs.existsSync(path.join(g.dataDir, 'demo-feed'))).toBe(false);
    const token = await g.login();
    const check = await g.request('POST', '/api/v1/ota/check-updates', { token, body: { force: true } });
    expect(check.body.data).toMatchObject({ server: feed.server.url, total_available: 1 });
    const list = await g.request('GET', '/api/v1/ota/updates', { token });
    expect(list.body.data).toMatchObject({ server: feed.server.url, demo_feed: false });
  });
});

describe('no feed at all', () => {
  let g: TestGantry;

  beforeAll(async () => {
    g = await startTestGantry({ env: { GANTRY_DEMO_FEED: 'off' } });
  });
  afterAll(async () => {
    await g.stop();
    fs.rmSync(g.dataDir, { recursive: true, force: true });
  });

  it('should refuse check-updates with 409 OTA_FEED_NOT_CONFIGURED saying how to configure one', async () => {
    const token = await g.login();
    const check = await g.request('POST', '/api/v1/ota/check-updates', { token, body: { force: true } });
    expect(check.status).toBe(409);
    expect(check.body.success).toBe(false);
    expect(check.body.error.code).toBe('OTA_FEED_NOT_CONFIGURED');
    expect(check.body.error.message).toMatch(/^No update feed is configured for gateway GW-3920A9: /);
    expect(check.body.error.message).toContain('GANTRY_FEED_URL and GANTRY_FEED_ROOT');
    expect(check.body.error.message).toContain('configuration ZIP');
    // Nothing changed: no check recorded, no feed shown.
    const monitor = await g.request('GET', '/api/v1/ota/monitor', { token });
    expect(monitor.body.data.last_update_check).toBeNull();
    const list = await g.request('GET', '/api/v1/ota/updates', { token });
    expect(list.body.data).toMatchObject({ server: null, demo_feed: false, updates: [] });
    expect(fs.existsSync(path.join(g.dataDir, 'demo-feed'))).toBe(false);
  });
});
