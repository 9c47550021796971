import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseChunkIndex } from '../../delta/dynamic/chunk-index.js';
import { seededBytes } from '../delta/helpers.js';
import { GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { startTestFeed, type TestFeed } from '../helpers/feed.js';
import { useRestartableGantry } from '../helpers/restartable.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Issue 14, hop deltas on a live active slot: the running system has written its root since the
 * image was installed (the simulator's slot-writes control: the slot's bytes change, its record
 * does not). The hop delta is still chosen by the record's hash; the operations that read changed
 * source bytes are repaired from the bundle's chunks (only the chunks covering them, each verified
 * before use), the rest applies from the delta. Gantry itself never writes the active slot.
 */

const FAST_POLICY = {
  retryDelayMs: 10,
  checkpointMs: 0,
  checkpointBytes: 256 * 1024,
  threadHashingMinBytes: 0,
};

/** Where the running system writes its root: bytes the v2 image keeps as they were in v1. */
const LIVE_WRITES = [300_000, 800_000];

const slotFile = (dataDir: string, slot: 'A' | 'B') =>
  path.join(dataDir, 'gateways', GATEWAY, 'device', `slot-${slot}.img`);

/** The next release: a few blocks of the active image changed, compressible data appended. */
function nextRelease(active: Buffer): Buffer {
  const out = Buffer.concat([active, Buffer.alloc(96 * 1024, 7)]);
  seededBytes('release-a', 3000).copy(out, 100_000);
  seededBytes('release-b', 2000).copy(out, 520_000);
  return out;
}

type Requester = (
  method: string,
  url: string,
  opts: { token?: string; body?: unknown },
) => Promise<{ status: number; body: any }>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function liveWrite(request: Requester, token: string, offset: number, seed: string): Promise<Buffer> {
  const data = seededBytes(seed, 4096);
  const res = await request('POST', '/api/v1/dev/simulator/slot-writes', {
    token,
    body: { slot: 'A', offset, data: data.toString('base64') },
  });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return data;
}

async function startDownload(request: Requester, token: string, version: string): Promise<string> {
  const check = await request('POST', '/api/v1/ota/check-updates', {
    token,
    body: { force: true, background: false },
  });
  expect(check.status, JSON.stringify(check.body)).toBe(200);
  const list = await request('GET', '/api/v1/ota/updates', { token });
  const entry = list.body.data.updates.find((u: { version: string }) => u.version === version);
  const res = await request('POST', '/api/v1/ota/download', {
    token,
    body: { update_id: entry.id, target_partition: 'B' },
  });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.data.job_id as string;
}

function settled(request: Requester, token: string, jobId: string) {
  return waitFor(
    () => request('GET', `/api/v1/ota/progress?job_id=${jobId}`, { token }),
    (r) => ['downloaded', 'error', 'cancelled'].includes(r.body.data?.status),
    'the job to settle',
  );
}

async function logMessages(request: Requester, token: string): Promise<string[]> {
  const logs = await request('GET', '/api/v1/ota/logs?limit=200', { token });
  return (logs.body.data.logs as { message: string }[]).map((l) => l.message);
}

describe('hop delta on a live active slot: repaired from chunks', () => {
  let feed: TestFeed;
  let g: TestGantry;
  let token: string;
  let factory: Buffer;

  beforeEach(async () => {
    feed = await startTestFeed();
    const dataDir = tempDataDir();
    feed.trustIn(dataDir);
    g = await startTestGantry({ dataDir, env: feed.env, transferPolicy: FAST_POLICY });
    token = await g.login();
    factory = fs.readFileSync(slotFile(dataDir, 'A'));
  });
  afterEach(async () => {
    await g.stop();
    await feed.close();
  });

  const request: Requester = (method, url, opts) => g.request(method, url, opts);

  it('should repair the operations reading changed blocks from chunks and end with the exact image', async () => {
    const image = nextRelease(factory);
    const bundle = await feed.publish({ version: 'v5.0.5' }, image, {
      dynamic: true,
      hopFrom: [{ version: 'v5.0.4', image: factory }],
    });
    const live = Buffer.from(factory);
    for (const [k, offset] of LIVE_WRITES.entries()) {
      (await liveWrite(request, token, offset, `live-${k}`)).copy(live, offset);
    }
    expect(fs.readFileSync(slotFile(g.dataDir, 'A')).equals(live)).toBe(true);

    const seen = feed.server.requests.length;
    const jobId = await startDownload(request, token, 'v5.0.5');
    const done = await settled(request, token, jobId);
    expect(done.body.data.status, JSON.stringify(done.body.data)).toBe('downloaded');
    expect(done.body.data.delivery.path).toBe('hop');
    expect(fs.readFileSync(slotFile(g.dataDir, 'B')).equals(image)).toBe(true);
    // Read, never written: the active slot holds what the running system wrote, nothing else.
    expect(fs.readFileSync(slotFile(g.dataDir, 'A')).equals(live)).toBe(true);

    const base = path.basename(bundle, '.bundle');
    const requests = feed.server.requests.slice(seen);
    const packGets = requests.filter((r) => r.url === `/targets/${base}.pack`);
    // Only the chunks covering the repaired operations: single ranges, not the whole pack.
    expect(packGets.length).toBeGreaterThan(0);
    for (const r of packGets) expect(r.range).toMatch(/^bytes=\d+-\d+$/);
    expect(requests.filter((r) => r.url === `/targets/${base}.gcix`)).toHaveLength(1);
    expect(requests.filter((r) => r.url === feed.targetUrlPath(bundle) && !r.range)).toHaveLength(0);
    // Delta, head, index and a few chunks: far below the compressed full bundle.
    const wire = done.body.data.delivery.wire_bytes as number;
    expect(wire).toBeLessThan(fs.statSync(bundle).size / 3);
    expect(wire).toBeGreaterThan(fs.statSync(path.join(feed.dir, 'targets', `${base}.gcix`)).size);

    const messages = await logMessages(request, token);
    expect(
      messages.some((m) => /^Job \S+: hop delta: [1-9]\d* of \d+ operations repaired from chunks/.test(m)),
      messages.join('\n'),
    ).toBe(true);
  });

  it('should fall back to the full bundle when the slot changed and the bundle has no chunks', async () => {
    const image = nextRelease(factory);
    const bundle = await feed.publish({ version: 'v5.0.5' }, image, {
      hopFrom: [{ version: 'v5.0.4', image: factory }],
    });
    const live = Buffer.from(factory);
    (await liveWrite(request, token, LIVE_WRITES[0]!, 'live-0')).copy(live, LIVE_WRITES[0]!);
    const jobId = await startDownload(request, token, 'v5.0.5');
    const done = await settled(request, token, jobId);
    expect(done.body.data.status, JSON.stringify(done.body.data)).toBe('downloaded');
    expect(done.body.data.delivery.path).toBe('full');
    expect(done.body.data.delivery.wire_bytes).toBeGreaterThanOrEqual(fs.statSync(bundle).size);
    expect(fs.readFileSync(slotFile(g.dataDir, 'B')).equals(image)).toBe(true);
    expect(fs.readFileSync(slotFile(g.dataDir, 'A')).equals(live)).toBe(true);
    const messages = await logMessages(request, token);
    expect(messages.some((m) => m.includes('does not apply to the active slot'))).toBe(true);
  });

  it('should refuse a tampered chunk during a repair before writing it', async () => {
    const image = nextRelease(factory);
    const bundle = await feed.publish({ version: 'v5.0.5' }, image, {
      dynamic: true,
      hopFrom: [{ version: 'v5.0.4', image: factory }],
    });
    const offset = LIVE_WRITES[0]!;
    const live = Buffer.from(factory);
    (await liveWrite(request, token, offset, 'live-0')).copy(live, offset);
    // The pack's frame of the chunk the repair needs changes on the feed (same length).
    const base = path.basename(bundle, '.bundle');
    const index = parseChunkIndex(fs.readFileSync(path.join(feed.dir, 'targets', `${base}.gcix`)));
    const victim = index.chunks.find((c) => c.offset <= offset && offset < c.offset + c.length)!;
    const frame = index.frames[victim.frame]!;
    const packFile = path.join(feed.dir, 'targets', `${base}.pack`);
    const pack = fs.readFileSync(packFile);
    const at = frame.offset + Math.floor(frame.length / 2);
    pack[at] = pack[at]! ^ 0x5a;
    fs.writeFileSync(packFile, pack);

    const jobId = await startDownload(request, token, 'v5.0.5');
    const done = await settled(request, token, jobId);
    expect(done.body.data.status).toBe('error');
    expect(done.body.data.error.code).toBe('OTA_INVALID_IMAGE');
    // Nothing from the refused chunk on: the slot was written in order up to the operation before.
    expect(fs.statSync(slotFile(g.dataDir, 'B')).size).toBeLessThanOrEqual(victim.offset + victim.length);
    expect(
      fs
        .readFileSync(slotFile(g.dataDir, 'B'))
        .subarray(offset, offset + 4096)
        .equals(image.subarray(offset, offset + 4096)),
    ).toBe(false);
    const device = g.deps.gateways.get(GATEWAY)!.device;
    expect((await device.slots()).B.state).not.toBe('bootable');
    expect(fs.readFileSync(slotFile(g.dataDir, 'A')).equals(live)).toBe(true);
    const messages = await logMessages(request, token);
    expect(messages.some((m) => m.includes(`chunk ${index.chunks.indexOf(victim)} refused`))).toBe(true);
  });
});

describe('hop delta on a live active slot: the server killed with SIGKILL mid-repair', () => {
  const rig = useRestartableGantry();
  const spawn = () => rig.spawn();

  it('should resume the repair after the restart, without fetching the delta or the index again', async () => {
    const first = await spawn();
    const token = await first.login();
    const request: Requester = (method, url, opts) => first.request(method, url, opts);
    const factory = fs.readFileSync(slotFile(rig.dataDir, 'A'));
    const image = nextRelease(factory);
    const bundle = await rig.feed.publish({ version: 'v5.0.5' }, image, {
      dynamic: true,
      hopFrom: [{ version: 'v5.0.4', image: factory }],
    });
    const base = path.basename(bundle, '.bundle');
    const live = Buffer.from(factory);
    for (const [k, offset] of LIVE_WRITES.entries()) {
      (await liveWrite(request, token, offset, `live-${k}`)).copy(live, offset);
    }
    // The pack holds every range request open: the repair is under way when the server dies.
    const packUrl = `/targets/${base}.pack`;
    rig.feed.server.overrides.set(packUrl, () => undefined);

    const jobId = await startDownload(request, token, 'v5.0.5');
    await waitFor(
      () => Promise.resolve(rig.feed.server.requests.filter((r) => r.url === packUrl).length),
      (n) => n > 0,
      'a repair range requested',
    );
    const exit = await first.kill('SIGKILL');
    rig.forget(first);
    expect(exit.signal).toBe('SIGKILL');
    expect(fs.existsSync(path.join(rig.dataDir, 'gateways', GATEWAY, 'delta-work', jobId))).toBe(true);

    rig.feed.server.overrides.delete(packUrl);
    const seen = rig.feed.server.requests.length;
    const second = await spawn();
    const again: Requester = (method, url, opts) => second.request(method, url, opts);
    const done = await settled(again, token, jobId);
    expect(done.body.data.status, JSON.stringify(done.body.data)).toBe('downloaded');
    expect(done.body.data.delivery.path).toBe('hop');
    expect(fs.readFileSync(slotFile(rig.dataDir, 'B')).equals(image)).toBe(true);
    expect(fs.readFileSync(slotFile(rig.dataDir, 'A')).equals(live)).toBe(true);
    const after = rig.feed.server.requests.slice(seen).map((r) => r.url);
    // The verified delta and index were kept in the job's work directory: only chunks again.
    expect(after.filter((u) => u.endsWith('.hop'))).toHaveLength(0);
    expect(after.filter((u) => u === `/targets/${base}.gcix`)).toHaveLength(0);
    expect(after.filter((u) => u === packUrl).length).toBeGreaterThan(0);
  });
});
