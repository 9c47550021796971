import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { configurationZip, pluginZip } from '../fixtures/zip/zips.js';

const OTHER = 'GW-7781B2';
const env = { GANTRY_GATEWAYS: `${GATEWAY},${OTHER}` };
const running: TestGantry[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const g of running.splice(0)) await g.stop();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

async function start(dataDir: string): Promise<TestGantry> {
  const g = await startTestGantry({ dataDir, env });
  running.push(g);
  return g;
}

async function stop(g: TestGantry): Promise<void> {
  running.splice(running.indexOf(g), 1);
  await g.stop();
}

async function upload(g: TestGantry, route: string, zip: Buffer, token: string, gateway = GATEWAY) {
  const form = new FormData();
  form.append('ota_zip_file', new Blob([new Uint8Array(zip)]), 'archive.zip');
  const res = await fetch(g.url + route, {
    method: 'POST',
    body: form,
    headers: { authorization: `Bearer ${token}`, 'x-gateway-id': gateway },
  });
  return (await res.json()) as { update_id: string };
}

async function progress(g: TestGantry, id: string, token: string, gateway = GATEWAY) {
  const res = await fetch(`${g.url}/ota-update-progress/${id}`, {
    headers: { authorization: `Bearer ${token}`, 'x-gateway-id': gateway },
  });
  return res.json();
}

function unfinishedJob(g: TestGantry, id: string, gatewayId: string) {
  g.deps.jobs.create({ id, gatewayId, kind: 'configure', state: 'in_progress.applying', request: null });
}

describe('ZIP operations across restarts', () => {
  it('should fail an interrupted operation on start-up and put the previous configuration back', async () => {
    const dataDir = tempDataDir();
    dirs.push(dataDir);
    const g1 = await start(dataDir);
    const token = await g1.login();
    const v1 = await upload(g1, '/ota-configure', (await configurationZip()).zip, token);
    await g1.deps.zipOps.settled(v1.update_id);
    const v1b = await upload(g1, '/ota-configure', (await configurationZip()).zip, token, OTHER);
    await g1.deps.zipOps.settled(v1b.update_id);
    const version = g1.deps.provisioning.configurationVersion(GATEWAY);
    const versionOther = g1.deps.provisioning.configurationVersion(OTHER);
    const feed = g1.deps.provisioning.feed(GATEWAY);
    const settingsBefore = g1.deps.settings.get(GATEWAY);

    // GATEWAY: the process died after swapping a new configuration in and applying its settings.
    const root = path.join(dataDir, 'gateways', GATEWAY, 'config');
    const crashed = 'CFG-CRASHED00001';
    unfinishedJob(g1, crashed, GATEWAY);
    fs.renameSync(path.join(root, 'current'), path.join(root, 'previous'));
    fs.mkdirSync(path.join(root, 'current'));
    fs.writeFileSync(
      path.join(root, 'current', 'gantry-config.json'),
      JSON.stringify({ kind: 'configuration', settings: { update_strategy: 'rolling' } }),
    );
    fs.writeFileSync(
      path.join(root, 'current', '.gantry-install.json'),
      JSON.stringify({
        update_id: crashed,
        kind: 'configure',
        sha256: 'f'.repeat(64),
        installed_at: '2026-01-01T00:00:00Z',
        settings_before: settingsBefore,
      }),
    );
    g1.deps.settings.update(GATEWAY, { update_strategy: 'rolling' });

    // OTHER: the process died between "current → previous" and "staging → current".
    const otherRoot = path.join(dataDir, 'gateways', OTHER, 'config');
    const halfway = 'CFG-HALFWAY00001';
    unfinishedJob(g1, halfway, OTHER);
    fs.renameSync(path.join(otherRoot, 'current'), path.join(otherRoot, 'previous'));
    fs.mkdirSync(path.join(otherRoot, `.staging-${halfway}`));

    await stop(g1);
    const g2 = await start(dataDir);
    const token2 = await g2.login();

    expect(await progress(g2, crashed, token2)).toEqual({
      success: false,
      status: 'error',
      progress: 0,
      message: 'Operation failed',
      error: 'Interrupted by a server restart; the previous version was kept',
    });
    expect(g2.deps.provisioning.configurationVersion(GATEWAY)).toBe(version);
    expect(g2.deps.provisioning.feed(GATEWAY)).toEqual(feed);
    expect(g2.deps.settings.get(GATEWAY).update_strategy).toBe(settingsBefore.update_strategy);
    const transitions = g2.deps.jobs.transitions(crashed);
    expect(transitions.map((t) => [t.fromState, t.toState, t.event])).toEqual([
      [null, 'in_progress.applying', 'create'],
      ['in_progress.applying', 'error', 'gantry.restart'],
    ]);

    expect((await progress(g2, halfway, token2, OTHER)).status).toBe('error');
    expect(g2.deps.provisioning.configurationVersion(OTHER)).toBe(versionOther);
    expect(fs.readdirSync(otherRoot)).toEqual(['current']);
  });

  it('should kill a running hook on shutdown, roll the plugin back and report the operation failed', async () => {
    const dataDir = tempDataDir();
    dirs.push(dataDir);
    const g1 = await start(dataDir);
    const token = await g1.login();
    const pidFile = path.join(dataDir, 'hook.pid');
    let started!: () => void;
    const hookStarted = new Promise<void>((resolve) => (started = resolve));
    const unsubscribe = g1.deps.provisioning.terminal.subscribe(GATEWAY, (l) => {
      if (l.line === 'started') started();
    });
    const op = await upload(
      g1,
      '/ota-update',
      await pluginZip({
        name: 'long-runner',
        hooks: { 'post-install': `echo $$ > ${pidFile}; echo started; sleep 300` },
        timeoutSeconds: 600,
      }),
      token,
    );
    await hookStarted;
    unsubscribe();
    await stop(g1);

    const pid = Number(fs.readFileSync(pidFile, 'utf8'));
    expect(() => process.kill(pid, 0)).toThrow();
    const g2 = await start(dataDir);
    const out = await progress(g2, op.update_id, await g2.login());
    expect(out).toMatchObject({ success: false, status: 'error', error: 'Server shutting down' });
    expect(g2.deps.provisioning.plugins(GATEWAY)).toEqual([]);
  });
});
