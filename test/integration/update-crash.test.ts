import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import type { ResumePoint } from '../../services/pipeline/stream-to-slot.js';
import { GATEWAY, startTestGantry, type TestGantry } from '../helpers/gantry.js';
import { randomImage, stallingFeed } from '../helpers/feed.js';
import { useRestartableGantry } from '../helpers/restartable.js';
import { waitFor } from '../helpers/wait.js';

/**
 * kill -9 in the middle of a download: Gantry runs as `npm start` runs it (a child process), is
 * killed while the feed holds the bundle back, and is started again on the same data dir.
 */

interface StoredJob {
  id: string;
  state: string;
  errorCode: string | null;
  artifact: { resume: ResumePoint | null; slotTouched?: boolean } | null;
}

/** The jobs as the store holds them on disk (read beside the server, or after it died). */
function storedJobs(dataDir: string): StoredJob[] {
  const db = new Database(path.join(dataDir, 'gantry.db'), { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare('SELECT id, state, error_code, artifact FROM jobs').all() as Array<{
      id: string;
      state: string;
      error_code: string | null;
      artifact: string | null;
    }>;
    return rows.map((r) => ({
      id: r.id,
      state: r.state,
      errorCode: r.error_code,
      artifact: r.artifact ? (JSON.parse(r.artifact) as StoredJob['artifact']) : null,
    }));
  } finally {
    db.close();
  }
}

describe('update pipeline: the server killed with SIGKILL mid-download', () => {
  const rig = useRestartableGantry();
  const spawn = () => rig.spawn();
  let inProcess: TestGantry | undefined;
  const image = randomImage(3 * 1024 * 1024 + 77);

  afterEach(async () => {
    await inProcess?.stop();
    inProcess = undefined;
  });

  const slotFile = (slot: 'A' | 'B') =>
    path.join(rig.dataDir, 'gateways', GATEWAY, 'device', `slot-${slot}.img`);

  /**
   * First life: a download through the stalling feed, killed once some of it is durable (the
   * store holds a resume point past 0 and /progress shows it). Returns what the store kept.
   */
  async function downloadThenKill(bundle: string) {
    const data = fs.readFileSync(bundle);
    const slow = stallingFeed(data, {
      burst: 64 * 1024,
      chunk: 16 * 1024,
      tickMs: 20,
      capBytes: Math.floor(data.length * 0.8),
    });
    rig.feed.server.overrides.set(rig.feed.targetUrlPath(bundle), slow.handler);

    const first = await spawn();
    const token = await first.login();
    const check = await first.request('POST', '/api/v1/ota/check-updates', { token, body: { force: true } });
    expect(check.status, JSON.stringify(check.body)).toBe(200);
    const bootedBefore = fs.readFileSync(slotFile('A'));
    const start = await first.request('POST', '/api/v1/ota/download', {
      token,
      body: { update_id: 'update-001' },
    });
    expect(start.status, JSON.stringify(start.body)).toBe(200);
    const jobId: string = start.body.data.job_id;

    const moving = await waitFor(
      () => first.request('GET', `/api/v1/ota/progress?job_id=${jobId}`, { token }),
      (r) => r.body.data?.progress.percentage > 0,
      'download progress',
    );
    expect(moving.body.data.status).toBe('downloading');
    await waitFor(
      () => storedJobs(rig.dataDir).find((j) => j.id === jobId),
      (j) => (j?.artifact?.resume?.slotBytes ?? 0) > 0,
      'a durable resume point in the store',
    );

    const exit = await first.kill('SIGKILL');
    rig.forget(first);
    expect(exit.signal).toBe('SIGKILL');
    expect(first.output()).not.toMatch(/shutting down/);

    const kept = storedJobs(rig.dataDir).find((j) => j.id === jobId)!;
    expect(kept.state).toBe('downloading');
    const resume = kept.artifact!.resume!;
    expect(resume.slotBytes).toBeGreaterThan(0);
    // The kill landed mid-download: the feed never sent past 80% of the bundle.
    expect(resume.payloadOffset + resume.slotBytes).toBeLessThan(data.length * 0.8);
    return { token, jobId, data, resume, bootedBefore, serveAll: slow.serveAll };
  }

  it('should resume after the restart with the bundle head refetched and a Range for the rest, ending downloaded', async () => {
    const bundle = await rig.feed.publish({ version: 'v5.0.5' }, image);
    const { token, jobId, data, resume, bootedBefore, serveAll } = await downloadThenKill(bundle);

    serveAll();
    const seenBefore = rig.feed.server.requests.length;
    const second = await spawn();
    const done = await waitFor(
      () => second.request('GET', `/api/v1/ota/progress?job_id=${jobId}`, { token }),
      (r) => ['downloaded', 'error', 'cancelled'].includes(r.body.data?.status),
      'the resumed job to settle',
    );
    expect(done.body.data.status, JSON.stringify(done.body.data)).toBe('downloaded');
    expect(done.body.data.progress.percentage).toBe(100);

    // The new process asked for the head again (manifest, signature, payload header) and for the
    // rest from exactly the durable point: never the whole bundle a second time.
    const ranges = rig.feed.server.requests
      .slice(seenBefore)
      .filter((r) => r.url === rig.feed.targetUrlPath(bundle))
      .map((r) => r.range);
    expect(ranges).toEqual([
      undefined,
      `bytes=${resume.payloadOffset + resume.slotBytes}-${data.length - 1}`,
    ]);

    expect(fs.readFileSync(slotFile('B')).equals(image)).toBe(true);
    expect(fs.readFileSync(slotFile('A')).equals(bootedBefore)).toBe(true);
    const status = await second.request('GET', '/api/v1/ota/status', { token });
    expect(status.body.data.partitions.active).toMatchObject({ id: 'A', booted: true, status: 'healthy' });
    expect(status.body.data.partitions.inactive).toMatchObject({
      id: 'B',
      version: 'v5.0.5',
      status: 'ready',
    });

    const jobs = storedJobs(rig.dataDir);
    expect(jobs.filter((j) => j.state === 'downloading')).toEqual([]);
    expect(jobs.find((j) => j.id === jobId)?.state).toBe('downloaded');
    const logs = await second.request('GET', '/api/v1/ota/logs?limit=200', { token });
    expect(logs.body.data.logs.map((l: { message: string }) => l.message)).toContain(
      `Job ${jobId} resumed after restart in state downloading`,
    );

    // The resumed job is a normal one: it installs and the gateway comes up on slot B.
    const install = await second.request('POST', '/api/v1/ota/install', { token, body: { job_id: jobId } });
    expect(install.status, JSON.stringify(install.body)).toBe(200);
    const booted = await waitFor(
      () => second.request('GET', '/api/v1/ota/status', { token }),
      (r) => r.body.data.partitions.active.id === 'B' && r.body.data.partitions.active.status === 'healthy',
      'slot B committed',
    );
    expect(booted.body.data.gateway.os_version).toBe('v5.0.5');
  });

  // server/main.ts reads no transfer policy from the environment (GANTRY_* has no retry/attempt
  // knob), and the default policy retries for ~20 s: the second life runs in-process instead, on
  // the data dir the killed process left behind, with a small retry policy.
  it('should end the resumed job in error (OTA_DOWNLOAD_FAILED) with slot B invalid when the feed fails after the restart', async () => {
    const bundle = await rig.feed.publish({ version: 'v5.0.5' }, image);
    const { token, jobId, bootedBefore } = await downloadThenKill(bundle);

    rig.feed.server.overrides.set(rig.feed.targetUrlPath(bundle), (_req, res) => {
      res.writeHead(500, { 'content-type': 'text/plain' }).end('feed down');
    });
    const seenBefore = rig.feed.server.requests.length;
    inProcess = await startTestGantry({
      dataDir: rig.dataDir,
      env: rig.feed.env,
      transferPolicy: { maxAttempts: 2, retryDelayMs: 5 },
    });
    const g = inProcess;
    const end = await waitFor(
      () => g.request('GET', `/api/v1/ota/progress?job_id=${jobId}`, { token }),
      (r) => ['downloaded', 'error', 'cancelled'].includes(r.body.data?.status),
      'the resumed job to settle',
    );
    expect(end.body.data.status).toBe('error');
    expect(end.body.data.error.code).toBe('OTA_DOWNLOAD_FAILED');
    expect(end.body.data.error.message).toMatch(/after 2 attempts.*HTTP 500/);
    // Each attempt failed on the head refetch; nothing was written from a 500 page.
    const attempts = rig.feed.server.requests
      .slice(seenBefore)
      .filter((r) => r.url === rig.feed.targetUrlPath(bundle));
    expect(attempts.map((r) => r.range)).toEqual([undefined, undefined]);

    const device = g.deps.gateways.get(GATEWAY)!.device;
    await waitFor(
      async () => (await device.slots()).B.state,
      (s) => s === 'invalid',
      'slot B invalid',
    );
    const status = await g.request('GET', '/api/v1/ota/status', { token });
    expect(status.body.data.partitions.inactive).toMatchObject({
      id: 'B',
      status: 'invalid',
      next_boot: false,
    });
    expect(await device.readBootEnv()).toMatchObject({ bootSlot: 'A', upgradeAvailable: false });
    expect(fs.readFileSync(slotFile('A')).equals(bootedBefore)).toBe(true);

    const install = await g.request('POST', '/api/v1/ota/install', { token, body: { job_id: jobId } });
    expect(install.status).toBe(500);
    expect(install.body.error.code).toBe('OTA_INSTALL_FAILED');
    expect(storedJobs(rig.dataDir).filter((j) => j.state === 'downloading')).toEqual([]);
    // The operation lock was released with the failed job: a new download may start.
    rig.feed.server.overrides.clear();
    const retry = await g.request('POST', '/api/v1/ota/download', {
      token,
      body: { update_id: 'update-001' },
    });
    expect(retry.status, JSON.stringify(retry.body)).toBe(200);
  });
});
