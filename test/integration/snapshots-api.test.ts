import fs from 'node:fs';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterEach, describe, expect, it } from 'vitest';
import type { SlotId } from '../../device/types.js';
import { GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies off the wire */

const SNAPSHOTS = (g: TestGantry) => path.join(g.dataDir, 'gateways', GATEWAY, 'snapshots');

async function until<T>(probe: () => Promise<T | undefined> | T | undefined, what: string): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Polls the snapshot's progress_url until it reports `status`. */
async function progressUntil(g: TestGantry, token: string, url: string, status: string): Promise<any> {
  return until(async () => {
    const res = await g.request('GET', url, { token });
    expect(res.status).toBe(200);
    return res.body.data.status === status ? res.body.data : undefined;
  }, `${url} to report ${status}`);
}

async function slotImage(g: TestGantry, slot: SlotId): Promise<Buffer> {
  const device = g.deps.gateways.get(GATEWAY)!.device;
  const record = (await device.slots())[slot];
  return buffer(device.openSlotReader(slot, { start: 0, end: record.imageBytes - 1 }));
}

/**
 * Replaces the device's slot reader with one that hands over the first 64 KiB and then waits
 * for `release()`: a copy frozen mid-way, deterministically (no timing involved).
 */
function stallSlotReader(g: TestGantry) {
  const device = g.deps.gateways.get(GATEWAY)!.device;
  const original = device.openSlotReader.bind(device);
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let firstSent!: () => void;
  const started = new Promise<void>((resolve) => (firstSent = resolve));
  device.openSlotReader = (slot, range): Readable => {
    const out = new PassThrough();
    const source = original(slot, range);
    void (async () => {
      const all = await buffer(source);
      out.write(all.subarray(0, 64 * 1024));
      firstSent();
      await gate;
      if (!out.destroyed) out.end(all.subarray(64 * 1024));
    })();
    return out;
  };
  return { started, release, restore: () => (device.openSlotReader = original) };
}

describe('snapshots over HTTP', () => {
  const running: TestGantry[] = [];
  afterEach(async () => {
    for (const g of running.splice(0)) await g.stop();
  });

  async function start(opts: { dataDir?: string; env?: Record<string, string> } = {}) {
    const g = await startTestGantry(opts);
    running.push(g);
    return g;
  }

  async function snapshot(g: TestGantry, token: string, name: string, description = '') {
    return g.request('POST', '/api/v1/ota/snapshot', { token, body: { name, description } });
  }

  it('should copy the booted slot image and the configuration, and report progress to complete', async () => {
    const g = await start();
    const operator = await g.tokenFor('operator');
    const viewer = await g.tokenFor('viewer');
    const res = await snapshot(g, operator, 'pre-update-backup', 'Snapshot before security update');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      success: true,
      message: 'Snapshot creation started',
      data: {
        snapshot_id: 'snap-001',
        status: 'creating',
        progress_url: '/api/v1/ota/progress?snapshot_id=snap-001',
      },
    });
    expect(res.body.data.estimated_duration).toMatch(/^\d{2}:\d{2}:\d{2}$/);

    // A viewer may follow the progress.
    const done = await progressUntil(g, viewer, res.body.data.progress_url, 'complete');
    expect(done).toMatchObject({
      status: 'complete',
      job_id: 'snap-001',
      progress: { percentage: 100, current_operation: 'complete', downloaded: '1 MB', total: '1 MB' },
      update: { id: null, version: 'v5.0.4' },
      target_partition: 'A',
      error: null,
      blocked_by: [],
    });
    expect(done.elapsed_time).toMatch(/^\d{2}:\d{2}:\d{2}$/);

    const dir = path.join(SNAPSHOTS(g), 'snap-001');
    const image = fs.readFileSync(path.join(dir, 'image.img'));
    expect(image.equals(await slotImage(g, 'A'))).toBe(true);
    const slots = await g.deps.gateways.get(GATEWAY)!.device.slots();
    const meta = JSON.parse(fs.readFileSync(path.join(dir, 'snapshot.json'), 'utf8'));
    expect(meta).toMatchObject({
      id: 'snap-001',
      gateway_id: GATEWAY,
      name: 'pre-update-backup',
      description: 'Snapshot before security update',
      version: 'v5.0.4',
      kernel: '6.1.33-LTS',
      source_partition: 'A',
      size: image.length,
      sha256: slots.A.sha256,
    });
    expect(meta.created_at).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    expect(config.settings).toEqual(g.deps.settings.get(GATEWAY));
    expect(config.slots.A).toMatchObject({ version: 'v5.0.4', sha256: slots.A.sha256 });
    expect(config.slots.B).toMatchObject({ version: 'v5.0.3' });
    expect(config.boot_env).toMatchObject({ bootSlot: 'A' });
    expect(config.booted_slot).toBe('A');
    // Nothing staged is left behind, and the lock is free again.
    expect(fs.readdirSync(SNAPSHOTS(g))).toEqual(['snap-001']);
    expect(g.deps.gateways.get(GATEWAY)!.currentOperation()).toBeNull();

    const list = await g.request('GET', '/api/v1/ota/snapshots', { token: viewer });
    expect(list.status).toBe(200);
    expect(list.body).toMatchObject({
      success: true,
      message: 'Snapshots retrieved successfully',
      data: {
        total: 1,
        retention: 5,
        snapshots: [
          {
            id: 'snap-001',
            name: 'pre-update-backup',
            version: 'v5.0.4',
            source_partition: 'A',
            size: '1 MB',
            size_bytes: image.length,
            checksum: `sha256:${slots.A.sha256}`,
            created_at: meta.created_at,
          },
        ],
      },
    });

    // What the recovery code reads.
    const entry = g.deps.snapshots.findByVersion(GATEWAY, '5.0.4');
    expect(entry).toMatchObject({
      id: 'snap-001',
      version: 'v5.0.4',
      size: image.length,
      sha256: slots.A.sha256,
    });
    expect(fs.readFileSync(entry!.imagePath).equals(image)).toBe(true);
    expect(g.deps.snapshots.findByVersion(GATEWAY, 'v5.0.3')).toBeUndefined();

    // Ids are sequential per gateway.
    const second = await snapshot(g, operator, 'second');
    expect(second.body.data.snapshot_id).toBe('snap-002');
    await progressUntil(g, operator, second.body.data.progress_url, 'complete');
    expect(g.deps.snapshots.list(GATEWAY).map((s) => s.id)).toEqual(['snap-002', 'snap-001']);
    expect(g.deps.snapshots.findByVersion(GATEWAY, 'v5.0.4')!.id).toBe('snap-002');
  });

  it('should keep only the newest GANTRY_SNAPSHOT_RETENTION snapshots', async () => {
    const g = await start({ env: { GANTRY_SNAPSHOT_RETENTION: '2' } });
    const operator = await g.tokenFor('operator');
    for (const name of ['one', 'two', 'three']) {
      const res = await snapshot(g, operator, name);
      expect(res.status).toBe(200);
      await progressUntil(g, operator, res.body.data.progress_url, 'complete');
    }
    const list = await g.request('GET', '/api/v1/ota/snapshots', { token: operator });
    expect(list.body.data.snapshots.map((s: any) => [s.id, s.name])).toEqual([
      ['snap-003', 'three'],
      ['snap-002', 'two'],
    ]);
    expect(list.body.data.retention).toBe(2);
    expect(fs.existsSync(path.join(SNAPSHOTS(g), 'snap-001'))).toBe(false);
    const logs = await g.request('GET', '/api/v1/ota/logs?limit=500', { token: operator });
    expect(logs.body.data.logs.map((l: any) => l.message)).toContainEqual(
      expect.stringMatching(/^Snapshot snap-001 "one" \(v5\.0\.4\) deleted: only the newest 2 are kept/),
    );
  });

  it('should answer 409 OTA_OPERATION_IN_PROGRESS while another operation holds the gateway', async () => {
    const g = await start();
    const operator = await g.tokenFor('operator');
    const gw = g.deps.gateways.get(GATEWAY)!;
    const release = gw.beginOperation({ kind: 'test', id: 'x' }, Date.now());
    const refused = await snapshot(g, operator, 'blocked');
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({ code: 'OTA_OPERATION_IN_PROGRESS' });
    release();

    // A snapshot in progress holds the lock itself: a second one (or anything mutating) waits.
    const stall = stallSlotReader(g);
    const first = await snapshot(g, operator, 'slow');
    expect(first.status).toBe(200);
    await stall.started;
    const during = await progressUntil(g, operator, first.body.data.progress_url, 'creating');
    expect(during.progress.current_operation).toBe('copying_partition_a');
    const monitor = await g.request('GET', '/api/v1/ota/monitor', { token: operator });
    expect(monitor.body.data).toMatchObject({ system_status: 'snapshot' });
    const second = await snapshot(g, operator, 'second');
    expect(second.status).toBe(409);
    expect(second.body.error.code).toBe('OTA_OPERATION_IN_PROGRESS');
    expect(() => gw.beginOperation({ kind: 'install', id: 'y' }, Date.now())).toThrow(/snapshot snap-001/);

    stall.release();
    await progressUntil(g, operator, first.body.data.progress_url, 'complete');
    expect(gw.currentOperation()).toBeNull();
    const image = fs.readFileSync(path.join(SNAPSHOTS(g), 'snap-001', 'image.img'));
    stall.restore();
    expect(image.equals(await slotImage(g, 'A'))).toBe(true);
  });

  it('should mark a snapshot interrupted by a restart as failed and remove its partial copy', async () => {
    const dataDir = tempDataDir();
    const first = await start({ dataDir });
    const operator = await first.tokenFor('operator');
    const stall = stallSlotReader(first);
    const res = await snapshot(first, operator, 'interrupted');
    expect(res.status).toBe(200);
    await stall.started;
    const staging = path.join(SNAPSHOTS(first), '.staging-snap-001');
    // The copy is under way: its file exists (its first bytes may still be in the writer's block).
    await until(
      () => fs.existsSync(path.join(staging, 'image.img')) || undefined,
      'the partial image on disk',
    );
    await first.stop();
    running.splice(running.indexOf(first), 1);
    // The stop left what a power cut leaves: an unfinished job and a partial copy.
    expect(fs.existsSync(staging)).toBe(true);

    const second = await start({ dataDir });
    expect(fs.existsSync(staging)).toBe(false);
    expect(fs.readdirSync(SNAPSHOTS(second))).toEqual([]);
    const progress = await second.request('GET', res.body.data.progress_url, { token: operator });
    expect(progress.status).toBe(200);
    expect(progress.body.data).toMatchObject({
      status: 'error',
      job_id: 'snap-001',
      target_partition: 'A',
      error: { code: 'INTERNAL_ERROR' },
    });
    expect(progress.body.data.error.message).toMatch(
      /^Snapshot interrupted: Gantry stopped \(restart or power loss\) while copying partition a at 6\.3%; the partial copy was removed/,
    );
    expect(progress.body.data.progress.downloaded).toBe('64 KB');
    const list = await second.request('GET', '/api/v1/ota/snapshots', { token: operator });
    expect(list.body.data.snapshots).toEqual([]);
    // The lock did not survive the restart: a new snapshot runs, with the next id.
    const again = await snapshot(second, operator, 'again');
    expect(again.body.data.snapshot_id).toBe('snap-002');
    await progressUntil(second, operator, again.body.data.progress_url, 'complete');
  });

  it('should refuse bad input with 400 VALIDATION_ERROR naming the field', async () => {
    const g = await start();
    const operator = await g.tokenFor('operator');
    const cases: Array<[unknown, string]> = [
      [{}, 'name'],
      [{ name: '' }, 'name'],
      [{ name: 'has space' }, 'name'],
      [{ name: 'x'.repeat(65) }, 'name'],
      [{ name: '../etc' }, 'name'],
      [{ name: 'ok', description: 'd'.repeat(501) }, 'description'],
      [{ name: 'ok', description: 42 }, 'description'],
      [{ name: 'ok', extra: true }, 'extra'],
    ];
    for (const [body, field] of cases) {
      const res = await g.request('POST', '/api/v1/ota/snapshot', { token: operator, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe('VALIDATION_ERROR');
      expect(res.body.error.details.fields[0].field).toBe(field);
    }
    const noBody = await g.request('POST', '/api/v1/ota/snapshot', { token: operator });
    expect(noBody.status).toBe(400);
    expect(fs.existsSync(SNAPSHOTS(g))).toBe(false);
  });

  it('should let viewers list but not create snapshots', async () => {
    const g = await start();
    const viewer = await g.tokenFor('viewer');
    const res = await snapshot(g, viewer, 'nope');
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('FORBIDDEN');
    expect((await g.request('GET', '/api/v1/ota/snapshots', { token: viewer })).status).toBe(200);
    expect((await g.request('GET', '/api/v1/ota/snapshots')).status).toBe(401);
    expect((await g.request('POST', '/api/v1/ota/snapshot', { body: { name: 'x' } })).status).toBe(401);
    const audit = g.deps.audit.recent(10).filter((a) => a.action === 'maintenance.createSnapshot');
    expect(audit.map((a) => [a.username, a.outcome, a.detail])).toEqual([
      [null, 'failure', 'AUTH_REQUIRED'],
      [expect.stringMatching(/^viewer-/), 'failure', 'FORBIDDEN'],
    ]);
  });
});
