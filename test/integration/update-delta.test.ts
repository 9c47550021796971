import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeltaRef } from '../../bundle/manifest.js';
import { formatBytes } from '../../core/format.js';
import { buildHopDelta } from '../../delta/hop/build.js';
import { GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { stallingFeed, startTestFeed, type TestFeed } from '../helpers/feed.js';
import { waitFor } from '../helpers/wait.js';

const FAST_POLICY = {
  retryDelayMs: 10,
  checkpointMs: 0,
  checkpointBytes: 256 * 1024,
  threadHashingMinBytes: 0,
};

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * Issue 14 through the REST API on a real feed: a v2 bundle with a hop delta from the image on the
 * gateway's active slot (the simulator's factory image of slot A), the compressed full bundle when
 * no delta matches, a tampered delta, a cancel while the delta downloads. The active slot is hashed
 * before and after every install: it is only ever read.
 */
describe('update delivery: hop deltas and compressed bundles', () => {
  let feed: TestFeed;
  let g: TestGantry;
  let token: string;
  let slotA: Buffer;
  let n = 0;

  const slotFile = (slot: 'A' | 'B') =>
    path.join(g.dataDir, 'gateways', GATEWAY, 'device', `slot-${slot}.img`);
  const progress = (jobId: string) => g.request('GET', `/api/v1/ota/progress?job_id=${jobId}`, { token });
  const settled = (jobId: string) =>
    waitFor(
      () => progress(jobId),
      (r) => ['downloaded', 'error', 'cancelled'].includes(r.body.data?.status),
      'the job to settle',
    );

  /** The next release: the active image with a few blocks changed and some appended. */
  function nextImage(from: Buffer): Buffer {
    const out = Buffer.concat([from, Buffer.alloc(96 * 1024, ++n)]);
    for (let i = 0; i < 6; i++) out.write(`release ${n} block ${i}`, 100_000 * (i + 1) + n * 7);
    return out;
  }

  async function hopFrom(source: Buffer, target: Buffer, version: string, name: string): Promise<DeltaRef> {
    const src = path.join(feed.workDir, `${name}.src`);
    const tgt = path.join(feed.workDir, `${name}.tgt`);
    fs.writeFileSync(src, source);
    fs.writeFileSync(tgt, target);
    const built = await buildHopDelta({
      source: src,
      target: tgt,
      out: path.join(feed.workDir, `${name}.hop`),
    });
    return {
      source_sha256: sha256(source),
      source_version: version,
      artifact: { target: `${name}.hop`, size: built.size, sha256: built.sha256 },
    };
  }

  async function listed(version: string) {
    const check = await g.request('POST', '/api/v1/ota/check-updates', {
      token,
      body: { force: true, background: false },
    });
    expect(check.status, JSON.stringify(check.body)).toBe(200);
    const list = await g.request('GET', '/api/v1/ota/updates', { token });
    return list.body.data.updates.find((u: { version: string }) => u.version === version);
  }

  async function download(updateId: string): Promise<string> {
    const res = await g.request('POST', '/api/v1/ota/download', {
      token,
      body: { update_id: updateId, target_partition: 'B' },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body.data.job_id as string;
  }

  beforeAll(async () => {
    feed = await startTestFeed();
    const dataDir = tempDataDir();
    feed.trustIn(dataDir);
    g = await startTestGantry({ dataDir, env: feed.env, transferPolicy: FAST_POLICY });
    token = await g.login();
    slotA = fs.readFileSync(slotFile('A'));
  });
  afterAll(async () => {
    await g.stop();
    await feed.close();
  });

  it('should install by the hop delta from the active slot: only the delta and the bundle head on the wire', async () => {
    const v2 = nextImage(slotA);
    const hop = await hopFrom(slotA, v2, 'v5.0.4', 'hop-505');
    const bundle = await feed.publish({ version: 'v5.0.5' }, v2, {
      build: { format: 'gantry-bundle-v2', deltas: { 'rootfs.img': [hop] } },
    });
    const entry = await listed('v5.0.5');
    // What this gateway would download: the delta, not the bundle.
    expect(entry.size).toBe(formatBytes(hop.artifact.size));
    expect(hop.artifact.size).toBeLessThan(fs.statSync(bundle).size / 4);

    const seen = feed.server.requests.length;
    const jobId = await download(entry.id);
    const done = await settled(jobId);
    expect(done.body.data.status, JSON.stringify(done.body.data)).toBe('downloaded');
    expect(fs.readFileSync(slotFile('B')).equals(v2)).toBe(true);
    expect(fs.readFileSync(slotFile('A')).equals(slotA)).toBe(true);
    const delivery = done.body.data.delivery;
    expect(delivery.path).toBe('hop');
    expect(delivery.wire_bytes).toBeGreaterThan(hop.artifact.size);
    expect(delivery.wire_bytes).toBeLessThan(hop.artifact.size + 32 * 1024);
    expect(done.body.data.progress.total).toBe(formatBytes(delivery.planned_bytes));

    const requests = feed.server.requests.slice(seen).filter((r) => r.url.startsWith('/targets/'));
    const bundleGets = requests.filter((r) => r.url === feed.targetUrlPath(bundle));
    expect(bundleGets.length).toBeGreaterThan(0);
    // The bundle is only read up to its manifest: ranged GETs that stop far before its end.
    for (const r of bundleGets) expect(r.range).toMatch(/^bytes=\d+-\d+$/);
    expect(requests.filter((r) => r.url === `/targets/${hop.artifact.target}`)).toHaveLength(1);
    const slots = (await g.request('GET', '/api/v1/ota/status', { token })).body.data.partitions;
    expect(slots.inactive).toMatchObject({ id: 'B', version: 'v5.0.5', status: 'ready' });
  });

  it('should fetch the compressed bundle whole when no delta starts from the active slot, never applying the other', async () => {
    const v3 = nextImage(slotA);
    const other = nextImage(v3);
    // A delta from an image this gateway does not run.
    const hop = await hopFrom(other, v3, 'v5.0.4', 'hop-506-other');
    const bundle = await feed.publish({ version: 'v5.0.6' }, v3, {
      build: { format: 'gantry-bundle-v2', compression: 'zstd', deltas: { 'rootfs.img': [hop] } },
    });
    const entry = await listed('v5.0.6');
    expect(entry.size).toBe(formatBytes(fs.statSync(bundle).size));
    const seen = feed.server.requests.length;
    const jobId = await download(entry.id);
    const done = await settled(jobId);
    expect(done.body.data.status, JSON.stringify(done.body.data)).toBe('downloaded');
    expect(fs.readFileSync(slotFile('B')).equals(v3)).toBe(true);
    expect(fs.readFileSync(slotFile('A')).equals(slotA)).toBe(true);
    expect(done.body.data.delivery.path).toBe('full');
    expect(done.body.data.delivery.wire_bytes).toBeGreaterThanOrEqual(fs.statSync(bundle).size);
    const urls = feed.server.requests.slice(seen).map((r) => r.url);
    expect(urls).not.toContain(`/targets/${hop.artifact.target}`);
  });

  it('should refuse a tampered delta before writing a byte of it, and leave the slot invalid', async () => {
    const v4 = nextImage(slotA);
    const hop = await hopFrom(slotA, v4, 'v5.0.4', 'hop-507');
    await feed.publish({ version: 'v5.0.7' }, v4, {
      build: { format: 'gantry-bundle-v2', deltas: { 'rootfs.img': [hop] } },
    });
    // The feed's copy changes after publication (same length): the signed hash no longer matches.
    const served = path.join(feed.dir, 'targets', hop.artifact.target);
    const bytes = fs.readFileSync(served);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0x55;
    fs.writeFileSync(served, bytes);
    const entry = await listed('v5.0.7');
    const before = fs.readFileSync(slotFile('B'));
    const jobId = await download(entry.id);
    const done = await settled(jobId);
    expect(done.body.data.status).toBe('error');
    expect(done.body.data.error.code).toBe('OTA_INVALID_IMAGE');
    expect(fs.readFileSync(slotFile('B')).equals(before)).toBe(true);
    const device = g.deps.gateways.get(GATEWAY)!.device;
    expect((await device.slots()).B.state).not.toBe('bootable');
    expect(fs.readFileSync(slotFile('A')).equals(slotA)).toBe(true);
  });

  it('should cancel while the delta downloads and leave the target slot invalid', async () => {
    const v5 = nextImage(slotA);
    const hop = await hopFrom(slotA, v5, 'v5.0.4', 'hop-508');
    await feed.publish({ version: 'v5.0.8' }, v5, {
      build: { format: 'gantry-bundle-v2', deltas: { 'rootfs.img': [hop] } },
    });
    const deltaBytes = fs.readFileSync(path.join(feed.dir, 'targets', hop.artifact.target));
    const slow = stallingFeed(deltaBytes, {
      burst: 256,
      chunk: 16,
      tickMs: 50,
      capBytes: deltaBytes.length - 64,
    });
    feed.server.overrides.set(`/targets/${hop.artifact.target}`, slow.handler);
    const entry = await listed('v5.0.8');
    const jobId = await download(entry.id);
    await waitFor(
      () => progress(jobId),
      (r) => r.body.data?.delivery?.path === 'hop' && r.body.data.delivery.wire_bytes > 0,
      'the hop path under way',
    );
    const cancel = await g.request('POST', '/api/v1/ota/cancel', { token, body: { job_id: jobId } });
    expect(cancel.status, JSON.stringify(cancel.body)).toBe(200);
    const device = g.deps.gateways.get(GATEWAY)!.device;
    await waitFor(
      async () => (await device.slots()).B.state,
      (s) => s === 'invalid',
      'slot B invalid',
    );
    expect((await progress(jobId)).body.data.status).toBe('cancelled');
    expect(fs.readFileSync(slotFile('A')).equals(slotA)).toBe(true);
    feed.server.overrides.clear();
  });

  it('should still install a v1 bundle', async () => {
    const v6 = nextImage(slotA);
    await feed.publish({ version: 'v5.0.9' }, v6);
    const entry = await listed('v5.0.9');
    const jobId = await download(entry.id);
    const done = await settled(jobId);
    expect(done.body.data.status, JSON.stringify(done.body.data)).toBe('downloaded');
    expect(fs.readFileSync(slotFile('B')).equals(v6)).toBe(true);
    expect(done.body.data.delivery.path).toBe('full');
  });
});
