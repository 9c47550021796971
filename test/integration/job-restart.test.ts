import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { pluginZip } from '../fixtures/zip/zips.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Restart policies and the snapshot store through real restarts (the same data dir, a new server):
 * what the existing suites do not already restart through (update-crash: download; zip-recovery:
 * configure; snapshots-api: snapshot; debug-bundle: debug-bundle).
 */

const running: TestGantry[] = [];

afterEach(async () => {
  for (const g of running.splice(0)) await g.stop();
});

async function start(dataDir: string): Promise<TestGantry> {
  const g = await startTestGantry({ dataDir });
  running.push(g);
  return g;
}

async function stop(g: TestGantry): Promise<void> {
  running.splice(running.indexOf(g), 1);
  await g.stop();
}

/** Edits the stopped server's store behind its back: what a downgrade, a bug or a hand edit leaves. */
function editStore(dataDir: string, sql: string, ...params: unknown[]): void {
  const db = new Database(path.join(dataDir, 'gantry.db'));
  try {
    expect(db.prepare(sql).run(...params).changes).toBe(1);
  } finally {
    db.close();
  }
}

async function logMessages(g: TestGantry, token: string): Promise<string[]> {
  const res = await g.request('GET', '/api/v1/ota/logs?limit=200', { token });
  return (res.body.data.logs as Array<{ message: string }>).map((l) => l.message);
}

/** A restore of the booted slot's snapshot onto slot B, left `installed` (waiting for a reboot). */
async function installedRestore(g: TestGantry, token: string): Promise<string> {
  const post = (p: string, body: unknown) => g.request('POST', p, { token, body });
  const snap = await post('/api/v1/ota/snapshot', { name: 'before', description: '' });
  expect(snap.status, JSON.stringify(snap.body)).toBe(200);
  await waitFor(
    () => g.request('GET', snap.body.data.progress_url, { token }),
    (r) => r.body.data?.status === 'complete',
    'snapshot complete',
  );
  const res = await post('/api/v1/ota/recovery/restore', { version: 'v5.0.4', target_partition: 'B' });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  const jobId: string = res.body.data.job_id;
  await waitFor(
    () => g.request('GET', `/api/v1/ota/progress?job_id=${jobId}`, { token }),
    (r) => r.body.data.status === 'installed',
    'restore installed',
  );
  return jobId;
}

describe('jobs across a restart', () => {
  it('should resume a restore job from its stored snapshot and complete it after the reboot', async () => {
    const dataDir = tempDataDir();
    const g1 = await start(dataDir);
    const jobId = await installedRestore(g1, await g1.login());
    await stop(g1);

    const g2 = await start(dataDir);
    const token = await g2.login();
    const progress = () => g2.request('GET', `/api/v1/ota/progress?job_id=${jobId}`, { token });
    expect((await progress()).body.data).toMatchObject({ status: 'installed', error: null });
    expect(await logMessages(g2, token)).toContain(`Job ${jobId} resumed after restart in state installed`);

    const reboot = await g2.request('POST', '/api/v1/dev/simulator/reboot', { token, body: {} });
    expect(reboot.status, JSON.stringify(reboot.body)).toBe(200);
    await waitFor(progress, (r) => r.body.data.status === 'complete', 'restore complete after the reboot');
  });

  it('should fail a job whose stored snapshot was written by another machine version, and free the gateway', async () => {
    const dataDir = tempDataDir();
    const g1 = await start(dataDir);
    const jobId = await installedRestore(g1, await g1.login());
    await stop(g1);
    editStore(
      dataDir,
      "UPDATE actor_snapshots SET version = 99 WHERE machine = 'updateJob' AND actor_id = ?",
      jobId,
    );

    const g2 = await start(dataDir);
    const token = await g2.login();
    const res = await g2.request('GET', `/api/v1/ota/progress?job_id=${jobId}`, { token });
    expect(res.body.data.status).toBe('error');
    expect(res.body.data.error).toEqual({
      code: 'OTA_INSTALL_FAILED',
      message:
        'Could not resume after restart: its statechart snapshot was refused: written by version 99 of the updateJob statechart; this Gantry reads version 1',
    });
    expect(g2.deps.jobs.transitions(jobId).at(-1)).toMatchObject({
      fromState: 'installed',
      toState: 'error',
      event: 'gantry.restart',
    });
    // Nothing holds the gateway's operation lock for the failed job.
    const snap = await g2.request('POST', '/api/v1/ota/snapshot', {
      token,
      body: { name: 'after', description: '' },
    });
    expect(snap.status, JSON.stringify(snap.body)).toBe(200);
  });

  it.each([
    [
      'written by another version',
      "UPDATE actor_snapshots SET version = 99, snapshot = json_set(snapshot, '$.context.versionFloor', 'v9.9.9') WHERE machine = 'partition'",
    ],
    [
      'failing its check',
      "UPDATE actor_snapshots SET snapshot = json_set(snapshot, '$.context.booted', 'C', '$.context.versionFloor', 'v9.9.9') WHERE machine = 'partition'",
    ],
  ])('should re-derive the A/B state from the device when the stored one is %s', async (_, sql) => {
    const dataDir = tempDataDir();
    const g1 = await start(dataDir);
    expect(g1.deps.partitions.versionFloor(GATEWAY)).toBe('v5.0.4');
    await stop(g1);
    editStore(dataDir, sql);

    const g2 = await start(dataDir);
    const token = await g2.login();
    // The device's truth (slot A booted, running v5.0.4), not the stored floor of v9.9.9.
    expect(g2.deps.partitions.versionFloor(GATEWAY)).toBe('v5.0.4');
    expect(g2.deps.partitions.snapshot(GATEWAY).context).toMatchObject({ booted: 'A', nextBoot: 'A' });
    const refused = (await logMessages(g2, token)).filter((m) =>
      m.startsWith('Stored A/B slot state refused'),
    );
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatch(/; re-read from the device instead$/);
    // Written back as this version's.
    expect(g2.deps.actorSnapshots.stored('partition', GATEWAY)?.version).toBe(1);
    const status = await g2.request('GET', '/api/v1/ota/status', { token });
    expect(status.body.data.partitions.active).toMatchObject({ id: 'A', version: 'v5.0.4' });
  });

  it('should fail an interrupted plugin install on start-up and put the previous plugin version back', async () => {
    const dataDir = tempDataDir();
    const g1 = await start(dataDir);
    const token = await g1.login();
    const form = new FormData();
    form.append('ota_zip_file', new Blob([new Uint8Array(await pluginZip({ version: '1.0.0' }))]), 'p.zip');
    const res = await fetch(`${g1.url}/ota-update`, {
      method: 'POST',
      body: form,
      headers: { authorization: `Bearer ${token}`, 'x-gateway-id': GATEWAY },
    });
    const v1 = (await res.json()) as { update_id: string };
    await g1.deps.zipOps.settled(v1.update_id);
    expect(g1.deps.provisioning.plugins(GATEWAY).map((p) => p.version)).toEqual(['1.0.0']);

    // The process died after swapping version 2.0.0 in, before its job ended.
    const crashed = 'PLG-CRASHED00001';
    g1.deps.jobs.create({
      id: crashed,
      gatewayId: GATEWAY,
      kind: 'plugin',
      state: 'in_progress.running_hooks',
      request: null,
    });
    const root = path.join(dataDir, 'gateways', GATEWAY, 'plugins', 'crane-telemetry');
    fs.renameSync(path.join(root, 'current'), path.join(root, 'previous'));
    fs.mkdirSync(path.join(root, 'current'));
    fs.writeFileSync(
      path.join(root, 'current', 'gantry-plugin.json'),
      JSON.stringify({ kind: 'plugin', name: 'crane-telemetry', version: '2.0.0', hooks: {} }),
    );
    fs.writeFileSync(
      path.join(root, 'current', '.gantry-install.json'),
      JSON.stringify({
        update_id: crashed,
        kind: 'plugin',
        sha256: 'f'.repeat(64),
        installed_at: '2026-01-01T00:00:00Z',
      }),
    );
    expect(g1.deps.provisioning.plugins(GATEWAY).map((p) => p.version)).toEqual(['2.0.0']);
    await stop(g1);

    const g2 = await start(dataDir);
    expect(g2.deps.provisioning.plugins(GATEWAY).map((p) => p.version)).toEqual(['1.0.0']);
    expect(g2.deps.jobs.get(crashed)).toMatchObject({
      state: 'error',
      errorCode: 'OTA_INSTALL_FAILED',
      errorMessage: 'Interrupted by a server restart; the previous version was kept',
    });
    const token2 = await g2.login();
    const progress = await fetch(`${g2.url}/ota-update-progress/${crashed}`, {
      headers: { authorization: `Bearer ${token2}`, 'x-gateway-id': GATEWAY },
    });
    expect(await progress.json()).toMatchObject({ success: false, status: 'error' });
  });
});
