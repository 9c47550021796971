import fs from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { generateKeyPair } from '../../bundle/keys.js';
import { GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { randomImage, startTestFeed, type TestFeed } from '../helpers/feed.js';
import { waitFor } from '../helpers/wait.js';

// threadHashingMinBytes 0: these failures (tampering, resume, cancel, slow retrieval) run with the
// hashes on the worker thread, as real-sized bundles do; the other pipeline tests hash inline.
const FAST_POLICY = {
  retryDelayMs: 5,
  checkpointMs: 0,
  checkpointBytes: 128 * 1024,
  maxAttempts: 3,
  threadHashingMinBytes: 0,
};

/** Serves a bundle's first `firstBytes`, then holds the response until `release()`. */
function gatedResponse(file: string, firstBytes: number) {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let calls = 0;
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    calls++;
    const data = fs.readFileSync(file);
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    const body = data.subarray(start);
    res.writeHead(m ? 206 : 200, {
      'content-length': body.length,
      ...(m ? { 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
    });
    res.write(body.subarray(0, firstBytes));
    void gate.then(() => res.end(body.subarray(firstBytes)));
  };
  return { handler, release: () => release(), calls: () => calls };
}

describe('update pipeline: refusals and failures', () => {
  let feed: TestFeed;
  let g: TestGantry;
  let token: string;
  let dataDir: string;
  const image = randomImage(2 * 1024 * 1024 + 7);

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
    g = await startTestGantry({ dataDir, env: feed.env, transferPolicy: FAST_POLICY });
    token = await g.login();
    const check = await g.request('POST', '/api/v1/ota/check-updates', { token, body: { force: true } });
    expect(check.status, JSON.stringify(check.body)).toBe(200);
  }
  const download = (updateId = 'update-001') =>
    g.request('POST', '/api/v1/ota/download', { token, body: { update_id: updateId } });
  const progress = (jobId: string) => g.request('GET', `/api/v1/ota/progress?job_id=${jobId}`, { token });
  const finalState = (jobId: string) =>
    waitFor(
      () => progress(jobId),
      (r) => ['downloaded', 'error', 'cancelled', 'complete'].includes(r.body.data?.status),
      `job ${jobId} to settle`,
    );
  const slotFile = (slot: 'A' | 'B') => path.join(dataDir, 'gateways', GATEWAY, 'device', `slot-${slot}.img`);
  const device = () => g.deps.gateways.get(GATEWAY)!.device;

  it('should fail a tampered payload with OTA_INVALID_IMAGE, leave slot B invalid and the booted slot untouched', async () => {
    const bundle = await feed.publish({ version: 'v5.0.5' }, image);
    const served = path.join(feed.dir, 'targets', path.basename(bundle));
    const bytes = fs.readFileSync(served);
    bytes[bytes.length - 2048] = bytes[bytes.length - 2048]! ^ 0xff; // inside the payload, before the tar trailer
    fs.writeFileSync(served, bytes);
    await boot();
    const bootedBefore = fs.readFileSync(slotFile('A'));
    const start = await download();
    expect(start.status).toBe(200);
    const end = await finalState(start.body.data.job_id);
    expect(end.body.data.status).toBe('error');
    expect(end.body.data.error.code).toBe('OTA_INVALID_IMAGE');
    await waitFor(
      async () => (await device().slots()).B.state,
      (s) => s === 'invalid',
      'slot B invalid',
    );
    expect(fs.readFileSync(slotFile('A')).equals(bootedBefore)).toBe(true);
    const status = await g.request('GET', '/api/v1/ota/status', { token });
    expect(status.body.data.partitions.inactive.status).toBe('invalid');
    expect(status.body.data.partitions.inactive.next_boot).toBe(false);
  });

  it('should refuse a bundle signed by an unknown key before writing a byte (OTA_SIGNATURE_FAILED)', async () => {
    await feed.publish({ version: 'v5.0.5' }, image);
    fs.writeFileSync(path.join(dataDir, 'trusted-keys', 'vendor.pem'), generateKeyPair().publicKeyPem);
    await boot();
    const slotBBefore = fs.readFileSync(slotFile('B'));
    const list = await g.request('GET', '/api/v1/ota/updates', { token });
    // The label says what the gateway knows before downloading: not a key it trusts (issue 11.3).
    expect(list.body.data.updates[0].signature).toBe('untrusted');
    const start = await download();
    const end = await finalState(start.body.data.job_id);
    expect(end.body.data.error.code).toBe('OTA_SIGNATURE_FAILED');
    // Nothing was written: slot B still holds its previous, bootable image.
    expect(fs.readFileSync(slotFile('B')).equals(slotBBefore)).toBe(true);
    expect((await device().slots()).B).toMatchObject({ state: 'bootable', version: 'v5.0.3' });
  });

  // Regression (issue 11.3): `feed add` recorded no key id and a missing one counted as trusted, so
  // a bundle signed by a stranger's key was listed as "verified".
  it('should list a bundle signed by a key the gateway does not trust as untrusted, beside a verified one', async () => {
    await feed.publish({ version: 'v5.0.5' }, image);
    await feed.publish({ version: 'v5.0.6' }, image, { signingKey: generateKeyPair().privateKey });
    await boot();
    const list = await g.request('GET', '/api/v1/ota/updates', { token });
    expect(
      list.body.data.updates.map((u: { id: string; version: string; signature: string }) => [
        u.id,
        u.version,
        u.signature,
      ]),
    ).toEqual([
      ['update-001', 'v5.0.5', 'verified'],
      ['update-002', 'v5.0.6', 'untrusted'],
    ]);
    const end = await finalState((await download('update-002')).body.data.job_id);
    expect(end.body.data.error.code).toBe('OTA_SIGNATURE_FAILED');
  });

  it('should show an image for other hardware as incompatible and refuse to install it', async () => {
    await feed.publish({ version: 'v5.0.5', compatible: ['Univa-GW-Lite'] }, image);
    await boot();
    const list = await g.request('GET', '/api/v1/ota/updates', { token });
    expect(list.body.data.updates[0].compatible).toBe(false);
    const end = await finalState((await download()).body.data.job_id);
    expect(end.body.data.error.code).toBe('OTA_INVALID_IMAGE');
    expect(end.body.data.error.message).toMatch(/Univa-GW-Lite/);
  });

  it('should refuse a downgrade (anti-rollback) with OTA_INVALID_IMAGE', async () => {
    await feed.publish({ version: 'v5.0.1' }, image);
    await boot();
    const list = await g.request('GET', '/api/v1/ota/updates', { token });
    expect(list.body.data.updates[0].compatible).toBe(false);
    const end = await finalState((await download()).body.data.job_id);
    expect(end.body.data.error.code).toBe('OTA_INVALID_IMAGE');
    expect(end.body.data.error.message).toMatch(/downgrade/);
  });

  it('should refuse expired feed metadata (a frozen feed) when checking for updates', async () => {
    await feed.publish({ version: 'v5.0.5' }, image);
    feed.expireTimestamp();
    g = await startTestGantry({ dataDir, env: feed.env, transferPolicy: FAST_POLICY });
    token = await g.login();
    const check = await g.request('POST', '/api/v1/ota/check-updates', { token, body: { force: true } });
    expect(check.status).toBe(422);
    expect(check.body.error.code).toBe('OTA_SIGNATURE_FAILED');
    expect(check.body.error.message).toMatch(/expired/);
    const list = await g.request('GET', '/api/v1/ota/updates', { token });
    expect(list.body.data.total_available).toBe(0);
  });

  it('should cut a server that sends more bytes than the signed length and fail with OTA_DOWNLOAD_FAILED', async () => {
    const bundle = await feed.publish({ version: 'v5.0.5' }, image);
    const data = fs.readFileSync(bundle);
    feed.server.overrides.set(feed.targetUrlPath(bundle), (_req, res) => {
      res.writeHead(200);
      res.write(data);
      res.end(Buffer.alloc(64 * 1024, 1)); // endless data, cut at the declared length
    });
    await boot();
    const end = await finalState((await download()).body.data.job_id);
    expect(end.body.data.status).toBe('error');
    expect(end.body.data.error.code).toBe('OTA_DOWNLOAD_FAILED');
  });

  it('should resume after a dropped connection with an HTTP Range request, ending with the exact bytes', async () => {
    const bundle = await feed.publish({ version: 'v5.0.5' }, image);
    const data = fs.readFileSync(bundle);
    let first = true;
    feed.server.overrides.set(feed.targetUrlPath(bundle), (req, res) => {
      const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      const start = m ? Number(m[1]) : 0;
      const body = data.subarray(start);
      res.writeHead(m ? 206 : 200, {
        'content-length': body.length,
        ...(m ? { 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
      });
      if (first && start === 0) {
        first = false;
        res.write(body.subarray(0, Math.floor(body.length * 0.6)));
        // Cut the connection once part of the image is durably on the slot (a checkpoint reported),
        // so the retry has something to resume from.
        void waitFor(
          () => {
            const job = g.deps.jobs.recent(GATEWAY).find((j) => j.kind === 'download');
            return job ? g.deps.updates.progress(g.deps.gateways.get(GATEWAY)!, job.id).percentage : 0;
          },
          (pct) => pct > 0,
          'a durable checkpoint',
        ).then(() => res.socket?.destroy());
        return;
      }
      res.end(body);
    });
    await boot();
    const end = await finalState((await download()).body.data.job_id);
    expect(end.body.data.status, JSON.stringify(end.body.data)).toBe('downloaded');
    expect(fs.readFileSync(slotFile('B')).equals(image)).toBe(true);
    const ranges = feed.server.requests
      .filter((r) => r.url === feed.targetUrlPath(bundle))
      .map((r) => r.range);
    expect(ranges.some((r) => r && /^bytes=[1-9]\d*-\d*$/.test(r))).toBe(true);
  });

  it('should refuse a second operation while a download runs, and cancel it with the slot marked invalid', async () => {
    const bundle = await feed.publish({ version: 'v5.0.5' }, image);
    const gated = gatedResponse(bundle, 1024 * 1024);
    feed.server.overrides.set(feed.targetUrlPath(bundle), gated.handler);
    await boot();
    const jobId: string = (await download()).body.data.job_id;
    await waitFor(
      () => progress(jobId),
      (r) => r.body.data.progress.percentage > 0,
      'some progress',
    );

    const second = await download();
    expect(second.status).toBe(409);
    expect(second.body.error.code).toBe('OTA_OPERATION_IN_PROGRESS');

    const cancel = await g.request('POST', '/api/v1/ota/cancel', {
      token,
      body: { job_id: jobId, reason: 'operator test' },
    });
    expect(cancel.status).toBe(200);
    expect(cancel.body.data.status).toBe('cancelled');
    expect(cancel.body.data.progress_at_cancel).toBeGreaterThan(0);
    expect(cancel.body.data.progress_at_cancel).toBeLessThan(100);
    gated.release();
    await waitFor(
      async () => (await device().slots()).B.state,
      (s) => s === 'invalid',
      'slot B invalid',
    );
    expect((await progress(jobId)).body.data.status).toBe('cancelled');

    // The lock is free again, and cancelling twice says the job has ended.
    const again = await g.request('POST', '/api/v1/ota/cancel', { token, body: { job_id: jobId } });
    expect(again.status).toBe(400);
    feed.server.overrides.clear();
    const retry = await download();
    expect(retry.status).toBe(200);
    expect((await finalState(retry.body.data.job_id)).body.data.status).toBe('downloaded');
  });

  it('should cancel a downloaded update: the verified slot becomes invalid, never bootable', async () => {
    await feed.publish({ version: 'v5.0.5' }, image);
    await boot();
    const jobId: string = (await download()).body.data.job_id;
    expect((await finalState(jobId)).body.data.status).toBe('downloaded');
    const cancel = await g.request('POST', '/api/v1/ota/cancel', { token, body: { job_id: jobId } });
    expect(cancel.body.data).toMatchObject({ status: 'cancelled', progress_at_cancel: 100 });
    await waitFor(
      async () => (await device().slots()).B.state,
      (s) => s === 'invalid',
      'slot B invalid',
    );
    const install = await g.request('POST', '/api/v1/ota/install', { token, body: { job_id: jobId } });
    expect(install.status).toBe(500);
    expect(install.body.error.code).toBe('OTA_INSTALL_FAILED');
  });

  it('should refuse an update larger than the slot with OTA_INSUFFICIENT_SPACE before any byte is written', async () => {
    await feed.publish({ version: 'v5.0.5' }, image);
    await boot();
    await (device() as unknown as { setSlotCapacity(b: number): Promise<void> }).setSlotCapacity(1024 * 1024);
    const slotBBefore = fs.readFileSync(slotFile('B'));
    const res = await download();
    expect(res.status).toBe(507);
    expect(res.body.error.code).toBe('OTA_INSUFFICIENT_SPACE');
    expect(fs.readFileSync(slotFile('B')).equals(slotBBefore)).toBe(true);
    expect(g.deps.jobs.recent(GATEWAY).filter((j) => j.kind === 'download')).toHaveLength(0);
  });

  it('should abort a slow retrieval, retry, then fail with OTA_DOWNLOAD_FAILED', async () => {
    const bundle = await feed.publish({ version: 'v5.0.5' }, image);
    const stalled = gatedResponse(bundle, 64 * 1024); // never released: a trickle that stops
    feed.server.overrides.set(feed.targetUrlPath(bundle), stalled.handler);
    g = await startTestGantry({
      dataDir,
      env: feed.env,
      transferPolicy: { ...FAST_POLICY, slowWindowMs: 300, slowFloorBytesPerSecond: 1024 * 1024 },
    });
    token = await g.login();
    await g.request('POST', '/api/v1/ota/check-updates', { token, body: { force: true } });
    const end = await finalState((await download()).body.data.job_id);
    expect(end.body.data.status).toBe('error');
    expect(end.body.data.error.code).toBe('OTA_DOWNLOAD_FAILED');
    expect(end.body.data.error.message).toMatch(/slow retrieval/);
    // Each retry resumes: the bundle head is fetched again, then the rest with a Range.
    expect(stalled.calls()).toBeGreaterThanOrEqual(FAST_POLICY.maxAttempts);
    stalled.release();
  });

  it('should answer unknown jobs with 404 and a job of another gateway as unknown', async () => {
    await boot();
    const res = await progress('OTA-JOB-NOPE');
    expect(res.status).toBe(404);
    const cancel = await g.request('POST', '/api/v1/ota/cancel', { token, body: { job_id: 'OTA-JOB-NOPE' } });
    expect(cancel.status).toBe(404);
  });

  it('should roll back automatically when the new slot fails its health check rollback_retries times', async () => {
    await feed.publish({ version: 'v5.0.5' }, image);
    await boot();
    const jobId: string = (await download()).body.data.job_id;
    expect((await finalState(jobId)).body.data.status).toBe('downloaded');
    // The new image boots but is broken: the simulator's own control, not a field of the signed bundle.
    const broken = await g.request('POST', '/api/v1/dev/simulator/self-test', {
      token,
      body: { slot: 'B', fails: true },
    });
    expect(broken.status, JSON.stringify(broken.body)).toBe(200);
    const install = await g.request('POST', '/api/v1/ota/install', { token, body: { job_id: jobId } });
    expect(install.status).toBe(200);
    // The new slot never passed its health check: the job is not complete (issue 11.2).
    const end = await finalState(jobId);
    expect(end.body.data.status).toBe('error');
    expect(end.body.data.error).toEqual({
      code: 'OTA_INSTALL_FAILED',
      message: expect.stringMatching(/^Slot B failed its health check \(.+\): rolled back to slot A$/),
    });
    const status = await waitFor(
      () => g.request('GET', '/api/v1/ota/status', { token }),
      (r) => r.body.data.partitions.active.id === 'A' && r.body.data.partitions.active.status === 'healthy',
      'back on slot A',
    );
    expect(status.body.data.gateway.os_version).toBe('v5.0.4');
    expect(status.body.data.partitions.active.next_boot).toBe(true);
    const logs = await g.request('GET', '/api/v1/ota/logs?limit=200', { token });
    const messages: string[] = logs.body.data.logs.map((l: { message: string }) => l.message);
    expect(messages.filter((m) => /Health check failed on slot B/.test(m))).toHaveLength(3);
    expect(messages.some((m) => /Rolled back from slot B to slot A|Auto-rollback to slot A/.test(m))).toBe(
      true,
    );
    expect(await device().readBootEnv()).toMatchObject({ bootSlot: 'A', upgradeAvailable: false });
    // The slot that failed its trial is retired: not `ready`, and no rollback onto it.
    const after = await waitFor(
      () => g.request('GET', '/api/v1/ota/status', { token }),
      (r) => r.body.data.partitions.inactive.status === 'invalid',
      'slot B retired',
    );
    expect(after.body.data.partitions.inactive.next_boot).toBe(false);
    const rollback = await g.request('POST', '/api/v1/ota/recovery/rollback', {
      token,
      body: { action: 'rollback_to_b' },
    });
    expect(rollback.status).toBe(409);
    expect(rollback.body.error.code).toBe('OTA_ROLLBACK_FAILED');
  });

  it('should fail the job when the bootloader falls back because the new slot never boots', async () => {
    await feed.publish({ version: 'v5.0.5' }, image);
    await boot();
    const jobId: string = (await download()).body.data.job_id;
    expect((await finalState(jobId)).body.data.status).toBe('downloaded');
    // The new image's kernel never comes up: U-Boot counts the boots and goes back to A.
    const failing = await g.request('POST', '/api/v1/dev/simulator/boot-failures', {
      token,
      body: { slot: 'B', count: 10 },
    });
    expect(failing.status, JSON.stringify(failing.body)).toBe(200);
    const install = await g.request('POST', '/api/v1/ota/install', { token, body: { job_id: jobId } });
    expect(install.status).toBe(200);
    const end = await finalState(jobId);
    expect(end.body.data.status).toBe('error');
    expect(end.body.data.error.code).toBe('OTA_INSTALL_FAILED');
    expect(end.body.data.error.message).toMatch(/Slot B did not boot/);
    const status = await waitFor(
      () => g.request('GET', '/api/v1/ota/status', { token }),
      (r) => r.body.data.partitions.inactive.status === 'invalid',
      'slot B retired',
    );
    expect(status.body.data.partitions.active).toMatchObject({
      id: 'A',
      version: 'v5.0.4',
      status: 'healthy',
    });
    const logs = await g.request('GET', '/api/v1/ota/logs?limit=100', { token });
    expect(
      logs.body.data.logs.some((l: { message: string }) =>
        /Rolled back from slot B to slot A/.test(l.message),
      ),
    ).toBe(true);
  });
});
