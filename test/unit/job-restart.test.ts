import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { GantryError } from '../../core/errors.js';
import { JOB_KINDS, RESTART_POLICY, type JobKind } from '../../core/job-kinds.js';
import { openDatabase, type GantryDb } from '../../drizzle/db.js';
import { gateways } from '../../drizzle/schema.js';
import { restartJobs, type RestartHooks } from '../../services/job-restart.js';
import { JobStore, type StoredJob } from '../../services/jobs.js';
import { makeTempDir } from '../helpers/temp.js';

/**
 * The restart policies, kind by kind: every kind's unfinished job reaches exactly the hook its
 * declared policy (core/job-kinds.ts RESTART_POLICY) calls for, and ends as that policy says.
 * The hooks themselves (what resuming, undoing or cleaning up does) are tested through real
 * restarts: test/integration/job-restart.test.ts, update-crash, zip-recovery, snapshots-api,
 * debug-bundle.
 */

const GW = 'GW-RESTART1';
const GONE = 'GW-REMOVED9';
const open: GantryDb[] = [];

afterEach(() => {
  for (const db of open.splice(0)) db.$client.close();
});

function setup() {
  const db = openDatabase(path.join(makeTempDir('gantry-restart-'), 'gantry.db'));
  open.push(db);
  for (const id of [GW, GONE]) db.insert(gateways).values({ id, model: 'Univa-GW-Pro', createdAt: 1 }).run();
  const jobs = new JobStore(db, () => 5_000);
  return { db, jobs };
}

/** Hooks that record who was called with what, and answer as each policy's hooks do. */
function recordingHooks(opts: { failResume?: JobKind } = {}) {
  const calls: Array<[string, string, string[]]> = [];
  const resume = (job: StoredJob) => {
    calls.push(['resume', job.kind, [job.id]]);
    if (job.kind === opts.failResume) throw new GantryError('OTA_INSTALL_FAILED', 'snapshot refused');
  };
  const undo = (kind: string) => (gatewayId: string, jobs: StoredJob[]) => {
    calls.push(['undo', `${kind}@${gatewayId}`, jobs.map((j) => j.id)]);
    return { code: 'OTA_INSTALL_FAILED' as const, message: `${kind} undone` };
  };
  const hooks: RestartHooks = {
    resume: { download: resume, deploy: resume, restore: resume, factory: resume },
    undo: { configure: undo('configure'), plugin: undo('plugin') },
    cleanUp: {
      snapshot: (job) => {
        calls.push(['cleanUp', job.kind, [job.id]]);
        return { state: 'complete', progress: job.progress };
      },
      'debug-bundle': (job) => {
        calls.push(['cleanUp', job.kind, [job.id]]);
        return { state: 'error', failure: { code: 'INTERNAL_ERROR', message: 'bundle interrupted' } };
      },
      upload: (job) => {
        calls.push(['cleanUp', job.kind, [job.id]]);
        return { state: 'error', failure: { code: 'INTERNAL_ERROR', message: 'upload interrupted' } };
      },
    },
  };
  return { calls, hooks };
}

function unfinishedOfEveryKind(jobs: JobStore) {
  for (const kind of JOB_KINDS) {
    jobs.create({ id: `${kind}-1`, gatewayId: GW, kind, state: 'working', request: null });
  }
}

describe('restart policies', () => {
  it('should declare a policy for every job kind', () => {
    expect(Object.keys(RESTART_POLICY).sort()).toEqual([...JOB_KINDS].sort());
  });

  it.each(JOB_KINDS.map((kind) => [kind, RESTART_POLICY[kind]] as const))(
    'should handle an interrupted %s job by its policy (%s)',
    (kind, policy) => {
      const { jobs } = setup();
      unfinishedOfEveryKind(jobs);
      const { calls, hooks } = recordingHooks();
      const warnings: string[] = [];
      const handle = restartJobs({ jobs, gatewayIds: [GW], warn: (_, m) => warnings.push(m) }, hooks);
      const id = `${kind}-1`;
      const before = handle.resumable.map((j) => j.id);

      if (policy === 'resume') {
        // Untouched until the machines it waits on run; then handed to its runner.
        expect(before).toContain(id);
        expect(jobs.get(id)?.state).toBe('working');
        expect(calls.some(([hook, k]) => hook === 'resume' && k === kind)).toBe(false);
        handle.resume();
        expect(calls).toContainEqual(['resume', kind, [id]]);
        expect(jobs.get(id)?.state).toBe('working');
      } else if (policy === 'fail-and-undo') {
        expect(before).not.toContain(id);
        expect(calls).toContainEqual(['undo', `${kind}@${GW}`, [id]]);
        expect(jobs.get(id)).toMatchObject({
          state: 'error',
          errorCode: 'OTA_INSTALL_FAILED',
          errorMessage: `${kind} undone`,
        });
      } else {
        expect(before).not.toContain(id);
        expect(calls).toContainEqual(['cleanUp', kind, [id]]);
        expect(jobs.get(id)?.state).toBe(kind === 'snapshot' ? 'complete' : 'error');
      }
      // Whatever the policy, only its own hook saw the job.
      expect(calls.filter(([, , ids]) => ids.includes(id))).toHaveLength(1);
      if (policy !== 'resume') {
        expect(jobs.transitions(id).at(-1)).toMatchObject({ fromState: 'working', event: 'gantry.restart' });
      }
      expect(warnings).toEqual([]);
    },
  );

  it('should call every undo hook for every gateway, interrupted jobs or not (half-done swaps)', () => {
    const { jobs } = setup();
    const { calls, hooks } = recordingHooks();
    restartJobs({ jobs, gatewayIds: [GW], warn: () => undefined }, hooks);
    expect(calls).toEqual([
      ['undo', `configure@${GW}`, []],
      ['undo', `plugin@${GW}`, []],
    ]);
  });

  it('should fail a job that cannot resume with its error, and warn', () => {
    const { jobs } = setup();
    jobs.create({ id: 'RESTORE-1', gatewayId: GW, kind: 'restore', state: 'downloading', request: null });
    const { hooks } = recordingHooks({ failResume: 'restore' });
    const warnings: string[] = [];
    restartJobs({ jobs, gatewayIds: [GW], warn: (_, m) => warnings.push(m) }, hooks).resume();
    expect(jobs.get('RESTORE-1')).toMatchObject({
      state: 'error',
      errorCode: 'OTA_INSTALL_FAILED',
      errorMessage: 'Could not resume after restart: snapshot refused',
    });
    expect(warnings).toEqual(['Job RESTORE-1: Could not resume after restart: snapshot refused']);
  });

  it('should fail an unfinished row it cannot read, whatever its kind, without calling a hook', () => {
    const { db, jobs } = setup();
    jobs.create({ id: 'OTA-JOB-9', gatewayId: GW, kind: 'download', state: 'downloading', request: null });
    db.$client.prepare('UPDATE jobs SET artifact = ? WHERE id = ?').run('{"source":42}', 'OTA-JOB-9');
    const { calls, hooks } = recordingHooks();
    const warnings: string[] = [];
    const handle = restartJobs({ jobs, gatewayIds: [GW], warn: (_, m) => warnings.push(m) }, hooks);
    handle.resume();
    expect(calls.filter(([hook]) => hook !== 'undo')).toEqual([]);
    expect(jobs.recent(GW)[0]).toMatchObject({
      id: 'OTA-JOB-9',
      state: 'error',
      errorCode: 'INTERNAL_ERROR',
    });
    expect(warnings[0]).toMatch(
      /^Job OTA-JOB-9 could not be settled after a restart: .*artifact is unreadable/,
    );
  });

  it('should leave the jobs of a gateway no longer configured as they are', () => {
    const { jobs } = setup();
    jobs.create({
      id: 'CFG-GONE',
      gatewayId: GONE,
      kind: 'configure',
      state: 'in_progress.applying',
      request: null,
    });
    const { calls, hooks } = recordingHooks();
    restartJobs({ jobs, gatewayIds: [GW], warn: () => undefined }, hooks).resume();
    expect(jobs.get('CFG-GONE')?.state).toBe('in_progress.applying');
    expect(calls.some(([, , ids]) => ids.includes('CFG-GONE'))).toBe(false);
  });
});
