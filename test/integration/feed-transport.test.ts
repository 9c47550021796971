import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { configurationZip } from '../fixtures/zip/zips.js';
import { randomImage, startTestFeed, type TestFeed } from '../helpers/feed.js';
import { GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { freePort } from '../helpers/process.js';
import {
  describeWithServers,
  startFeedOrigin,
  startTinyproxy,
  TEST_CA_FILE,
  type Nginx,
  type Tinyproxy,
} from '../helpers/real-servers.js';
import { untar } from '../helpers/tar.js';
import { waitFor } from '../helpers/wait.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies off the wire */

/**
 * Gantry's feed transport end to end, through the REST API, against real servers: nginx as the
 * origin (redirects, Range, ETag) and tinyproxy as the forward proxy. What a gateway on a plant
 * network sees: check-updates and a download through a proxy, through redirects, through both;
 * a resume after the connection dropped; a file replaced on the origin midway; a proxy that
 * refuses the password, with the password never shown.
 */

const PROXY_USER = 'gantry';
const PROXY_PASSWORD = 'pr0xy-s3cret-pw';
const FAST_POLICY = { retryDelayMs: 500, checkpointMs: 0, checkpointBytes: 256 * 1024 };

describeWithServers('feed transport over real networks (REST)', () => {
  let feed: TestFeed;
  let nginx: Nginx;
  let authProxy: Tinyproxy;
  const images: Record<string, Buffer> = {};
  const bundles: Record<string, string> = {};
  const running: TestGantry[] = [];

  beforeAll(async () => {
    feed = await startTestFeed();
    images['v5.0.5'] = randomImage(3 * 1024 * 1024);
    bundles['v5.0.5'] = path.basename(await feed.publish({ version: 'v5.0.5' }, images['v5.0.5']));
    nginx = await startFeedOrigin(feed.dir);
    authProxy = await startTinyproxy({
      auth: { user: PROXY_USER, password: PROXY_PASSWORD },
      connectPorts: [nginx.ports.tls!],
    });
  });
  afterAll(async () => {
    for (const g of running) {
      await g.stop();
      fs.rmSync(g.dataDir, { recursive: true, force: true });
    }
    await Promise.all([nginx?.stop(), authProxy?.stop(), feed?.close()]);
  });

  async function gantry(env: Record<string, string>): Promise<{ g: TestGantry; token: string }> {
    const dataDir = tempDataDir();
    feed.trustIn(dataDir);
    const g = await startTestGantry({
      dataDir,
      env: { GANTRY_FEED_ROOT: path.join(feed.dir, 'root.json'), GANTRY_FEED_CA_FILE: TEST_CA_FILE, ...env },
      transferPolicy: FAST_POLICY,
    });
    running.push(g);
    return { g, token: await g.login() };
  }

  const check = (g: TestGantry, token: string) =>
    g.request('POST', '/api/v1/ota/check-updates', { token, body: { force: true, background: false } });

  async function startDownload(g: TestGantry, token: string, version: string): Promise<string> {
    const checked = await check(g, token);
    expect(checked.status, JSON.stringify(checked.body)).toBe(200);
    const list = await g.request('GET', '/api/v1/ota/updates', { token });
    const update = list.body.data.updates.find((u: any) => u.version === version);
    expect(update, JSON.stringify(list.body)).toBeDefined();
    const start = await g.request('POST', '/api/v1/ota/download', {
      token,
      body: { update_id: update.id, version, target_partition: 'B' },
    });
    expect(start.status, JSON.stringify(start.body)).toBe(200);
    return start.body.data.job_id as string;
  }

  const progress = (g: TestGantry, token: string, jobId: string) =>
    g.request('GET', `/api/v1/ota/progress?job_id=${jobId}`, { token });

  async function downloaded(g: TestGantry, token: string, jobId: string, version: string): Promise<void> {
    const done = await waitFor(
      () => progress(g, token, jobId),
      (r) => ['downloaded', 'error'].includes(r.body.data?.status),
      `job ${jobId} downloaded`,
      30_000,
    );
    expect(done.body.data.error).toBeNull();
    expect(done.body.data.status).toBe('downloaded');
    const slot = path.join(g.dataDir, 'gateways', GATEWAY, 'device', 'slot-B.img');
    expect(fs.readFileSync(slot).equals(images[version]!)).toBe(true);
  }

  const bundleRequests = (mark: number, version: string) =>
    nginx
      .accessLog()
      .slice(mark)
      .filter((e) => e.uri.endsWith(`/targets/${bundles[version]}`));

  for (const implementation of ['gantry', 'node'] as const) {
    it(`should check and download through a proxy with credentials and through redirects (${implementation} client)`, async () => {
      const creds = `http://${PROXY_USER}:${PROXY_PASSWORD}@127.0.0.1:${authProxy.port}`;
      // https through a CONNECT tunnel, the feed behind a 301.
      const viaTunnel = await gantry({
        GANTRY_FEED_HTTP_CLIENT: implementation,
        GANTRY_FEED_URL: `${nginx.url('tls')}/r301`,
        HTTPS_PROXY: creds,
      });
      let seen = authProxy.requests().length;
      await downloaded(
        viaTunnel.g,
        viaTunnel.token,
        await startDownload(viaTunnel.g, viaTunnel.token, 'v5.0.5'),
        'v5.0.5',
      );
      expect(authProxy.requests().slice(seen)).toContain(`CONNECT 127.0.0.1:${nginx.ports.tls} HTTP/1.1`);

      // Plain http forwarded by the proxy, the feed behind a chain of four redirects.
      const forwarded = await gantry({
        GANTRY_FEED_HTTP_CLIENT: implementation,
        GANTRY_FEED_URL: `${nginx.url('origin')}/chain`,
        http_proxy: creds,
      });
      seen = authProxy.requests().length;
      const mark = nginx.accessLog().length;
      await downloaded(
        forwarded.g,
        forwarded.token,
        await startDownload(forwarded.g, forwarded.token, 'v5.0.5'),
        'v5.0.5',
      );
      const log = nginx.accessLog().slice(mark);
      expect(log.map((e) => [e.uri, e.status])).toEqual(
        expect.arrayContaining([
          [`/chain/targets/${bundles['v5.0.5']}`, 301],
          [`/c4/targets/${bundles['v5.0.5']}`, 308],
          [`/feed/targets/${bundles['v5.0.5']}`, 200],
        ]),
      );
      expect(log.every((e) => /tinyproxy/.test(e.via))).toBe(true);
      expect(authProxy.requests().slice(seen)).toContain(
        `GET ${nginx.url('origin')}/feed/targets/${bundles['v5.0.5']} HTTP/1.1`,
      );

      // Redirects alone, no proxy.
      const direct = await gantry({
        GANTRY_FEED_HTTP_CLIENT: implementation,
        GANTRY_FEED_URL: `${nginx.url('origin')}/r302`,
      });
      await downloaded(
        direct.g,
        direct.token,
        await startDownload(direct.g, direct.token, 'v5.0.5'),
        'v5.0.5',
      );
    });
  }

  it('should carry a check and the download after it on one kept-alive connection', async () => {
    const { g, token } = await gantry({ GANTRY_FEED_URL: `${nginx.url('origin')}/feed` });
    const mark = nginx.accessLog().length;
    await downloaded(g, token, await startDownload(g, token, 'v5.0.5'), 'v5.0.5');
    const log = nginx.accessLog().slice(mark);
    expect(log.map((e) => e.uri)).toEqual([
      '/feed/2.root.json',
      '/feed/timestamp.json',
      '/feed/snapshot.json',
      '/feed/targets.json',
      `/feed/targets/${bundles['v5.0.5']}`,
    ]);
    expect(new Set(log.map((e) => e.connection)).size).toBe(1);
    expect(log.map((e) => e.connectionRequests)).toEqual([1, 2, 3, 4, 5]);
  });

  it('should resume after a dropped connection with Range and If-Range, on the ETag of the first answer', async () => {
    const { g, token } = await gantry({
      GANTRY_FEED_URL: `${nginx.url('origin')}/feed`,
      GANTRY_FEED_TARGETS_URL: `${nginx.url('origin')}/slow/targets`,
    });
    const mark = nginx.accessLog().length;
    const jobId = await startDownload(g, token, 'v5.0.5');
    await waitFor(
      () => progress(g, token, jobId),
      (r) => r.body.data.progress.percentage >= 25,
      'a quarter durable',
    );
    await nginx.kill(); // the connection drops midway
    await nginx.start();
    await downloaded(g, token, jobId, 'v5.0.5');

    const etag = `"${Math.floor(fs.statSync(path.join(feed.dir, 'targets', bundles['v5.0.5']!)).mtimeMs / 1000).toString(16)}-${fs.statSync(path.join(feed.dir, 'targets', bundles['v5.0.5']!)).size.toString(16)}"`;
    const resumed = bundleRequests(mark, 'v5.0.5'); // the dropped request died with nginx, unlogged
    const length = fs.statSync(path.join(feed.dir, 'targets', bundles['v5.0.5']!)).size;
    expect(resumed.length).toBe(2);
    // The bundle head again (to re-read the manifest), then the rest from the durable offset.
    expect(resumed[0]).toMatchObject({ status: 206, range: `bytes=0-${length - 1}`, ifRange: etag });
    expect(resumed[1]).toMatchObject({ status: 206, ifRange: etag });
    const from = Number(/^bytes=(\d+)-/.exec(resumed[1]!.range)?.[1]);
    expect(from).toBeGreaterThan(512 * 1024);
    expect(resumed[1]!.range).toBe(`bytes=${from}-${length - 1}`);
  });

  it('should fetch a file replaced on the origin between attempts whole, never stitched', async () => {
    // Two files of the same length, different bytes: the feed signs NEW, the origin first serves OLD
    // under its name (a stale copy). Its head is NEW's (the feed's signed frame would refuse any
    // other head before a byte is written), its first payload MiB is not.
    images['v5.0.6'] = randomImage(3 * 1024 * 1024);
    const newBundle = await feed.publish({ version: 'v5.0.6' }, images['v5.0.6']);
    bundles['v5.0.6'] = path.basename(newBundle);
    const oldBundle = path.join(path.dirname(newBundle), 'stale.bundle');
    const stale = fs.readFileSync(newBundle);
    const payloadAt = stale.indexOf(images['v5.0.6']);
    randomImage(1024 * 1024).copy(stale, payloadAt);
    fs.writeFileSync(oldBundle, stale);
    const served = path.join(feed.dir, 'targets', bundles['v5.0.6']);
    const fresh = fs.readFileSync(served);
    expect(fs.statSync(oldBundle).size).toBe(fresh.length);
    fs.copyFileSync(oldBundle, served);
    const before = new Date(Date.now() - 60_000);
    fs.utimesSync(served, before, before);

    const { g, token } = await gantry({
      GANTRY_FEED_URL: `${nginx.url('origin')}/feed`,
      GANTRY_FEED_TARGETS_URL: `${nginx.url('origin')}/slow/targets`,
    });
    const mark = nginx.accessLog().length;
    const jobId = await startDownload(g, token, 'v5.0.6');
    await waitFor(
      () => progress(g, token, jobId),
      (r) => r.body.data.progress.percentage >= 25,
      'a quarter durable',
    );
    await nginx.kill();
    fs.writeFileSync(served, fresh); // the publisher replaced the file (a new mtime, so a new ETag)
    await nginx.start();
    await downloaded(g, token, jobId, 'v5.0.6');

    const oldEtag = `"${Math.floor(before.getTime() / 1000).toString(16)}-${fresh.length.toString(16)}"`;
    const requests = bundleRequests(mark, 'v5.0.6');
    // The resume asked for the rest only if unchanged; the origin answered whole (200) instead...
    expect(requests[0]).toMatchObject({
      status: 200,
      range: `bytes=0-${fresh.length - 1}`,
      ifRange: oldEtag,
    });
    // ...and the download started over: one whole GET of the new file, no range.
    expect(requests.at(-1)).toMatchObject({ status: 200, range: '', ifRange: '', bytes: fresh.length });
  });

  it('should fail with a clear OTA_DOWNLOAD_FAILED naming the proxy when it refuses the password, and show the password nowhere', async () => {
    const wrong = `http://${PROXY_USER}:wr0ng-pr0xy-pw@127.0.0.1:${authProxy.port}`;
    const { g, token } = await gantry({ GANTRY_FEED_URL: `${nginx.url('tls')}/feed`, HTTPS_PROXY: wrong });
    const res = await check(g, token);
    expect(res.body.success).toBe(false);
    expect(res.body.error.code).toBe('OTA_DOWNLOAD_FAILED');
    expect(res.body.error.message).toMatch(
      new RegExp(
        `through the proxy http://127\\.0\\.0\\.1:${authProxy.port}: the proxy .* refused the credentials`,
      ),
    );

    const logs = await g.request('GET', '/api/v1/ota/logs?limit=500', { token });
    expect(JSON.stringify(logs.body)).toMatch(`http://127.0.0.1:${authProxy.port}`);
    const debug = await g.request('POST', '/api/v1/ota/debug-bundle', {
      token,
      body: { include_logs: true, include_configs: true, include_metrics: true },
    });
    const file = await waitFor(
      async () => {
        const r = await fetch(g.url + debug.body.data.download_url, {
          headers: { authorization: `Bearer ${token}`, 'x-gateway-id': GATEWAY },
        });
        return { status: r.status, bytes: Buffer.from(await r.arrayBuffer()) };
      },
      (r) => r.status === 200,
      'the debug bundle',
    );
    const entries = await untar(zlib.gunzipSync(file.bytes));
    const serverConfig = JSON.parse(
      [...entries].find(([name]) => name.endsWith('config/gantry.json'))![1].toString(),
    );
    expect(serverConfig.config.httpsProxy).toBe(`http://[REDACTED]@127.0.0.1:${authProxy.port}`);

    const shown = [
      JSON.stringify(res.body),
      JSON.stringify(logs.body),
      JSON.stringify((await g.request('GET', '/api/v1/ota/settings', { token })).body),
      JSON.stringify((await g.request('GET', '/api/v1/ota/status', { token })).body),
      ...[...entries.values()].map((b) => b.toString('latin1')),
    ];
    for (const text of shown) expect(text).not.toContain('wr0ng-pr0xy-pw');
  });

  it('should fail a check clearly when the proxy cannot be reached', async () => {
    const port = await freePort();
    const { g, token } = await gantry({
      GANTRY_FEED_URL: `${nginx.url('origin')}/feed`,
      HTTP_PROXY: `http://user:unreachable-pw@127.0.0.1:${port}`,
    });
    const res = await check(g, token);
    expect(res.body.error.code).toBe('OTA_DOWNLOAD_FAILED');
    expect(res.body.error.message).toMatch(
      new RegExp(`cannot reach the proxy http://127\\.0\\.0\\.1:${port}: ECONNREFUSED`),
    );
    expect(JSON.stringify(res.body)).not.toContain('unreachable-pw');
  });

  it("should let the configuration ZIP's proxy fields win over the environment's", async () => {
    // The environment names a proxy nobody runs; the archive says: no proxy for this feed.
    const port = await freePort();
    const { g, token } = await gantry({ HTTP_PROXY: `http://127.0.0.1:${port}` });
    const { zip } = await configurationZip({
      manifest: {
        feed: {
          metadata_url: `${nginx.url('origin')}/feed`,
          targets_url: `${nginx.url('origin')}/feed/targets`,
          http_proxy: '',
        },
      },
      extra: {
        'tuf/root.json': fs.readFileSync(path.join(feed.dir, 'root.json')),
        'keys/vendor.pub.pem': feed.publicKeyPem,
      },
    });
    const form = new FormData();
    form.append('ota_zip_file', new Blob([new Uint8Array(zip)]), 'config.zip');
    const up = await fetch(`${g.url}/ota-configure`, {
      method: 'POST',
      body: form,
      headers: { authorization: `Bearer ${token}`, 'x-gateway-id': GATEWAY },
    });
    const started = (await up.json()) as { update_id: string };
    await g.deps.zipOps.settled(started.update_id);
    expect(g.deps.provisioning.feed(GATEWAY)?.proxy).toEqual({ httpProxy: '' });
    await downloaded(g, token, await startDownload(g, token, 'v5.0.5'), 'v5.0.5');
  });
});
