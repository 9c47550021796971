import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';
import { createActor } from 'xstate';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, type GantryDb } from '../../drizzle/db.js';
import { partitionPersisted } from '../../machines/partition.js';
import { safetyInterlockMachine, safetyInterlockPersisted } from '../../machines/safety-interlock.js';
import { updateJobPersisted } from '../../machines/update-job.js';
import { zipOperationPersisted } from '../../machines/zip-operation.js';
import { ActorSnapshotStore } from '../../services/actor-snapshots.js';
import { JobStore } from '../../services/jobs.js';
import { JOB_INPUT, JobHarness } from '../machines/job-harness.js';
import { PartitionHarness } from '../machines/partition-harness.js';
import { makeTempDir } from '../helpers/temp.js';

/**
 * A data dir written by the schema before actor_snapshots (migrations 0000–0004: statechart
 * snapshots in `machine_snapshots` and `jobs.snapshot`) upgraded by today's openDatabase: every
 * snapshot moves, as version 1 of its machine, and loads; a snapshot job's progress stays readable.
 */

const MIGRATIONS = path.join(import.meta.dirname, '..', '..', 'drizzle', 'migrations');
const LAST_OLD = '0004_maintenance_runs';
const GW = 'GW-OLD001';
const open: Array<{ close(): void }> = [];

afterEach(() => {
  for (const db of open.splice(0)) db.close();
});

/** The migrations folder as it was before this change: the journal cut after LAST_OLD. */
function oldMigrations(dir: string): string {
  const out = path.join(dir, 'migrations');
  fs.mkdirSync(path.join(out, 'meta'), { recursive: true });
  const journal = JSON.parse(fs.readFileSync(path.join(MIGRATIONS, 'meta', '_journal.json'), 'utf8')) as {
    entries: Array<{ tag: string }>;
  };
  const cut = journal.entries.findIndex((e) => e.tag === LAST_OLD);
  expect(cut).toBeGreaterThanOrEqual(0);
  journal.entries = journal.entries.slice(0, cut + 1);
  fs.writeFileSync(path.join(out, 'meta', '_journal.json'), JSON.stringify(journal));
  for (const { tag } of journal.entries)
    fs.copyFileSync(path.join(MIGRATIONS, `${tag}.sql`), path.join(out, `${tag}.sql`));
  return out;
}

function json(value: unknown): string {
  return JSON.stringify(value);
}

describe('upgrading a data dir of the previous store schema', () => {
  it('should move every statechart snapshot to actor_snapshots and keep it loadable', () => {
    const dir = makeTempDir('gantry-upgrade-');
    const file = path.join(dir, 'gantry.db');
    const old = new Database(file);
    migrate(drizzle({ client: old }), { migrationsFolder: oldMigrations(dir) });

    // What the previous version wrote, snapshots taken from the machines themselves.
    const partition = new PartitionHarness().start().getPersistedSnapshot();
    const safety = createActor(safetyInterlockMachine, { input: { now: 1_000 } }).start();
    const safetySnapshot = safety.getPersistedSnapshot();
    safety.stop();
    const h = new JobHarness();
    const download = h.start({ ...JOB_INPUT, jobId: 'OTA-JOB-OLD01' });
    download.send({ type: 'START', at: 2_000 });
    h.liveTransfer().sendBack({ type: 'PROGRESS', bytesDone: 300, speedBps: 10, at: 3_000 });
    const zipSnapshot = {
      status: 'done',
      value: 'complete',
      context: {
        updateId: 'CFG-OLD01',
        gatewayId: GW,
        kind: 'configure',
        zipPath: '/data/uploads/x.upload',
        progress: 100,
        message: 'Operation completed successfully',
        step: 'complete',
        stageDir: '/data/gateways/GW-OLD001/config/.staging-CFG-OLD01',
        manifest: { kind: 'configuration' },
        error: null,
      },
      children: {},
      historyValue: {},
    };
    const progress = {
      phase: 'copying',
      sourceSlot: 'A',
      version: 'v5.0.9',
      totalBytes: 100,
      bytesDone: 50,
      speedBps: 5,
      startedAt: 1_000,
      copyMs: null,
    };
    old.prepare('INSERT INTO gateways (id, model, created_at) VALUES (?, ?, ?)').run(GW, 'Univa-GW-Pro', 1);
    const snap = old.prepare(
      'INSERT INTO machine_snapshots (gateway_id, machine, snapshot, updated_at) VALUES (?, ?, ?, ?)',
    );
    snap.run(GW, 'partition', json(partition), 10);
    snap.run(GW, 'safety', json(safetySnapshot), 11);
    const job = old.prepare(
      'INSERT INTO jobs (id, gateway_id, kind, state, snapshot, request, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    job.run(
      'OTA-JOB-OLD01',
      GW,
      'download',
      'downloading',
      json(download.getPersistedSnapshot()),
      '{}',
      1,
      12,
    );
    job.run('CFG-OLD01', GW, 'configure', 'complete', json(zipSnapshot), '{}', 2, 13);
    job.run('snap-001', GW, 'snapshot', 'creating', json(progress), '{}', 3, 14);
    job.run('debug-20261101-001', GW, 'debug-bundle', 'error', null, '{}', 4, 15);
    old.close();

    const db: GantryDb = openDatabase(file);
    open.push(db.$client);
    const snapshots = new ActorSnapshotStore(db, () => 0);
    const jobs = new JobStore(db, () => 0);

    const loadedPartition = snapshots.load(partitionPersisted, GW);
    expect(loadedPartition).toEqual({ status: 'found', snapshot: JSON.parse(json(partition)) });
    expect(snapshots.load(safetyInterlockPersisted, GW).status).toBe('found');
    const loadedJob = snapshots.load(updateJobPersisted, 'OTA-JOB-OLD01');
    expect(loadedJob.status === 'found' && loadedJob.snapshot.context.bytesDone).toBe(300);
    const loadedZip = snapshots.load(zipOperationPersisted, 'CFG-OLD01');
    expect(loadedZip.status === 'found' && loadedZip.snapshot.context.progress).toBe(100);
    expect(snapshots.stored('partition', GW)).toMatchObject({ version: 1, updatedAt: 10 });
    expect(snapshots.stored('updateJob', 'OTA-JOB-OLD01')).toMatchObject({ version: 1, updatedAt: 12 });

    expect(jobs.get('snap-001')).toMatchObject({ kind: 'snapshot', state: 'creating', progress });
    expect(jobs.get('debug-20261101-001')).toMatchObject({ progress: null, artifact: null });
    // Nothing left of the old layout.
    const tables = db.$client.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{
      name: string;
    }>;
    expect(tables.map((t) => t.name)).not.toContain('machine_snapshots');
    const columns = db.$client.prepare("SELECT name FROM pragma_table_info('jobs')").all() as Array<{
      name: string;
    }>;
    expect(columns.map((c) => c.name)).not.toContain('snapshot');
    expect(db.$client.prepare('PRAGMA foreign_key_check').all()).toEqual([]);
  });
});
