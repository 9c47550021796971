import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BootEnv } from '../../device/types.js';
import { GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { randomImage, startTestFeed, type TestFeed } from '../helpers/feed.js';
import { waitFor } from '../helpers/wait.js';

describe('update pipeline and the safety interlock', () => {
  let feed: TestFeed;
  let g: TestGantry;
  let token: string;

  beforeAll(async () => {
    feed = await startTestFeed();
    await feed.publish({ version: 'v5.0.5' }, randomImage(700 * 1024));
    const dataDir = tempDataDir();
    feed.trustIn(dataDir);
    g = await startTestGantry({ dataDir, env: feed.env, transferPolicy: { checkpointMs: 0 } });
    token = await g.login();
    await g.request('POST', '/api/v1/ota/check-updates', { token, body: { force: true } });
  });
  afterAll(async () => {
    await g.stop();
    await feed.close();
  });

  const sensors = (body: Record<string, unknown>) =>
    g.request('POST', '/api/v1/dev/simulator/sensors', { token, body });
  const updateAllowed = async () =>
    (await g.request('GET', '/api/v1/ota/safety', { token })).body.data.update_allowed;
  const progress = async (jobId: string) =>
    (await g.request('GET', `/api/v1/ota/progress?job_id=${jobId}`, { token })).body.data;

  it('should let a download proceed but refuse the install while the crane moves', async () => {
    await sensors({ crane_motion: 'moving' });
    await waitFor(updateAllowed, (v) => v === false, 'blocked');
    const start = await g.request('POST', '/api/v1/ota/download', {
      token,
      body: { update_id: 'update-001' },
    });
    expect(start.status).toBe(200);
    const jobId: string = start.body.data.job_id;
    await waitFor(
      () => progress(jobId),
      (p) => p.status === 'downloaded',
      'downloaded',
    );
    const install = await g.request('POST', '/api/v1/ota/install', { token, body: { job_id: jobId } });
    expect(install.status).toBe(409);
    expect(install.body.error.code).toBe('OTA_UPDATE_BLOCKED');
    expect(install.body.error.message).toMatch(/crane_motion/);
    expect(install.body.error.details.blocking).toEqual(['crane_motion']);
    expect((await progress(jobId)).status).toBe('downloaded');
    await sensors({ crane_motion: 'idle' });
    await waitFor(updateAllowed, (v) => v === true, 'clear');
  });

  it('should refuse a manual deployment while a constraint blocks', async () => {
    const bundle = await feed.publish({ version: 'v5.0.7' }, randomImage(100 * 1024));
    const form = new FormData();
    form.append('file', new Blob([new Uint8Array(fs.readFileSync(bundle))]), 'custom.bundle');
    const res = await fetch(`${g.url}/api/v1/ota/upload/verify`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'x-gateway-id': GATEWAY },
      body: form,
    });
    const verified = (await res.json()) as { data: { file: { name: string; checksum: string } } };
    expect(res.status).toBe(200);
    await sensors({ ups_battery: 12 });
    await waitFor(updateAllowed, (v) => v === false, 'blocked');
    const deploy = await g.request('POST', '/api/v1/ota/upload/deploy', {
      token,
      body: { filename: verified.data.file.name, checksum: verified.data.file.checksum },
    });
    expect(deploy.status).toBe(409);
    expect(deploy.body.error.code).toBe('OTA_UPDATE_BLOCKED');
    expect(deploy.body.error.message).toMatch(/ups_battery/);
    expect(g.deps.jobs.recent(GATEWAY).some((j) => j.kind === 'deploy')).toBe(false);
    await sensors({ ups_battery: 85 });
    await waitFor(updateAllowed, (v) => v === true, 'clear');
  });

  it('should refuse to cancel once installing, wait visibly for safety before rebooting, then continue by itself', async () => {
    const device = g.deps.gateways.get(GATEWAY)!.device;
    const jobId = g.deps.jobs
      .recent(GATEWAY)
      .find((j) => j.kind === 'download' && j.state === 'downloaded')!.id;
    // Hold the install inside `installing` (arming the bootloader waits on a gate) so the test
    // can act while the job is past the point of no return.
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const writeBootEnv = device.writeBootEnv.bind(device);
    let armed = false;
    device.writeBootEnv = async (patch: Partial<BootEnv>) => {
      if (!armed && patch.upgradeAvailable === true) {
        armed = true;
        await gate;
      }
      return writeBootEnv(patch);
    };
    try {
      const install = await g.request('POST', '/api/v1/ota/install', { token, body: { job_id: jobId } });
      expect(install.status, JSON.stringify(install.body)).toBe(200);
      await waitFor(
        () => armed,
        (v) => v,
        'install reached the bootloader',
      );

      const cancel = await g.request('POST', '/api/v1/ota/cancel', { token, body: { job_id: jobId } });
      expect(cancel.status).toBe(500);
      expect(cancel.body.error.code).toBe('OTA_INSTALL_FAILED');
      expect(cancel.body.error.message).toMatch(/point of no return/);

      await sensors({ crane_motion: 'moving' });
      await waitFor(updateAllowed, (v) => v === false, 'blocked');
      open();
      const waiting = await waitFor(
        () => progress(jobId),
        (p) => p.status === 'awaiting_reboot',
        'awaiting_reboot',
      );
      expect(waiting.progress.current_operation).toBe('waiting_for_safety');
      expect(waiting.blocked_by).toEqual(['crane_motion']);
      expect(await device.bootedSlot()).toBe('A');

      await sensors({ crane_motion: 'idle' });
      await waitFor(
        () => progress(jobId),
        (p) => p.status === 'complete',
        'complete',
      );
      await waitFor(
        async () => (await g.request('GET', '/api/v1/ota/status', { token })).body.data.partitions.active,
        (a) => a.id === 'B' && a.status === 'healthy',
        'committed on B',
      );
    } finally {
      open();
      device.writeBootEnv = writeBootEnv;
    }
  });
});
