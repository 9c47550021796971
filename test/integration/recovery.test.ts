import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { randomImage, startTestFeed, type TestFeed } from '../helpers/feed.js';
import { waitFor } from '../helpers/wait.js';

const PIN = '482913';

describe('recovery (SECTION 5)', () => {
  let g: TestGantry;
  let feed: TestFeed;
  let token: string;
  let dataDir: string;

  beforeEach(async () => {
    feed = await startTestFeed();
    dataDir = tempDataDir();
    feed.trustIn(dataDir);
    g = await startTestGantry({ dataDir, env: { GANTRY_SAFETY_PIN: PIN } });
    token = await g.login();
  });
  afterEach(async () => {
    await g.stop();
    await feed.close();
  });

  const post = (p: string, body: unknown, t = token) => g.request('POST', p, { token: t, body });
  const device = () => g.deps.gateways.get(GATEWAY)!.device;
  const slotFile = (slot: 'A' | 'B') => path.join(dataDir, 'gateways', GATEWAY, 'device', `slot-${slot}.img`);
  const progress = (jobId: string) => g.request('GET', `/api/v1/ota/progress?job_id=${jobId}`, { token });

  it('should roll back to the other verified slot and boot it after a reboot', async () => {
    const res = await post('/api/v1/ota/recovery/rollback', {
      action: 'rollback_to_b',
      reason: 'Update issues detected',
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ success: true, message: 'Rollback executed successfully' });
    expect(res.body.data).toEqual({
      action: 'rollback_to_b',
      status: 'completed',
      from_partition: 'A',
      to_partition: 'B',
      from_version: 'v5.0.4',
      to_version: 'v5.0.3',
      reboot_required: true,
    });
    expect((await device().readBootEnv()).bootSlot).toBe('B');
    await device().reboot();
    const status = await waitFor(
      () => g.request('GET', '/api/v1/ota/status', { token }),
      (r) => r.body.data.partitions.active.id === 'B',
      'booted on B',
    );
    expect(status.body.data.gateway.os_version).toBe('v5.0.3');
  });

  it('should refuse a rollback to the running slot, to a slot without a verified image, and while the crane moves', async () => {
    const same = await post('/api/v1/ota/recovery/rollback', { action: 'rollback_to_a' });
    expect(same.status).toBe(409);
    expect(same.body.error.code).toBe('OTA_ROLLBACK_FAILED');

    const b = (await device().slots()).B;
    await device().writeSlotRecord('B', { ...b, state: 'invalid', version: null });
    const empty = await post('/api/v1/ota/recovery/rollback', { action: 'rollback_to_b' });
    expect(empty.status).toBe(409);
    expect(empty.body.error.code).toBe('OTA_ROLLBACK_FAILED');
    expect((await device().readBootEnv()).bootSlot).toBe('A');

    await device().writeSlotRecord('B', b);
    const moved = await post('/api/v1/dev/simulator/sensors', { crane_motion: 'moving' });
    expect(moved.status, JSON.stringify(moved.body)).toBe(200);
    await waitFor(
      () => g.request('GET', '/api/v1/ota/safety', { token }),
      (r) => r.body.data.update_allowed === false,
      'blocked',
    );
    const blocked = await post('/api/v1/ota/recovery/rollback', { action: 'rollback_to_b' });
    expect(blocked.status).toBe(409);
    expect(blocked.body.error.code).toBe('OTA_UPDATE_BLOCKED');
    expect(blocked.body.error.message).toMatch(/crane_motion/);
    expect((await device().readBootEnv()).bootSlot).toBe('A');
  });

  it('should allow recovery to admins only', async () => {
    const operator = await g.tokenFor('operator');
    const res = await post('/api/v1/ota/recovery/rollback', { action: 'rollback_to_b' }, operator);
    expect(res.status).toBe(403);
    expect((await device().readBootEnv()).bootSlot).toBe('A');
  });

  it('should restore a snapshot of a version onto the inactive slot and make it the next boot', async () => {
    const snap = await post('/api/v1/ota/snapshot', {
      name: 'pre-update-backup',
      description: 'before restore test',
    });
    expect(snap.status, JSON.stringify(snap.body)).toBe(200);
    await waitFor(
      () => g.request('GET', snap.body.data.progress_url, { token }),
      (r) => r.body.data?.status === 'complete',
      'snapshot complete',
    );
    const onBooted = await post('/api/v1/ota/recovery/restore', { version: 'v5.0.4', target_partition: 'A' });
    expect(onBooted.status).toBe(409);
    expect(onBooted.body.error.code).toBe('OTA_RECOVERY_FAILED');
    const unknown = await post('/api/v1/ota/recovery/restore', { version: 'v4.0.0', target_partition: 'B' });
    expect(unknown.status).toBe(409);

    const res = await post('/api/v1/ota/recovery/restore', { version: 'v5.0.4', target_partition: 'B' });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.message).toBe('OS restoration started');
    expect(res.body.data).toMatchObject({ status: 'restoring', version: 'v5.0.4', target_partition: 'B' });
    expect(res.body.data.job_id).toMatch(/^RESTORE-/);
    // Written and staged, not running yet: the restore waits for the next reboot.
    const installed = await waitFor(
      () => progress(res.body.data.job_id),
      (r) => r.body.data.status === 'installed',
      'restore installed',
    );
    expect(installed.body.data.progress.current_operation).toBe('pending_reboot');
    expect(fs.readFileSync(slotFile('B')).equals(fs.readFileSync(slotFile('A')))).toBe(true);
    expect((await device().slots()).B).toMatchObject({ state: 'bootable', version: 'v5.0.4' });
    expect((await device().readBootEnv()).bootSlot).toBe('B');

    const reboot = await post('/api/v1/dev/simulator/reboot', {});
    expect(reboot.status, JSON.stringify(reboot.body)).toBe(200);
    await waitFor(
      () => progress(res.body.data.job_id),
      (r) => r.body.data.status === 'complete',
      'restore complete after the reboot',
    );
    const status = await g.request('GET', '/api/v1/ota/status', { token });
    expect(status.body.data.partitions.active).toMatchObject({ id: 'B', status: 'healthy' });
  });

  it('should factory reset from an uploaded recovery image with PIN and confirmation, wiping settings', async () => {
    const none = await post('/api/v1/ota/recovery/factory', {
      pin: PIN,
      confirm: true,
      wipe_data: true,
      reason: 'x',
    });
    expect(none.status).toBe(409);
    expect(none.body.error.code).toBe('OTA_RECOVERY_FAILED');

    const bundle = await feed.publish({ version: 'v5.0.2' }, randomImage(512 * 1024));
    const form = new FormData();
    form.append('file', new Blob([new Uint8Array(fs.readFileSync(bundle))]), 'recovery_v5.0.2.bundle');
    const up = await fetch(`${g.url}/api/v1/ota/recovery/upload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'x-gateway-id': GATEWAY },
      body: form,
    });
    const upBody = await up.json();
    expect(up.status, JSON.stringify(upBody)).toBe(200);
    expect(upBody.data).toMatchObject({
      uploaded: true,
      filename: 'recovery_v5.0.2.bundle',
      version: 'v5.0.2',
    });

    await post('/api/v1/ota/settings', { update_strategy: 'rolling', rollback_retries: 5 });
    const unconfirmed = await post('/api/v1/ota/recovery/factory', {
      pin: PIN,
      confirm: false,
      wipe_data: true,
      reason: 'x',
    });
    expect(unconfirmed.status).toBe(400);
    const wrongPin = await post('/api/v1/ota/recovery/factory', {
      pin: '000000',
      confirm: true,
      wipe_data: true,
      reason: 'x',
    });
    expect(wrongPin.status).toBe(403);
    expect(wrongPin.body.error.code).toBe('OTA_INVALID_PIN');
    // Regression (issue 11.5): a malformed PIN is a wrong PIN too, counted with the others.
    const malformedPin = await post('/api/v1/ota/recovery/factory', {
      pin: '48-29',
      confirm: true,
      wipe_data: true,
      reason: 'x',
    });
    expect(malformedPin.status).toBe(403);
    expect(malformedPin.body.error).toMatchObject({
      code: 'OTA_INVALID_PIN',
      details: { attempts_left: 3 },
    });

    const res = await post('/api/v1/ota/recovery/factory', {
      pin: PIN,
      confirm: true,
      wipe_data: true,
      reason: 'System decommissioning',
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.data).toMatchObject({ status: 'started', operation: 'factory_reset' });
    expect(res.body.data.estimated_duration).toMatch(/^\d{2}:\d{2}:\d{2}$/);
    await waitFor(
      () => progress(res.body.data.job_id),
      (r) => r.body.data.status === 'complete',
      'factory complete',
    );
    const status = await waitFor(
      () => g.request('GET', '/api/v1/ota/status', { token }),
      (r) => r.body.data.partitions.active.id === 'B' && r.body.data.partitions.active.status === 'healthy',
      'booted the recovery image',
    );
    expect(status.body.data.gateway.os_version).toBe('v5.0.2');
    const settings = await g.request('GET', '/api/v1/ota/settings', { token });
    expect(settings.body.data).toMatchObject({ update_strategy: 'seamless', rollback_retries: 3 });
    // The audit trail survives a wipe.
    expect(
      g.deps.audit.recent(200).some((a) => a.action === 'recovery.factoryReset' && a.outcome === 'success'),
    ).toBe(true);
  });
});
