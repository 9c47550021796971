import fs from 'node:fs';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterEach, describe, expect, it } from 'vitest';
import { EventBus } from '../../core/bus.js';
import { openDatabase, type GantryDb } from '../../drizzle/db.js';
import { GatewayRegistry, type GatewayRuntime } from '../../services/gateways.js';
import { restartJobs, type RestartHooks } from '../../services/job-restart.js';
import { JobStore } from '../../services/jobs.js';
import { LogService } from '../../services/logs.js';
import { SettingsService } from '../../services/settings.js';
import { SnapshotService } from '../../services/snapshots.js';
import { makeTempDir } from '../helpers/temp.js';

/** SnapshotService on a real store and simulated devices, without HTTP. */

const GW_A = 'GW-A1';
const GW_B = 'GW-B2';
const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function setup(opts: { dataDir?: string; retention?: number } = {}) {
  const dataDir = opts.dataDir ?? makeTempDir('gantry-snap-');
  const clock = Date.now;
  const db: GantryDb = openDatabase(path.join(dataDir, 'gantry.db'));
  const gateways = new GatewayRegistry(db, dataDir, clock);
  gateways.load(
    [
      { id: GW_A, model: 'Univa-GW-Pro', timezone: 'UTC' },
      { id: GW_B, model: 'Univa-GW-Pro', timezone: 'UTC' },
    ],
    'simulated',
  );
  const jobs = new JobStore(db, clock);
  const snapshots = new SnapshotService({
    bus: new EventBus(),
    clock,
    gateways,
    jobs,
    settings: new SettingsService(db, clock),
    logs: new LogService(db, new EventBus(), clock),
    retention: opts.retention ?? 5,
  });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await snapshots.stop();
    await gateways.close();
    db.$client.close();
  };
  cleanups.push(close);
  return { dataDir, db, gateways, jobs, snapshots, close, gw: (id = GW_A) => gateways.get(id)! };
}

async function settled(jobs: JobStore, id: string) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const row = jobs.get(id)!;
    if (row.state !== 'creating') return row;
    if (Date.now() > deadline) throw new Error(`${id} still creating`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A slot reader that sends 64 KiB and then holds until released (or destroyed). */
function stall(gw: GatewayRuntime) {
  const original = gw.device.openSlotReader.bind(gw.device);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let sent!: () => void;
  const started = new Promise<void>((r) => (sent = r));
  gw.device.openSlotReader = (slot, range): Readable => {
    const out = new PassThrough();
    void buffer(original(slot, range)).then(async (all) => {
      out.write(all.subarray(0, 64 * 1024));
      sent();
      await gate;
      if (!out.destroyed) out.end(all.subarray(64 * 1024));
    });
    return out;
  };
  return { started, release };
}

describe('SnapshotService', () => {
  it('should number snapshots per gateway, skipping a number another gateway holds', async () => {
    const { snapshots, jobs, gw } = setup();
    const b = await snapshots.create(gw(GW_B), { name: 'b', description: '' }, 'op');
    expect(b.snapshot_id).toBe('snap-001');
    await settled(jobs, 'snap-001');
    const a = await snapshots.create(gw(GW_A), { name: 'a', description: '' }, 'op');
    expect(a.snapshot_id).toBe('snap-002');
    await settled(jobs, 'snap-002');
    const a2 = await snapshots.create(gw(GW_A), { name: 'a2', description: '' }, 'op');
    expect(a2.snapshot_id).toBe('snap-003');
    await settled(jobs, 'snap-003');
    expect(snapshots.list(GW_A).map((s) => s.id)).toEqual(['snap-003', 'snap-002']);
    expect(snapshots.list(GW_B).map((s) => s.id)).toEqual(['snap-001']);
  });

  it('should refuse to snapshot a slot whose bytes do not match its record, and release the lock', async () => {
    const { snapshots, jobs, gw, dataDir } = setup();
    const device = gw().device;
    const record = (await device.slots()).A;
    await device.writeSlotRecord('A', { ...record, sha256: 'f'.repeat(64) });
    const res = await snapshots.create(gw(), { name: 'bad', description: '' }, 'op');
    const row = await settled(jobs, res.snapshot_id);
    expect(row).toMatchObject({ state: 'error', errorCode: 'OTA_INVALID_IMAGE' });
    expect(row.errorMessage).toMatch(/does not hold the image its record describes/);
    expect(fs.readdirSync(path.join(dataDir, 'gateways', GW_A, 'snapshots'))).toEqual([]);
    expect(gw().currentOperation()).toBeNull();
    expect(snapshots.progress(gw(), row)).toMatchObject({
      status: 'error',
      error: { code: 'OTA_INVALID_IMAGE' },
      targetSlot: 'A',
    });
  });

  it('should refuse a gateway whose booted slot holds no image, without a job', async () => {
    const { snapshots, gw, jobs } = setup();
    const record = (await gw().device.slots()).A;
    await gw().device.writeSlotRecord('A', { ...record, state: 'invalid' });
    await expect(snapshots.create(gw(), { name: 'x', description: '' }, 'op')).rejects.toMatchObject({
      gantryCode: 'OTA_INVALID_IMAGE',
    });
    expect(jobs.get('snap-001')).toBeUndefined();
    expect(gw().currentOperation()).toBeNull();
  });

  it('should find the newest snapshot of a version, with or without the "v"', async () => {
    const { snapshots, jobs, gw } = setup();
    for (const name of ['first', 'second']) {
      const res = await snapshots.create(gw(), { name, description: `the ${name}` }, 'op');
      await settled(jobs, res.snapshot_id);
    }
    expect(snapshots.findByVersion(GW_A, 'v5.0.4')).toMatchObject({ id: 'snap-002', name: 'second' });
    expect(snapshots.findByVersion(GW_A, '5.0.4')).toMatchObject({ id: 'snap-002' });
    expect(snapshots.findByVersion(GW_A, 'v5.0.3')).toBeUndefined();
    expect(snapshots.findByVersion(GW_B, 'v5.0.4')).toBeUndefined();
    const entry = snapshots.get(GW_A, 'snap-001')!;
    expect(entry).toMatchObject({ description: 'the first', sourceSlot: 'A', kernel: '6.1.33-LTS' });
    expect(snapshots.readConfig(entry)).toMatchObject({ gateway_id: GW_A, booted_slot: 'A' });
  });

  it('should not list a snapshot whose files are torn or hand-edited', async () => {
    const { snapshots, jobs, gw, dataDir } = setup();
    for (const name of ['one', 'two']) {
      const res = await snapshots.create(gw(), { name, description: '' }, 'op');
      await settled(jobs, res.snapshot_id);
    }
    const root = path.join(dataDir, 'gateways', GW_A, 'snapshots');
    fs.truncateSync(path.join(root, 'snap-001', 'image.img'), 1000);
    fs.writeFileSync(path.join(root, 'snap-002', 'snapshot.json'), '{"id": "snap-002"');
    fs.mkdirSync(path.join(root, 'not-a-snapshot'));
    expect(snapshots.list(GW_A)).toEqual([]);
  });

  it('should delete every snapshot on reset, stopping a copy in progress first', async () => {
    const { snapshots, jobs, gw, dataDir } = setup();
    const done = await snapshots.create(gw(), { name: 'kept-until-reset', description: '' }, 'op');
    await settled(jobs, done.snapshot_id);
    const frozen = stall(gw());
    const res = await snapshots.create(gw(), { name: 'in-flight', description: '' }, 'op');
    await frozen.started;
    await snapshots.reset(GW_A);
    expect(fs.existsSync(path.join(dataDir, 'gateways', GW_A, 'snapshots'))).toBe(false);
    expect(snapshots.list(GW_A)).toEqual([]);
    expect(jobs.get(res.snapshot_id)).toMatchObject({
      state: 'error',
      errorMessage: 'Snapshot cancelled: a factory reset removed all snapshots',
    });
    expect(gw().currentOperation()).toBeNull();
    frozen.release();
  });

  it('should count a snapshot renamed into place before a crash as complete', async () => {
    const first = setup();
    const res = await first.snapshots.create(first.gw(), { name: 'whole', description: '' }, 'op');
    await settled(first.jobs, res.snapshot_id);
    const artifact = first.jobs.get(res.snapshot_id)!.artifact;
    // The crash came between the rename and the store: the row still says creating.
    first.jobs.transition(
      { id: res.snapshot_id, kind: 'snapshot' },
      { from: 'complete', to: 'creating', event: 'test.crash' },
      { artifact: null },
    );
    await first.close();

    const second = setup({ dataDir: first.dataDir });
    const never = () => {
      throw new Error('only snapshot jobs were interrupted');
    };
    const hooks: RestartHooks = {
      resume: { download: never, deploy: never, restore: never, factory: never },
      // Called for every gateway: nothing to undo here.
      undo: {
        configure: () => ({ code: 'INTERNAL_ERROR', message: 'unused' }),
        plugin: () => ({ code: 'INTERNAL_ERROR', message: 'unused' }),
      },
      cleanUp: {
        snapshot: (job) => second.snapshots.afterRestart(job),
        'debug-bundle': never,
        upload: never,
      },
    };
    restartJobs({ jobs: second.jobs, gatewayIds: [GW_A, GW_B], warn: () => undefined }, hooks);
    expect(second.jobs.get(res.snapshot_id)).toMatchObject({ state: 'complete', artifact });
    expect(second.snapshots.list(GW_A).map((s) => s.id)).toEqual([res.snapshot_id]);
  });

  it('should estimate from the last measured copy, else from the assumed rate', async () => {
    const { snapshots, jobs, gw } = setup();
    const res = await snapshots.create(gw(), { name: 'estimate', description: '' }, 'op');
    // 1 MiB at the assumed 100 MiB/s, plus a second of overhead.
    expect(res.estimatedSeconds).toBe(2);
    await settled(jobs, res.snapshot_id);
  });
});
