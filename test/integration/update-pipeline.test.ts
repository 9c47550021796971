import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { randomImage, startTestFeed, type TestFeed } from '../helpers/feed.js';
import { waitFor } from '../helpers/wait.js';

const FAST_POLICY = { retryDelayMs: 10, checkpointMs: 0, checkpointBytes: 256 * 1024 };

describe('update pipeline: feed → download → verify → install → reboot → commit', () => {
  let feed: TestFeed;
  let g: TestGantry;
  let token: string;
  const image = randomImage(3 * 1024 * 1024 + 123);

  beforeAll(async () => {
    feed = await startTestFeed();
    await feed.publish({ version: 'v5.0.5' }, image);
    const dataDir = tempDataDir();
    feed.trustIn(dataDir);
    g = await startTestGantry({ dataDir, env: feed.env, transferPolicy: FAST_POLICY });
    token = await g.login();
  });
  afterAll(async () => {
    await g.stop();
    await feed.close();
  });

  const progress = (jobId: string) => g.request('GET', `/api/v1/ota/progress?job_id=${jobId}`, { token });

  it("should list the feed's update after a check, with computed compatibility and signature", async () => {
    const check = await g.request('POST', '/api/v1/ota/check-updates', {
      token,
      body: { force: true, background: false },
    });
    expect(check.status).toBe(200);
    expect(check.body.data).toMatchObject({
      status: 'completed',
      server: feed.server.url,
      total_available: 1,
    });
    expect(check.body.data.check_id).toMatch(/^check-\d{8}-/);
    const list = await g.request('GET', '/api/v1/ota/updates', { token });
    expect(list.status).toBe(200);
    expect(list.body.data.total_available).toBe(1);
    expect(list.body.data.updates[0]).toMatchObject({
      id: 'update-001',
      version: 'v5.0.5',
      type: 'security',
      severity: 'critical',
      signature: 'verified',
      compatible: true,
      changelog: ['Fixed CVE-2025-1234'],
    });
  });

  it('should refuse to download onto the booted slot', async () => {
    const res = await g.request('POST', '/api/v1/ota/download', {
      token,
      body: { update_id: 'update-001', target_partition: 'A' },
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('VALIDATION_ERROR');
  });

  it('should stream the bundle onto slot B, verify it, install it, reboot and commit', async () => {
    const start = await g.request('POST', '/api/v1/ota/download', {
      token,
      body: {
        update_id: 'update-001',
        version: 'v5.0.5',
        target_partition: 'B',
        background: false,
        verify_signature: true,
      },
    });
    expect(start.status).toBe(200);
    expect(start.body.data).toMatchObject({
      status: 'downloading',
      target_partition: 'B',
      update: { id: 'update-001', version: 'v5.0.5' },
    });
    const jobId: string = start.body.data.job_id;
    expect(jobId).toMatch(/^OTA-JOB-/);
    expect(start.body.data.progress_url).toBe(`/api/v1/ota/progress?job_id=${jobId}`);

    const done = await waitFor(
      () => progress(jobId),
      (r) => r.body.data?.status === 'downloaded',
      'downloaded',
    );
    expect(done.body.data.progress.percentage).toBe(100);
    expect(done.body.data.progress.current_operation).toBe('awaiting_install');

    const device = g.deps.gateways.get(GATEWAY)!.device;
    const slotFile = path.join(g.dataDir, 'gateways', GATEWAY, 'device', 'slot-B.img');
    expect(fs.readFileSync(slotFile).equals(image)).toBe(true);
    expect((await device.slots()).B).toMatchObject({ state: 'bootable', version: 'v5.0.5' });

    const status1 = await g.request('GET', '/api/v1/ota/status', { token });
    expect(status1.body.data.partitions.inactive).toMatchObject({
      id: 'B',
      version: 'v5.0.5',
      status: 'ready',
    });

    const install = await g.request('POST', '/api/v1/ota/install', {
      token,
      body: { job_id: jobId, strategy: 'seamless', reboot_after: true, create_snapshot: true },
    });
    expect(install.body, JSON.stringify(install.body)).toMatchObject({ success: true });
    expect(install.status).toBe(200);
    expect(install.body.data).toMatchObject({
      job_id: jobId,
      status: 'installing',
      strategy: 'seamless',
      target_partition: 'B',
      reboot_after: true,
      next_boot_partition: 'B',
    });

    await waitFor(
      () => progress(jobId),
      (r) => r.body.data?.status === 'complete',
      'complete',
    );
    const status2 = await waitFor(
      () => g.request('GET', '/api/v1/ota/status', { token }),
      (r) => r.body.data.partitions.active.id === 'B' && r.body.data.partitions.active.status === 'healthy',
      'slot B committed',
    );
    expect(status2.body.data.gateway.os_version).toBe('v5.0.5');
    expect(status2.body.data.gateway.last_ota).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    expect(status2.body.data.partitions.inactive).toMatchObject({ id: 'A', version: 'v5.0.4' });
    expect(await device.readBootEnv()).toMatchObject({
      bootSlot: 'B',
      upgradeAvailable: false,
      bootCount: 0,
    });

    // create_snapshot: the running slot (A, v5.0.4) was copied before the install touched anything.
    const snapshots = await g.request('GET', '/api/v1/ota/snapshots', { token });
    expect(snapshots.body.data.snapshots ?? snapshots.body.data).toEqual(
      expect.arrayContaining([expect.objectContaining({ version: 'v5.0.4' })]),
    );

    const history = g.deps.jobs.transitions(jobId).map((t) => t.toState);
    // awaiting_reboot is passed through at once when no safety constraint blocks the reboot.
    expect(history).toEqual([
      'pending',
      'downloading',
      'verifying',
      'downloaded',
      'installing',
      'rebooting',
      // Back from the reboot: complete only once the health check committed slot B.
      'activating',
      'complete',
    ]);
  });
});
