import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { SimulatedDevice } from '../../device/simulated.js';
import { GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { randomImage, startTestFeed, type TestFeed } from '../helpers/feed.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Issue 11.2: a job is complete only when the new slot really runs. `reboot_after: false` used to
 * report `complete` at once while slot A still ran, and stayed `complete` after the new slot failed
 * its boots. Now it waits in `installed` until the gateway reboots (by any means), then ends as the
 * A/B statechart decides: `complete` after the health check, or `OTA_INSTALL_FAILED`.
 */

type Progress = { status: string; current_operation: string };

/** Records the gateway's `update_progress` messages from the documented OTA WebSocket. */
async function watchProgress(url: string, token: string) {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/api/v1/ota/ws`);
  const messages: Array<Progress & { type: string; job_id: string }> = [];
  ws.on('message', (raw) => messages.push(JSON.parse(String(raw))));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ type: 'auth', token, gateway_id: GATEWAY }));
  await waitFor(
    () => messages.some((m) => m.type === 'auth_ok'),
    (ok) => ok,
    'WebSocket auth_ok',
  );
  return {
    /** The job's statuses in order, repeats (throttled progress within a state) folded. */
    statuses(jobId: string): string[] {
      return messages
        .filter((m) => m.type === 'update_progress' && m.job_id === jobId)
        .map((m) => m.status)
        .filter((s, i, all) => s !== all[i - 1]);
    },
    find(jobId: string, status: string) {
      return messages.find((m) => m.type === 'update_progress' && m.job_id === jobId && m.status === status);
    },
    close: () => ws.terminate(),
  };
}

describe('a job is complete only when the new slot runs (install without reboot)', () => {
  let feed: TestFeed;
  let g: TestGantry | undefined;
  let token: string;
  let dataDir: string;
  const closers: Array<() => void> = [];

  beforeEach(async () => {
    feed = await startTestFeed();
    await feed.publish({ version: 'v5.0.5' }, randomImage(1024 * 1024 + 11));
    dataDir = tempDataDir();
    feed.trustIn(dataDir);
    await boot();
  });
  afterEach(async () => {
    closers.splice(0).forEach((close) => close());
    await g?.stop();
    g = undefined;
    await feed.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  async function boot(): Promise<void> {
    g = await startTestGantry({ dataDir, env: feed.env });
    token = await g.login();
  }
  async function restart(whileDown?: (device: SimulatedDevice) => Promise<void>): Promise<void> {
    const model = gantry().deps.gateways.get(GATEWAY)!.row().model;
    await gantry().stop();
    g = undefined;
    if (whileDown) {
      // The gateway itself, while Gantry is not running (a power cut, a reboot by hand).
      const device = new SimulatedDevice({
        gatewayId: GATEWAY,
        model,
        dir: path.join(dataDir, 'gateways', GATEWAY, 'device'),
      });
      await whileDown(device);
      await device.close();
    }
    await boot();
  }
  const gantry = (): TestGantry => {
    if (!g) throw new Error('Gantry is not running');
    return g;
  };
  const get = (p: string) => gantry().request('GET', p, { token });
  const post = (p: string, body: unknown) => gantry().request('POST', p, { token, body });
  const progress = async (jobId: string) => (await get(`/api/v1/ota/progress?job_id=${jobId}`)).body.data;
  const status = async () => (await get('/api/v1/ota/status')).body.data;
  const until = (jobId: string, wanted: string) =>
    waitFor(
      () => progress(jobId),
      (p) => p.status === wanted || ['complete', 'error', 'cancelled'].includes(p.status),
      `job ${jobId} ${wanted}`,
    );

  /** Checks the feed, downloads update-001 into slot B and installs it with `reboot_after: false`. */
  async function installWithoutReboot(strategy: 'seamless' | 'in-place' = 'seamless'): Promise<string> {
    expect((await post('/api/v1/ota/check-updates', { force: true })).status).toBe(200);
    const start = await post('/api/v1/ota/download', { update_id: 'update-001' });
    expect(start.status, JSON.stringify(start.body)).toBe(200);
    const jobId: string = start.body.data.job_id;
    expect((await until(jobId, 'downloaded')).status).toBe('downloaded');
    const install = await post('/api/v1/ota/install', { job_id: jobId, strategy, reboot_after: false });
    expect(install.status, JSON.stringify(install.body)).toBe(200);
    expect(install.body.data).toMatchObject({
      status: 'installing',
      reboot_after: false,
      next_boot_partition: strategy === 'in-place' ? 'A' : 'B',
    });
    const installed = await until(jobId, 'installed');
    expect(installed).toMatchObject({
      status: 'installed',
      progress: { percentage: 100, current_operation: 'pending_reboot' },
      error: null,
    });
    return jobId;
  }

  const reboot = async (): Promise<string> => {
    const res = await post('/api/v1/dev/simulator/reboot', {});
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body.data.booted_slot as string;
  };

  it('should wait in `installed` (REST and WS), refuse another update on top, and complete after the reboot and health check', async () => {
    const ws = await watchProgress(gantry().url, token);
    closers.push(ws.close);
    const jobId = await installWithoutReboot();

    expect(ws.find(jobId, 'installed')?.current_operation).toBe('pending_reboot');
    const before = await status();
    expect(before.partitions.active).toMatchObject({ id: 'A', version: 'v5.0.4', status: 'healthy' });
    expect(before.partitions.inactive).toMatchObject({ id: 'B', version: 'v5.0.5', next_boot: true });
    expect(before.gateway.last_ota).toBeNull();

    // A pending install holds the gateway: no second update on top of it, and no way back from it.
    const second = await post('/api/v1/ota/download', { update_id: 'update-001' });
    expect(second.status).toBe(409);
    expect(second.body.error.code).toBe('OTA_OPERATION_IN_PROGRESS');
    expect(second.body.error.message).toContain(jobId);
    const cancel = await post('/api/v1/ota/cancel', { job_id: jobId });
    expect(cancel.body.error.code).toBe('OTA_INSTALL_FAILED');
    expect(cancel.body.error.message).toMatch(/installed: past the point of no return/);
    expect((await progress(jobId)).status).toBe('installed');

    expect(await reboot()).toBe('B');
    const done = await until(jobId, 'complete');
    expect(done).toMatchObject({
      status: 'complete',
      error: null,
      progress: { current_operation: 'complete' },
    });
    const after = await status();
    expect(after.gateway.os_version).toBe('v5.0.5');
    expect(after.gateway.last_ota).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    expect(after.partitions.active).toMatchObject({ id: 'B', status: 'healthy' });

    await waitFor(
      () => ws.statuses(jobId).at(-1),
      (s) => s === 'complete',
      'complete over WS',
    );
    expect(ws.statuses(jobId).slice(-4)).toEqual(['installing', 'installed', 'activating', 'complete']);
    expect(
      gantry()
        .deps.jobs.transitions(jobId)
        .map((t) => t.toState),
    ).toEqual([
      'pending',
      'downloading',
      'verifying',
      'downloaded',
      'installing',
      'installed',
      'activating',
      'complete',
    ]);
    // The gateway is free again.
    expect((await get('/api/v1/ota/monitor')).body.data.current_operation).toBe('none');
  });

  it('should end in OTA_INSTALL_FAILED when the new slot fails its boots and the bootloader goes back', async () => {
    const jobId = await installWithoutReboot();
    const failures = await post('/api/v1/dev/simulator/boot-failures', { slot: 'B', count: 10 });
    expect(failures.status, JSON.stringify(failures.body)).toBe(200);

    expect(await reboot()).toBe('A');
    const end = await until(jobId, 'error');
    expect(end.status).toBe('error');
    expect(end.error).toEqual({
      code: 'OTA_INSTALL_FAILED',
      message: 'Slot B did not boot: the bootloader went back to slot A',
    });
    const after = await status();
    expect(after.gateway.last_ota).toBeNull();
    expect(after.gateway.os_version).toBe('v5.0.4');
    expect(after.partitions.active).toMatchObject({ id: 'A', status: 'healthy' });
    await waitFor(
      async () => (await status()).partitions.inactive.status,
      (s) => s === 'invalid',
      'slot B retired',
    );
    // The failed job let go of the gateway: a new download may start.
    const again = await post('/api/v1/ota/download', { update_id: 'update-001' });
    expect(again.status, JSON.stringify(again.body)).toBe(200);
    expect((await until(again.body.data.job_id, 'downloaded')).status).toBe('downloaded');
  });

  it('should still wait after a Gantry restart, and complete at start-up after a reboot that happened while Gantry was down', async () => {
    const jobId = await installWithoutReboot();

    await restart();
    expect(await progress(jobId)).toMatchObject({
      status: 'installed',
      progress: { current_operation: 'pending_reboot' },
      error: null,
    });
    // The restored job holds the gateway again.
    const second = await post('/api/v1/ota/download', { update_id: 'update-001' });
    expect(second.body.error.code).toBe('OTA_OPERATION_IN_PROGRESS');
    expect((await status()).partitions.active.id).toBe('A');

    await restart((device) => device.reboot());
    const done = await until(jobId, 'complete');
    expect(done).toMatchObject({ status: 'complete', error: null });
    const after = await status();
    expect(after.partitions.active).toMatchObject({ id: 'B', version: 'v5.0.5', status: 'healthy' });
    expect(after.gateway.last_ota).not.toBeNull();
  });

  it('should end in OTA_INSTALL_FAILED at start-up when the bootloader fell back while Gantry was down', async () => {
    const jobId = await installWithoutReboot();
    await restart(async (device) => {
      await device.failNextBoots('B', 10);
      await device.reboot();
    });
    const end = await until(jobId, 'error');
    expect(end.error).toEqual({
      code: 'OTA_INSTALL_FAILED',
      message: 'Slot B did not boot: the bootloader went back to slot A',
    });
    const after = await status();
    expect(after.partitions.active).toMatchObject({ id: 'A', version: 'v5.0.4' });
    expect(after.gateway.last_ota).toBeNull();
  });

  it('should try an in-place install like any new slot: installed, then complete once the rewritten slot booted and passed', async () => {
    const jobId = await installWithoutReboot('in-place');
    // The rewritten slot A is staged for a trial boot; the old image still runs until the reboot.
    const before = await status();
    expect(before.partitions.active).toMatchObject({
      id: 'A',
      booted: true,
      next_boot: true,
      status: 'trial',
    });
    expect(before.gateway.last_ota).toBeNull();
    const env = await gantry().deps.gateways.get(GATEWAY)!.device.readBootEnv();
    expect(env).toMatchObject({ bootSlot: 'A', upgradeAvailable: true, bootCount: 0 });

    expect(await reboot()).toBe('A');
    expect(await until(jobId, 'complete')).toMatchObject({ status: 'complete', error: null });
    const after = await status();
    expect(after.gateway.os_version).toBe('v5.0.5');
    expect(after.partitions.active).toMatchObject({ id: 'A', version: 'v5.0.5', status: 'healthy' });
    expect(after.gateway.last_ota).not.toBeNull();
  });
});
