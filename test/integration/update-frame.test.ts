import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { randomImage, startTestFeed, type TestFeed } from '../helpers/feed.js';
import { waitFor } from '../helpers/wait.js';

// Framed bundles are hashed on the main thread whatever their size (services/pipeline/stream-to-slot.ts);
// bundle/frame.test.ts checks the frame with the worker thread's digests too.
const POLICY = { retryDelayMs: 5, checkpointMs: 0, checkpointBytes: 128 * 1024 };

/**
 * A feed that signs each bundle's frame (target `custom.frame`, bundle/frame.ts): the gateway checks
 * the head, the frame and the payloads, each byte hashed once, and still refuses any byte that is
 * not the one the targets role signed.
 */
describe('update pipeline: the signed bundle frame', () => {
  let feed: TestFeed;
  let g: TestGantry;
  let token: string;
  let dataDir: string;
  const image = randomImage(3 * 1024 * 1024 + 11);

  beforeEach(async () => {
    feed = await startTestFeed();
    dataDir = tempDataDir();
    feed.trustIn(dataDir);
  });
  afterEach(async () => {
    await g?.stop();
    await feed.close();
  });

  async function boot(): Promise<void> {
    g = await startTestGantry({ dataDir, env: feed.env, transferPolicy: POLICY });
    token = await g.login();
    const check = await g.request('POST', '/api/v1/ota/check-updates', { token, body: { force: true } });
    expect(check.status, JSON.stringify(check.body)).toBe(200);
  }
  const finalState = async () => {
    const start = await g.request('POST', '/api/v1/ota/download', {
      token,
      body: { update_id: 'update-001' },
    });
    expect(start.status).toBe(200);
    return waitFor(
      () => g.request('GET', `/api/v1/ota/progress?job_id=${start.body.data.job_id}`, { token }),
      (r) => ['downloaded', 'error'].includes(r.body.data?.status),
      'the download to settle',
    );
  };
  const slotFile = (slot: 'A' | 'B') => path.join(dataDir, 'gateways', GATEWAY, 'device', `slot-${slot}.img`);
  const device = () => g.deps.gateways.get(GATEWAY)!.device;
  /** The published copy of a bundle, changed by `edit`. */
  const tamper = (bundle: string, edit: (bytes: Buffer) => void) => {
    const served = path.join(feed.dir, 'targets', path.basename(bundle));
    const bytes = fs.readFileSync(served);
    edit(bytes);
    fs.writeFileSync(served, bytes);
  };
  const signedFrameOf = (bundle: string) => {
    const targets = JSON.parse(fs.readFileSync(path.join(feed.dir, 'targets.json'), 'utf8')) as {
      signed: { targets: Record<string, { length: number; custom: { frame?: Record<string, unknown> } }> };
    };
    return targets.signed.targets[path.basename(bundle)]!;
  };

  it('should publish the frame in the signed target and install the exact image through it', async () => {
    const bundle = await feed.publish({ version: 'v5.0.5' }, image);
    const target = signedFrameOf(bundle);
    const bytes = fs.readFileSync(bundle);
    const imageAt = bytes.indexOf(image);
    expect(target.custom.frame).toMatchObject({ length: bytes.length, head_length: imageAt });
    await boot();
    const end = await finalState();
    expect(end.body.data.status, JSON.stringify(end.body.data)).toBe('downloaded');
    expect(fs.readFileSync(slotFile('B')).subarray(0, image.length).equals(image)).toBe(true);
    expect((await device().slots()).B).toMatchObject({ state: 'bootable', version: 'v5.0.5' });
  });

  it('should refuse a head that differs from the signed one before a byte is written', async () => {
    const bundle = await feed.publish({ version: 'v5.0.5' }, image);
    // The padding after the 64-byte signature: no signature or tar check covers it, the frame does.
    const headLength = fs.readFileSync(bundle).indexOf(image);
    tamper(bundle, (b) => (b[headLength - 512 - 100] = 0x5a));
    await boot();
    const slotBBefore = fs.readFileSync(slotFile('B'));
    const end = await finalState();
    expect(end.body.data.status).toBe('error');
    expect(end.body.data.error.code).toBe('OTA_INVALID_IMAGE');
    expect(end.body.data.error.message).toMatch(/head .* does not match the feed's signed hash/);
    // Not a byte written, the slot never even marked invalid: it still holds its bootable image.
    expect(fs.readFileSync(slotFile('B')).equals(slotBBefore)).toBe(true);
    expect((await device().slots()).B).toMatchObject({ state: 'bootable', version: 'v5.0.3' });
  });

  it('should refuse payload bytes that differ from the signed ones: slot B stays invalid, never bootable', async () => {
    const bundle = await feed.publish({ version: 'v5.0.5' }, image);
    const imageAt = fs.readFileSync(bundle).indexOf(image);
    tamper(bundle, (b) => (b[imageAt + 2 * 1024 * 1024] = b[imageAt + 2 * 1024 * 1024]! ^ 0x01));
    await boot();
    const end = await finalState();
    expect(end.body.data.error.code).toBe('OTA_INVALID_IMAGE');
    expect(end.body.data.error.message).toMatch(/rootfs\.img does not match its signed SHA-256/);
    const b = (await device().slots()).B;
    expect(b.state).toBe('invalid');
    const status = await g.request('GET', '/api/v1/ota/status', { token });
    expect(status.body.data.partitions.inactive.next_boot).toBe(false);
  });

  it('should refuse a frame byte after the payload (its tar padding) before the slot can become bootable', async () => {
    const bundle = await feed.publish({ version: 'v5.0.5' }, image);
    const imageAt = fs.readFileSync(bundle).indexOf(image);
    tamper(bundle, (b) => (b[imageAt + image.length + 7] = 0x5a));
    await boot();
    const end = await finalState();
    expect(end.body.data.error.code).toBe('OTA_INVALID_IMAGE');
    expect(end.body.data.error.message).toMatch(/frame .* does not match the feed's signed hash/);
    expect((await device().slots()).B.state).toBe('invalid');
  });
});
