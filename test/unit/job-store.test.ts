import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, type GantryDb } from '../../drizzle/db.js';
import { gateways } from '../../drizzle/schema.js';
import { partitionPersisted } from '../../machines/partition.js';
import { ActorSnapshotStore } from '../../services/actor-snapshots.js';
import type { UpdateJobArtifact } from '../../services/job-records.js';
import { JobStore, MalformedJobError } from '../../services/jobs.js';
import { PartitionHarness } from '../machines/partition-harness.js';
import { makeTempDir } from '../helpers/temp.js';

const GW = 'GW-STORE1';
const open: GantryDb[] = [];

afterEach(() => {
  for (const db of open.splice(0)) db.$client.close();
});

function setup() {
  const db = openDatabase(path.join(makeTempDir('gantry-jobstore-'), 'gantry.db'));
  open.push(db);
  db.insert(gateways).values({ id: GW, model: 'Univa-GW-Pro', createdAt: 1 }).run();
  let now = 1_000;
  const clock = () => now;
  const reported: MalformedJobError[] = [];
  return {
    db,
    jobs: new JobStore(db, clock, (e) => reported.push(e)),
    snapshots: new ActorSnapshotStore(db, clock),
    reported,
    tick: (ms: number) => (now += ms),
  };
}

/** Writes a column behind the store's back: what another version or a hand edit leaves. */
function corrupt(
  db: GantryDb,
  id: string,
  column: 'artifact' | 'progress' | 'request' | 'kind',
  value: string,
) {
  db.$client.prepare(`UPDATE jobs SET ${column} = ? WHERE id = ?`).run(value, id);
}

const MANIFEST = {
  format: 'gantry-bundle-v1' as const,
  version: 'v5.0.10',
  type: 'feature' as const,
  severity: 'medium' as const,
  compatible: ['Univa-GW-Pro'],
  kernel: '6.1.0',
  released: '2026-11-01',
  description: 'test',
  changelog: ['one'],
  payloads: [{ name: 'rootfs.img', kind: 'rootfs' as const, size: 4096, sha256: 'a'.repeat(64) }],
  key_id: 'b'.repeat(16),
};

const ARTIFACT: UpdateJobArtifact = {
  source: {
    kind: 'feed',
    target: {
      path: 'bundles/v5.0.10.bundle',
      length: 8192,
      sha256: 'c'.repeat(64),
      custom: { type: 'feature' },
    },
  },
  update: { id: 'update-001', version: 'v5.0.10' },
  label: null,
  allowDowngrade: false,
  resume: { slotBytes: 1024, payloadOffset: 2048, payloadName: 'rootfs.img' },
  manifest: MANIFEST,
  sha256: null,
  bytes: null,
  slotTouched: true,
};

describe('JobStore', () => {
  it('should give back the JSON columns of each kind typed as they were written', () => {
    const { jobs, tick } = setup();
    jobs.create({
      id: 'OTA-JOB-1',
      gatewayId: GW,
      kind: 'download',
      state: 'pending',
      request: { update_id: 'update-001' },
      artifact: ARTIFACT,
    });
    const stored = jobs.get('OTA-JOB-1');
    expect(stored).toMatchObject({
      kind: 'download',
      state: 'pending',
      request: { update_id: 'update-001' },
      artifact: ARTIFACT,
      progress: null,
    });
    // Narrowed by kind: the artifact is an update job's.
    if (stored?.kind !== 'download') throw new Error('not a download');
    expect(stored.artifact?.resume?.slotBytes).toBe(1024);

    tick(500);
    jobs.update(
      { id: 'OTA-JOB-1', kind: 'download' },
      { artifact: { ...ARTIFACT, resume: null, sha256: 'd'.repeat(64), bytes: 4096 } },
    );
    jobs.transition(
      { id: 'OTA-JOB-1', kind: 'download' },
      { from: 'pending', to: 'error', event: 'TRANSFER_FAILED', context: { bytesDone: 4096 } },
      { errorCode: 'OTA_DOWNLOAD_FAILED', errorMessage: 'feed gone' },
    );
    expect(jobs.get('OTA-JOB-1')).toMatchObject({
      state: 'error',
      errorCode: 'OTA_DOWNLOAD_FAILED',
      errorMessage: 'feed gone',
      artifact: { resume: null, bytes: 4096 },
      finishedAt: 1_500,
    });
    expect(jobs.transitions('OTA-JOB-1').map((t) => [t.fromState, t.toState, t.event, t.context])).toEqual([
      [null, 'pending', 'create', null],
      ['pending', 'error', 'TRANSFER_FAILED', { bytesDone: 4096 }],
    ]);

    const progress = {
      phase: 'copying' as const,
      sourceSlot: 'A' as const,
      version: 'v5.0.9',
      totalBytes: 100,
      bytesDone: 40,
      speedBps: 10,
      startedAt: 1_000,
      copyMs: null,
    };
    jobs.create({
      id: 'snap-001',
      gatewayId: GW,
      kind: 'snapshot',
      state: 'creating',
      request: null,
      progress,
    });
    expect(jobs.list(GW, 'snapshot')[0]?.progress).toEqual(progress);
  });

  it('should refuse to write a column that does not match its kind, and write nothing', () => {
    const { jobs } = setup();
    const bad = { ...ARTIFACT, source: { kind: 'ftp', url: 'x' } } as unknown as UpdateJobArtifact;
    expect(() =>
      jobs.create({
        id: 'OTA-JOB-2',
        gatewayId: GW,
        kind: 'download',
        state: 'pending',
        request: null,
        artifact: bad,
      }),
    ).toThrow(MalformedJobError);
    expect(jobs.get('OTA-JOB-2')).toBeUndefined();
    expect(jobs.transitions('OTA-JOB-2')).toEqual([]);

    jobs.create({ id: 'snap-002', gatewayId: GW, kind: 'snapshot', state: 'creating', request: null });
    expect(() =>
      jobs.update({ id: 'snap-002', kind: 'snapshot' }, { progress: { phase: 'done' } as never }),
    ).toThrow(/snap-002: its stored progress is unreadable \(phase: /);
  });

  it('should refuse a malformed row on read, naming the job and the column, and skip it in lists', () => {
    const { db, jobs, reported } = setup();
    jobs.create({
      id: 'UPLOAD-1',
      gatewayId: GW,
      kind: 'upload',
      state: 'complete',
      request: null,
      artifact: {
        path: '/x.bundle',
        name: 'x.bundle',
        size: 1,
        sha256: 'e'.repeat(64),
        manifest: MANIFEST,
        label: 'v5.0.10',
      },
    });
    jobs.create({ id: 'UPLOAD-2', gatewayId: GW, kind: 'upload', state: 'complete', request: null });
    corrupt(db, 'UPLOAD-2', 'artifact', JSON.stringify({ path: '/y.bundle', size: 'big' }));

    expect(() => jobs.get('UPLOAD-2')).toThrow(MalformedJobError);
    expect(() => jobs.get('UPLOAD-2')).toThrow(/Job UPLOAD-2: its stored artifact is unreadable/);
    expect(jobs.list(GW, 'upload').map((j) => j.id)).toEqual(['UPLOAD-1']);
    expect(reported.map((e) => [e.jobId, e.column])).toEqual([['UPLOAD-2', 'artifact']]);
    // Summaries carry no JSON: the page and the inspector still list it.
    expect(
      jobs
        .recent(GW)
        .map((j) => j.id)
        .sort(),
    ).toEqual(['UPLOAD-1', 'UPLOAD-2']);
    // The sweep still sees the file it names: a row this version cannot read keeps its file.
    expect(
      jobs
        .artifactPaths()
        .map((p) => p.path)
        .sort(),
    ).toEqual(['/x.bundle', '/y.bundle']);

    jobs.create({ id: 'OTA-JOB-3', gatewayId: GW, kind: 'download', state: 'downloading', request: null });
    corrupt(db, 'OTA-JOB-3', 'kind', 'teleport');
    expect(() => jobs.get('OTA-JOB-3')).toThrow(/unknown kind "teleport"/);
    const interrupted = jobs.interrupted([GW]);
    expect(interrupted.jobs).toEqual([]);
    expect(interrupted.malformed.map((m) => [m.row.id, m.error.column])).toEqual([['OTA-JOB-3', 'kind']]);
  });

  it('should write a job change and its statechart snapshot together or not at all', () => {
    const { jobs, snapshots } = setup();
    jobs.create({ id: 'OTA-JOB-4', gatewayId: GW, kind: 'download', state: 'pending', request: null });
    const actor = new PartitionHarness().start();
    expect(() =>
      jobs.transaction(() => {
        snapshots.save(partitionPersisted, 'OTA-JOB-4', GW, actor.getPersistedSnapshot());
        jobs.transition(
          { id: 'OTA-JOB-4', kind: 'download' },
          { from: 'pending', to: 'downloading', event: 'START' },
        );
        throw new Error('power cut');
      }),
    ).toThrow('power cut');
    expect(snapshots.load(partitionPersisted, 'OTA-JOB-4')).toEqual({ status: 'missing' });
    expect(jobs.get('OTA-JOB-4')?.state).toBe('pending');
    expect(jobs.transitions('OTA-JOB-4')).toHaveLength(1);
  });
});

describe('ActorSnapshotStore', () => {
  it('should hand back a snapshot written by the same machine version', () => {
    const { snapshots } = setup();
    const actor = new PartitionHarness().start();
    snapshots.save(partitionPersisted, GW, GW, actor.getPersistedSnapshot());
    const loaded = snapshots.load(partitionPersisted, GW);
    expect(loaded.status).toBe('found');
    if (loaded.status !== 'found') return;
    expect(loaded.snapshot).toEqual(JSON.parse(JSON.stringify(actor.getPersistedSnapshot())));
  });

  it('should refuse a snapshot written by another version of the machine', () => {
    const { snapshots } = setup();
    const actor = new PartitionHarness().start();
    snapshots.save(
      { ...partitionPersisted, version: partitionPersisted.version + 1 },
      GW,
      GW,
      actor.getPersistedSnapshot(),
    );
    expect(snapshots.load(partitionPersisted, GW)).toEqual({
      status: 'refused',
      reason: `written by version ${partitionPersisted.version + 1} of the partition statechart; this Gantry reads version ${partitionPersisted.version}`,
    });
  });

  it('should refuse a snapshot that fails its machine check, saying where', () => {
    const { snapshots } = setup();
    const persisted = new PartitionHarness().start().getPersistedSnapshot() as unknown as { context: object };
    snapshots.save(partitionPersisted, GW, GW, {
      ...persisted,
      context: { ...persisted.context, nextBoot: 'C' },
    });
    const loaded = snapshots.load(partitionPersisted, GW);
    expect(loaded.status).toBe('refused');
    expect(loaded.status === 'refused' && loaded.reason).toMatch(
      /^not a valid partition snapshot \(context\.nextBoot: /,
    );
  });
});
