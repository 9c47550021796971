import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { Component } from '../../bundle/manifest.js';
import { pluginZip } from '../fixtures/zip/zips.js';
import { GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { randomImage, startTestFeed, type TestFeed } from '../helpers/feed.js';
import { freePort, spawnGantry, type GantryProcess } from '../helpers/process.js';
import { tsxChildEnv } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';
import { appComponent, rootfsComponent } from '../helpers/components.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Issue 15: multi-component bundles through the REST API on a real server: a rolling update of
 * rootfs (ab-slot), a PLC firmware through a plugin's component handler, and the application
 * partition (ab-slot of class `app`), one component at a time.
 */

/**
 * A third party's component handler, as the README's protocol describes it: the verb in $1, the
 * payload on stdin for `install`. It keeps the PLC's "firmware" and a log of its calls beside the
 * plugin, fails its health check on a firmware that says BROKEN, hangs in it on one that says HANG, and (for the tests that need to act
 * between two components) waits in `prepare` until a `go` file appears.
 */
const HANDLER = `#!/bin/sh
state="$GANTRY_PLUGIN_DIR/.."
echo "$1 $GANTRY_COMPONENT $GANTRY_COMPONENT_VERSION" >> "$state/calls.log"
case "$1" in
  prepare)
    if [ -f "$state/hold" ]; then
      n=0
      while [ ! -f "$state/go" ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done
    fi ;;
  install) cat > "$state/firmware.new" ;;
  activate) cp "$state/firmware.new" "$state/firmware.active" ;;
  health-check)
    if grep -q HANG "$state/firmware.active"; then sleep 30; fi
    if grep -q BROKEN "$state/firmware.active"; then echo "PLC does not answer" >&2; exit 1; fi ;;
  commit) mv "$state/firmware.new" "$state/firmware.bin" ;;
  rollback) rm -f "$state/firmware.new"; if [ -f "$state/firmware.bin" ]; then cp "$state/firmware.bin" "$state/firmware.active"; else rm -f "$state/firmware.active"; fi ;;
  *) exit 3 ;;
esac
`;

const COMPONENTS: Component[] = [
  rootfsComponent('v5.1.0'),
  {
    name: 'plc',
    version: 'v2.0.0',
    handler: 'plugin',
    target: 'plc-fw',
    payloads: ['plc.bin'],
    order: 2,
    needs_reboot: false,
    requires: [{ component: 'rootfs', min_version: 'v5.1.0' }],
  },
  appComponent('v2.1.0', { rootfsVersion: 'v5.1.0', order: 3, needsReboot: false }),
];

/** The `gantry` CLI against the test server, as an operator runs it. */
function gantryCli(
  args: string[],
  url: string,
  token: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'cli/gantry.ts', ...args], {
    cwd: ROOT,
    env: { ...tsxChildEnv(), GANTRY_SERVER: url, GANTRY_TOKEN: token, GANTRY_GATEWAY: GATEWAY },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => (stdout += String(c)));
  child.stderr.on('data', (c) => (stderr += String(c)));
  child.stdin.end();
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

describe('multi-component bundles: the rolling strategy through REST', () => {
  let feed: TestFeed;
  let g: TestGantry | undefined;
  let token: string;
  let dataDir: string;
  let work: string;
  const children: GantryProcess[] = [];
  const sockets: WebSocket[] = [];

  beforeEach(async () => {
    feed = await startTestFeed();
    dataDir = tempDataDir();
    work = tempDataDir('gantry-components-');
    feed.trustIn(dataDir);
  });
  afterEach(async () => {
    sockets.splice(0).forEach((ws) => ws.terminate());
    // An orphaned handler (its server was killed) waits on `go`: let it end.
    if (fs.existsSync(pluginState())) fs.writeFileSync(path.join(pluginState(), 'go'), '');
    for (const child of children.splice(0)) await child.kill('SIGKILL');
    await g?.stop();
    g = undefined;
    await feed.close();
  });

  const pluginState = () => path.join(dataDir, 'gateways', GATEWAY, 'plugins', 'plc-fw');
  const calls = () =>
    fs
      .readFileSync(path.join(pluginState(), 'calls.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split(' ')[0]);
  const deviceDir = () => path.join(dataDir, 'gateways', GATEWAY, 'device');

  type Client = Pick<GantryProcess, 'request'>;
  const client = (): Client => {
    if (!g) throw new Error('Gantry is not running');
    return g;
  };
  const get = (p: string, c: Client = client()) => c.request('GET', p, { token });
  const post = (p: string, body: unknown, c: Client = client()) => c.request('POST', p, { token, body });
  const progress = async (jobId: string, c?: Client) =>
    (await get(`/api/v1/ota/progress?job_id=${jobId}`, c)).body.data;
  const ended = (jobId: string, c?: Client) =>
    waitFor(
      () => progress(jobId, c),
      (p) => ['complete', 'error', 'cancelled'].includes(p.status),
      `job ${jobId} ended`,
      30_000,
    );

  async function start(opts: { handlerTimeoutSeconds?: number } = {}): Promise<void> {
    g = await startTestGantry({ dataDir, env: feed.env });
    token = await g.login();
    await installPlugin(g.url, opts.handlerTimeoutSeconds);
  }

  async function installPlugin(url: string, timeoutSeconds = 60): Promise<void> {
    const zip = await pluginZip({
      name: 'plc-fw',
      version: '1.0.0',
      extra: {
        'handler.sh': HANDLER,
        'gantry-plugin.json': JSON.stringify({
          kind: 'plugin',
          name: 'plc-fw',
          version: '1.0.0',
          hooks: {},
          component_handler: 'handler.sh',
          timeout_seconds: timeoutSeconds,
        }),
      },
    });
    const form = new FormData();
    form.append('ota_zip_file', new Blob([new Uint8Array(zip)]), 'plc-fw.zip');
    const res = await fetch(`${url}/ota-update`, {
      method: 'POST',
      body: form,
      headers: { authorization: `Bearer ${token}`, 'x-gateway-id': GATEWAY },
    });
    const body = (await res.json()) as { update_id: string };
    expect(res.status).toBe(200);
    await waitFor(
      async () =>
        (await (
          await fetch(`${url}/ota-update-progress/${body.update_id}`, {
            headers: { authorization: `Bearer ${token}`, 'x-gateway-id': GATEWAY },
          })
        ).json()) as { status: string },
      (p) => p.status === 'complete' || p.status === 'error',
      'plugin installed',
    );
  }

  const images = {
    rootfs: randomImage(512 * 1024 + 3),
    app: randomImage(300 * 1024 + 5),
  };

  async function publish(opts: { plc?: string; components?: Component[] } = {}): Promise<void> {
    const plc = path.join(work, 'plc.bin');
    const app = path.join(work, 'app.img');
    fs.writeFileSync(plc, opts.plc ?? 'PLC firmware 2.0.0\n');
    fs.writeFileSync(app, images.app);
    await feed.publish({ version: 'v5.1.0', components: opts.components ?? COMPONENTS }, images.rootfs, {
      extraPayloads: [
        { kind: 'firmware', path: plc, name: 'plc.bin' },
        { kind: 'app', path: app, name: 'app.img' },
      ],
    });
  }

  async function download(c?: Client): Promise<string> {
    expect((await post('/api/v1/ota/check-updates', { force: true }, c)).status).toBe(200);
    const res = await post('/api/v1/ota/download', { update_id: 'update-001' }, c);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body.data.job_id as string;
  }

  async function downloadAndInstall(
    c?: Client,
    strategy: 'rolling' | 'seamless' | 'in-place' = 'rolling',
  ): Promise<string> {
    const jobId = await download(c);
    await waitFor(
      () => progress(jobId, c),
      (p) => p.status === 'downloaded' || p.status === 'error',
      'downloaded',
    );
    const install = await post(
      '/api/v1/ota/install',
      { job_id: jobId, strategy, reboot_after: true, create_snapshot: false },
      c,
    );
    expect(install.status, JSON.stringify(install.body)).toBe(200);
    return jobId;
  }

  /** A Gantry process (for kill -9) whose rolling install committed rootfs and holds in plc's prepare. */
  async function spawnWithPlcHeld(env: Record<string, string>) {
    const port = await freePort();
    const first = await spawnGantry({ dataDir, port, env });
    children.push(first);
    token = await first.login();
    await installPlugin(first.url);
    fs.writeFileSync(path.join(pluginState(), 'hold'), '');
    const jobId = await downloadAndInstall(first);
    await waitFor(
      () => progress(jobId, first),
      (p) => p.progress.current_operation === 'installing plc (2/3)',
      'plc installing',
    );
    return { port, first, jobId };
  }

  /** The `update_progress` operations of a job, in order, from the documented OTA WebSocket. */
  async function watchOperations(url: string): Promise<(jobId: string) => string[]> {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/api/v1/ota/ws`);
    sockets.push(ws);
    const messages: Array<{ type: string; job_id?: string; current_operation?: string }> = [];
    ws.on('message', (raw) => messages.push(JSON.parse(String(raw))));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.send(JSON.stringify({ type: 'auth', token, gateway_id: GATEWAY }));
    await waitFor(
      () => messages.some((m) => m.type === 'auth_ok'),
      (ok) => ok,
      'auth_ok',
    );
    return (jobId) =>
      messages
        .filter((m) => m.type === 'update_progress' && m.job_id === jobId)
        .map((m) => m.current_operation!)
        .filter((op, i, all) => op !== all[i - 1]);
  }

  it('should install rootfs, the PLC firmware and the app one at a time, each activated, checked and committed', async () => {
    await publish();
    await start();
    const operations = await watchOperations(g!.url);
    const jobId = await downloadAndInstall();
    const done = await ended(jobId);
    expect(done.status, JSON.stringify(done)).toBe('complete');

    // rootfs: slot B booted and committed with the new version.
    const status = (await get('/api/v1/ota/status')).body.data;
    expect(status.partitions.active).toMatchObject({ id: 'B', version: 'v5.1.0', status: 'healthy' });
    // Every component's version, beside the documented fields.
    expect(status.components).toEqual([
      expect.objectContaining({ name: 'rootfs', version: 'v5.1.0', slot: 'B', pending_version: null }),
      expect.objectContaining({
        name: 'app',
        version: 'v2.1.0',
        handler: 'ab-slot',
        slot: 'B',
        floor: 'v2.1.0',
      }),
      expect.objectContaining({ name: 'plc', version: 'v2.0.0', handler: 'plugin', target: 'plc-fw' }),
    ]);
    // app: its own A/B pair, the new image on B, B active.
    expect(fs.readFileSync(path.join(deviceDir(), 'slot-app-B.img'))).toEqual(images.app);
    expect(JSON.parse(fs.readFileSync(path.join(deviceDir(), 'slots-app.json'), 'utf8'))).toEqual({
      active: 'B',
    });
    // plc: the handler's verbs in protocol order, its firmware committed.
    expect(calls()).toEqual(['prepare', 'install', 'activate', 'health-check', 'commit']);
    expect(fs.readFileSync(path.join(pluginState(), 'firmware.bin'), 'utf8')).toBe('PLC firmware 2.0.0\n');

    // One component at a time, named with its position, over the WebSocket and in the log.
    const ops = operations(jobId);
    const order = [
      'installing rootfs (1/3)',
      'activating rootfs (1/3)',
      'committing rootfs (1/3)',
      'installing plc (2/3)',
      'committing plc (2/3)',
      'installing app (3/3)',
      'committing app (3/3)',
    ];
    const seen = order.map((op) => ops.indexOf(op));
    expect(
      seen.every((i) => i >= 0),
      JSON.stringify(ops),
    ).toBe(true);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
    const logs = (await get('/api/v1/ota/logs?limit=500')).body.data.logs as Array<{ message: string }>;
    expect(logs.some((l) => l.message === `Job ${jobId}: health_check app (3/3)`)).toBe(true);
    // The staged payloads are gone once the job ended.
    expect(fs.existsSync(path.join(dataDir, 'gateways', GATEWAY, 'components', 'staging', jobId))).toBe(
      false,
    );
    // `gantry status` lists the components beside the slots.
    const cli = await gantryCli(['status'], g!.url, token);
    expect(cli.code, cli.stderr).toBe(0);
    const rows = cli.stdout.split('\n').map((l) => l.trim().split(/\s+/));
    expect(rows).toContainEqual(['COMPONENT', 'VERSION', 'HANDLER', 'TARGET', 'SLOT', 'FLOOR', 'INSTALLING']);
    expect(rows).toContainEqual(['app', 'v2.1.0', 'ab-slot', 'app', 'B', 'v2.1.0', '-']);
    expect(rows.some((r) => r[0] === 'plc' && r[1] === 'v2.0.0' && r[2] === 'plugin')).toBe(true);
  });

  it('should roll back a failing middle component, keep the committed rootfs and never start the app', async () => {
    await publish({ plc: 'PLC firmware BROKEN\n' });
    await start();
    const jobId = await downloadAndInstall();
    const done = await ended(jobId);
    expect(done.status).toBe('error');
    expect(done.error.code).toBe('OTA_INSTALL_FAILED');
    expect(done.error.message).toContain('plc failed at health-check');
    expect(done.error.message).toContain('PLC does not answer');
    expect(done.error.message).toContain('rolled back: plc');
    expect(done.error.message).toContain('kept (committed): rootfs v5.1.0');

    // rootfs needs nothing of plc: it stays committed (the rule), on slot B.
    const status = (await get('/api/v1/ota/status')).body.data;
    expect(status.partitions.active).toMatchObject({ id: 'B', version: 'v5.1.0', status: 'healthy' });
    // plc rolled back through its handler; app never touched (no record, slot A still active).
    expect(calls()).toEqual(['prepare', 'install', 'activate', 'health-check', 'rollback']);
    expect(fs.existsSync(path.join(pluginState(), 'firmware.bin'))).toBe(false);
    expect(status.components.map((c: { name: string }) => c.name)).toEqual(['rootfs', 'plc']);
    expect(status.components[1]).toMatchObject({ version: null, pending_version: null, floor: null });
    expect(fs.existsSync(path.join(deviceDir(), 'slot-app-B.img'))).toBe(false);
  });

  it("should stop a handler verb at the plugin's timeout and roll its component back", async () => {
    await publish({ plc: 'PLC firmware HANG\n' });
    await start({ handlerTimeoutSeconds: 1 });
    const done = await ended(await downloadAndInstall());
    expect(done.status).toBe('error');
    expect(done.error.code).toBe('OTA_INSTALL_FAILED');
    expect(done.error.message).toContain('plc failed at health-check');
    expect(done.error.message).toMatch(/timed out after 1 s/);
    expect(done.error.message).toContain('rolled back: plc');
    expect(calls()).toEqual(['prepare', 'install', 'activate', 'health-check', 'rollback']);
    expect(fs.existsSync(path.join(pluginState(), 'firmware.bin'))).toBe(false);
  });

  it('should wait visibly when an activation is blocked by the interlock and continue by itself when clear', async () => {
    await publish();
    await start();
    fs.writeFileSync(path.join(pluginState(), 'hold'), '');
    const jobId = await downloadAndInstall();
    // The rootfs is committed and plc's prepare holds: the crane starts moving meanwhile.
    await waitFor(
      () => progress(jobId),
      (p) => p.progress.current_operation === 'installing plc (2/3)',
      'plc installing',
    );
    expect((await post('/api/v1/dev/simulator/sensors', { crane_motion: 'moving' })).status).toBe(200);
    fs.writeFileSync(path.join(pluginState(), 'go'), '');
    const blocked = await waitFor(
      () => progress(jobId),
      (p) => p.progress.current_operation.startsWith('waiting_for_safety'),
      'activation blocked',
    );
    expect(blocked.progress.current_operation).toBe('waiting_for_safety: activating plc (2/3)');
    expect(blocked.blocked_by).toContain('crane_motion');
    expect(calls()).toEqual(['prepare', 'install']);

    expect((await post('/api/v1/dev/simulator/sensors', { crane_motion: 'idle' })).status).toBe(200);
    const done = await ended(jobId);
    expect(done.status).toBe('complete');
    expect(calls()).toEqual(['prepare', 'install', 'activate', 'health-check', 'commit']);
  });

  it('should stage every component, reboot once and commit all together (seamless)', async () => {
    await publish();
    await start();
    const jobId = await downloadAndInstall(undefined, 'seamless');
    const done = await ended(jobId);
    expect(done.status, JSON.stringify(done)).toBe('complete');
    const status = (await get('/api/v1/ota/status')).body.data;
    expect(status.components.map((c: { name: string; version: string }) => `${c.name} ${c.version}`)).toEqual(
      ['rootfs v5.1.0', 'app v2.1.0', 'plc v2.0.0'],
    );
    // All installed before any activation; the PLC checked within the new rootfs's boot health check too.
    const plc = calls();
    expect(plc.slice(0, 3)).toEqual(['prepare', 'install', 'activate']);
    expect(plc.at(-1)).toBe('commit');
    expect(plc.filter((v) => v === 'health-check').length).toBeGreaterThanOrEqual(2);
    const logs = (await get('/api/v1/ota/logs?limit=500')).body.data.logs as Array<{ message: string }>;
    expect(logs.filter((l) => l.message.startsWith('Rebooting into slot'))).toHaveLength(1);
  });

  it('should roll every component back, rootfs included, when one fails its check (seamless)', async () => {
    await publish({ plc: 'PLC firmware BROKEN\n' });
    await start();
    const jobId = await downloadAndInstall(undefined, 'seamless');
    const done = await ended(jobId);
    expect(done.status).toBe('error');
    expect(done.error.message).toContain('rootfs failed at health-check');
    expect(done.error.message).toContain('PLC does not answer');
    // The new rootfs never got committed: the bootloader went back to A.
    const status = (await get('/api/v1/ota/status')).body.data;
    expect(status.partitions.active).toMatchObject({ id: 'A', version: 'v5.0.4' });
    expect(JSON.parse(fs.readFileSync(path.join(deviceDir(), 'slots-app.json'), 'utf8'))).toEqual({
      active: 'A',
    });
    expect(calls().at(-1)).toBe('rollback');
    expect(fs.existsSync(path.join(pluginState(), 'firmware.bin'))).toBe(false);
    expect(
      status.components.map((c: { name: string; version: string | null }) => `${c.name} ${c.version}`),
    ).toEqual(['rootfs v5.0.4', 'app null', 'plc null']);
  });

  it('should write each component over its running copy, one at a time (in-place)', async () => {
    await publish();
    await start();
    const jobId = await downloadAndInstall(undefined, 'in-place');
    const done = await ended(jobId);
    expect(done.status, JSON.stringify(done)).toBe('complete');
    const status = (await get('/api/v1/ota/status')).body.data;
    // The running slots were rewritten: rootfs A and app A, no switch to B.
    expect(status.partitions.active).toMatchObject({ id: 'A', version: 'v5.1.0', status: 'healthy' });
    expect(fs.readFileSync(path.join(deviceDir(), 'slot-app-A.img'))).toEqual(images.app);
    expect(fs.existsSync(path.join(deviceDir(), 'slot-app-B.img'))).toBe(false);
    expect(status.components.find((c: { name: string }) => c.name === 'app')).toMatchObject({
      version: 'v2.1.0',
      slot: 'A',
    });
    expect(calls()).toEqual(['prepare', 'install', 'activate', 'health-check', 'commit']);
  });

  it('should refuse a bundle whose constraints cannot hold before a byte is written', async () => {
    const components = COMPONENTS.map((c) =>
      c.name === 'app' ? { ...c, requires: [{ component: 'rootfs', min_version: 'v6.0.0' }] } : c,
    );
    await publish({ components });
    await start();
    const slotB = fs.readFileSync(path.join(deviceDir(), 'slot-B.img'));
    const recordB = fs.readFileSync(path.join(deviceDir(), 'slot-B.status.json'), 'utf8');
    const jobId = await download();
    const done = await ended(jobId);
    expect(done.status).toBe('error');
    expect(done.error.code).toBe('OTA_INVALID_IMAGE');
    expect(done.error.message).toContain('app v2.1.0 needs rootfs >= v6.0.0, has v5.1.0');
    // Nothing written: slot B, its record, the app slots and the staging area untouched.
    expect(fs.readFileSync(path.join(deviceDir(), 'slot-B.img'))).toEqual(slotB);
    expect(fs.readFileSync(path.join(deviceDir(), 'slot-B.status.json'), 'utf8')).toBe(recordB);
    expect(fs.existsSync(path.join(deviceDir(), 'slot-app-B.img'))).toBe(false);
    const staging = path.join(dataDir, 'gateways', GATEWAY, 'components', 'staging');
    expect(fs.existsSync(staging) ? fs.readdirSync(staging) : []).toEqual([]);
  });

  it('should resume at the right component after kill -9 between components', async () => {
    await publish();
    const { port, first, jobId } = await spawnWithPlcHeld(feed.env);
    // rootfs committed, plc held in prepare: the server dies.
    // The handler is running (its prepare logged) when the server dies.
    await waitFor(
      () => fs.existsSync(path.join(pluginState(), 'calls.log')),
      (ok) => ok,
      'prepare started',
    );
    await first.kill('SIGKILL');
    children.splice(children.indexOf(first), 1);
    expect(calls()).toEqual(['prepare']);

    const second = await spawnGantry({ dataDir, port, env: feed.env });
    children.push(second);
    token = await second.login();
    const resumed = await waitFor(
      () => progress(jobId, second),
      (p) => p.progress.current_operation === 'installing plc (2/3)' || p.status === 'error',
      'resumed at plc',
    );
    expect(resumed.status).toBe('installing');
    fs.writeFileSync(path.join(pluginState(), 'go'), '');
    const done = await ended(jobId, second);
    expect(done.status, JSON.stringify(done)).toBe('complete');
    // The rootfs was not installed or rebooted again; plc's steps resumed from its install.
    const status = (await get('/api/v1/ota/status', second)).body.data;
    expect(status.partitions.active).toMatchObject({ id: 'B', version: 'v5.1.0' });
    expect(calls()).toEqual(['prepare', 'prepare', 'install', 'activate', 'health-check', 'commit']);
    const logs = (await get('/api/v1/ota/logs?limit=500', second)).body.data.logs as Array<{
      message: string;
    }>;
    expect(logs.filter((l) => l.message === 'Rebooting into slot B')).toHaveLength(1);
    expect(status.components.map((c: { name: string; version: string }) => `${c.name} ${c.version}`)).toEqual(
      ['rootfs v5.1.0', 'app v2.1.0', 'plc v2.0.0'],
    );
  });

  it('should ask again for a reboot that did not happen when Gantry restarts on the same boot (kill -9)', async () => {
    // The app's activation needs a reboot; that request is accepted but the gateway stays up, and
    // Gantry is killed before its reboot timeout: the next start must not take itself for a boot.
    const components = COMPONENTS.map((c) => (c.name === 'app' ? { ...c, needs_reboot: true } : c));
    await publish({ components });
    const env = { ...feed.env, GANTRY_REBOOT_TIMEOUT_SECONDS: '600' };
    const { port, first, jobId } = await spawnWithPlcHeld(env);
    // The rootfs's reboot is behind us: the app's will be accepted without a reboot.
    expect((await post('/api/v1/dev/simulator/ignored-reboots', { count: 1 }, first)).status).toBe(200);
    fs.writeFileSync(path.join(pluginState(), 'go'), '');
    const logsOf = async (c: Client) =>
      ((await get('/api/v1/ota/logs?limit=500', c)).body.data.logs as Array<{ message: string }>).map(
        (l) => l.message,
      );
    await waitFor(
      () => logsOf(first),
      (m) => m.includes('Rebooting: activating app v2.1.0'),
      'app reboot requested',
    );
    await first.kill('SIGKILL');
    children.splice(children.indexOf(first), 1);

    const second = await spawnGantry({ dataDir, port, env });
    children.push(second);
    token = await second.login();
    const done = await ended(jobId, second);
    expect(done.status, JSON.stringify(done)).toBe('complete');
    const messages = await logsOf(second);
    expect(messages).toContain(
      'The reboot for activating app v2.1.0 did not happen (same boot); asking again (2/3)',
    );
    expect(messages.filter((m) => m === 'Rebooting: activating app v2.1.0')).toHaveLength(2);
    const status = (await get('/api/v1/ota/status', second)).body.data;
    expect(status.components.find((c: { name: string }) => c.name === 'app')).toMatchObject({
      version: 'v2.1.0',
      pending_version: null,
    });
  });

  it('should ask again when the reboot into the new rootfs has not happened within the reboot timeout', async () => {
    await publish();
    g = await startTestGantry({ dataDir, env: { ...feed.env, GANTRY_REBOOT_TIMEOUT_SECONDS: '1' } });
    token = await g.login();
    await installPlugin(g.url);
    expect((await post('/api/v1/dev/simulator/ignored-reboots', { count: 1 })).status).toBe(200);
    const done = await ended(await downloadAndInstall());
    expect(done.status, JSON.stringify(done)).toBe('complete');
    const messages = (
      (await get('/api/v1/ota/logs?limit=500')).body.data.logs as Array<{ message: string }>
    ).map((l) => l.message);
    expect(messages).toContain('The reboot for slot B did not happen (same boot); asking again (2/3)');
    expect(messages.filter((m) => m === 'Rebooting into slot B')).toHaveLength(2);
    const status = (await get('/api/v1/ota/status')).body.data;
    expect(status.partitions.active).toMatchObject({ id: 'B', version: 'v5.1.0' });
  });
});
