import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD, GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { randomImage, startTestFeed, type TestFeed } from '../helpers/feed.js';
import { makeTempDir, tsxChildEnv } from '../helpers/temp.js';

/** The `gantry` CLI run as a child process against a real server and a loopback TUF feed. */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const FAST_POLICY = { retryDelayMs: 10, checkpointMs: 0, checkpointBytes: 256 * 1024 };

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

async function until(what: string, ok: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Serves the first `firstBytes` of a file, the rest only after release(): a download that stays running. */
function gatedResponse(file: string, firstBytes: number) {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let calls = 0;
  const handler = (_req: http.IncomingMessage, res: http.ServerResponse) => {
    calls++;
    const data = fs.readFileSync(file);
    res.writeHead(200, { 'content-length': data.length });
    res.write(data.subarray(0, firstBytes));
    void gate.then(() => res.end(data.subarray(firstBytes)));
  };
  return { handler, release: () => release(), calls: () => calls };
}

describe('gantry CLI', () => {
  let feed: TestFeed;
  let g: TestGantry;
  let configDir: string;
  let bundle: string;

  function start(args: string[], opts: { input?: string; env?: Record<string, string> } = {}): Run {
    const env: NodeJS.ProcessEnv = { ...tsxChildEnv(), GANTRY_SERVER: g.url, GANTRY_CONFIG_DIR: configDir };
    delete env.GANTRY_TOKEN;
    delete env.GANTRY_GATEWAY;
    const child = spawn(process.execPath, ['--import', 'tsx', 'cli/gantry.ts', ...args], {
      cwd: ROOT,
      env: { ...env, ...opts.env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += String(c)));
    child.stderr.on('data', (c) => (stderr += String(c)));
    child.stdin.end(opts.input ?? '');
    const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
      child.on('close', (code) => resolve({ code, stdout, stderr })),
    );
    return { child, stdout: () => stdout, stderr: () => stderr, done };
  }
  const gantry = (args: string[], opts?: { input?: string; env?: Record<string, string> }) =>
    start(args, opts).done;

  beforeAll(async () => {
    feed = await startTestFeed();
    bundle = await feed.publish({ version: 'v5.0.5' }, randomImage(1024 * 1024 + 17));
    const dataDir = tempDataDir();
    feed.trustIn(dataDir);
    g = await startTestGantry({ dataDir, env: feed.env, transferPolicy: FAST_POLICY });
    configDir = makeTempDir('gantry-cli-config-');
  });
  afterAll(async () => {
    await g.stop();
    await feed.close();
  });

  it('should log in with the password on stdin and save the token with mode 0600', async () => {
    const res = await gantry(['login', '--user', 'admin'], { input: `${ADMIN_PASSWORD}\n` });
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/Logged in as admin \(admin\)/);
    const file = path.join(configDir, 'token');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(file, 'utf8').trim()).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
  });

  it('should exit non-zero with the server code for a bad token or a wrong password', async () => {
    const bad = await gantry(['status', '--token', 'not-a-token']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^gantry: AUTH_INVALID_TOKEN: /);
    const json = await gantry(['--json', 'status'], { env: { GANTRY_TOKEN: 'not-a-token' } });
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stderr)).toMatchObject({ error: { code: 'AUTH_INVALID_TOKEN' } });
    const wrong = await gantry(['login', '--password', 'wrong-password']);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/AUTH_INVALID_CREDENTIALS/);
  });

  it('should show slot A booted and next in the status table', async () => {
    const text = await gantry(['status']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^SLOT\s+VERSION\s+STATUS\s+SIZE\s+USED\s+BOOTED\s+NEXT BOOT$/m);
    expect(text.stdout).toMatch(/^A\s+v5\.0\.4\s+healthy\s+\S+\s+\S+\s+yes\s+yes$/m);
    const json = await gantry(['status', '--json']);
    expect(JSON.parse(json.stdout).partitions.active).toMatchObject({ id: 'A', booted: true });
  });

  it("should check the feed and list the feed's update", async () => {
    const check = await gantry(['check']);
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout).toMatch(/1 update\(s\) available/);
    const list = await gantry(['updates']);
    expect(list.stdout).toMatch(/^Feed: http:\/\/127\.0\.0\.1:\d+$/m);
    expect(list.stdout).toMatch(/^update-001\s+v5\.0\.5\s+security\s+critical\s+.*verified\s+yes$/m);
    const json = await gantry(['updates', '--json']);
    expect(JSON.parse(json.stdout).updates[0]).toMatchObject({ id: 'update-001', version: 'v5.0.5' });
  });

  it('should refuse a second download while one runs, and end a waiting download when it is cancelled', async () => {
    const gated = gatedResponse(bundle, 256 * 1024);
    feed.server.overrides.set(feed.targetUrlPath(bundle), gated.handler);
    try {
      const waiting = start(['download', 'update-001', '--wait']);
      await until('the download to reach the feed', () => gated.calls() > 0);
      // Not a terminal: one line per change instead of a bar.
      await until('a live progress line', () => /: downloading \(downloading\) /.test(waiting.stderr()));

      const second = await gantry(['download', 'update-001']);
      expect(second.code).toBe(1);
      const jobId = /^gantry: OTA_OPERATION_IN_PROGRESS: .*\b(OTA-JOB-\w+)/m.exec(second.stderr)?.[1];
      expect(jobId, second.stderr).toBeDefined();

      const progress = await gantry(['progress', jobId!]);
      expect(progress.stdout).toMatch(new RegExp(`^Job ${jobId}: downloading `, 'm'));

      const cancel = await gantry(['cancel', jobId!, '--reason', 'cli test']);
      expect(cancel.code, cancel.stderr).toBe(0);
      expect(cancel.stdout).toMatch(/^Cancelled OTA-JOB-\w+ at [\d.]+%$/m);

      const waited = await waiting.done;
      expect(waited.code).toBe(1);
      expect(waited.stderr).toMatch(/gantry: CANCELLED: Job OTA-JOB-\w+ was cancelled/);
    } finally {
      gated.release();
      feed.server.overrides.delete(feed.targetUrlPath(bundle));
    }
  });

  it('should download with --wait until downloaded, install --no-reboot --wait until installed, complete after the reboot', async () => {
    const download = await gantry(['download', 'update-001', '--wait', '--json']);
    expect(download.code, download.stderr).toBe(0);
    const downloaded = JSON.parse(download.stdout);
    expect(downloaded).toMatchObject({ status: 'downloaded', target_partition: 'B' });
    expect(downloaded.progress.percentage).toBe(100);

    const install = await gantry([
      'install',
      downloaded.job_id,
      '--strategy',
      'seamless',
      '--no-reboot',
      '--wait',
      '--json',
    ]);
    expect(install.code, install.stderr).toBe(0);
    expect(JSON.parse(install.stdout)).toMatchObject({
      job_id: downloaded.job_id,
      status: 'installed',
      progress: { current_operation: 'pending_reboot' },
      error: null,
    });
    const waiting = await gantry(['progress', downloaded.job_id]);
    expect(waiting.stdout).toMatch(
      new RegExp(`^Job ${downloaded.job_id}: installed \\(pending_reboot\\) 100%$`, 'm'),
    );
    expect(waiting.stdout).toMatch(
      /^ {2}activate {2}reboot the gateway: the new image runs from the next boot/m,
    );

    const token = await g.login();
    const reboot = await g.request('POST', '/api/v1/dev/simulator/reboot', { token, body: {} });
    expect(reboot.status, JSON.stringify(reboot.body)).toBe(200);
    const deadline = Date.now() + 15_000;
    let status = '';
    while (status !== 'complete' && Date.now() < deadline) {
      const res = await g.request('GET', `/api/v1/ota/progress?job_id=${downloaded.job_id}`, { token });
      status = res.body.data.status;
      if (status !== 'complete') await new Promise((r) => setTimeout(r, 50));
    }
    const done = await gantry(['progress', downloaded.job_id, '--json']);
    expect(JSON.parse(done.stdout)).toMatchObject({ status: 'complete', error: null });
  });

  it('should upload a bundle, deploy it and wait until it is downloaded', async () => {
    // The reboot into B is committed by a health check shortly after; deploy needs it settled.
    let active = '';
    const deadline = Date.now() + 15_000;
    while (active !== 'B healthy' && Date.now() < deadline) {
      const res = await g.request('GET', '/api/v1/ota/status', { token: await g.login() });
      active = `${res.body.data.partitions.active.id} ${res.body.data.partitions.active.status}`;
      if (active !== 'B healthy') await new Promise((r) => setTimeout(r, 50));
    }
    expect(active).toBe('B healthy');

    const file = await feed.publish({ version: 'v5.0.6' }, randomImage(512 * 1024 + 3));
    const res = await gantry(['upload', file, '--version', 'field-fix', '--deploy', '--wait', '--json']);
    expect(res.code, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout);
    expect(out.upload).toMatchObject({ verified: true, file: { name: path.basename(file) } });
    expect(out.deploy).toMatchObject({ status: 'deploying', target_partition: 'A' });
    expect(out.progress).toMatchObject({ job_id: out.deploy.job_id, status: 'downloaded' });
  });

  it('should report an upload the server refuses with its code', async () => {
    const junk = path.join(configDir, 'junk.bundle');
    fs.writeFileSync(junk, 'not a bundle');
    const res = await gantry(['upload', junk]);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^gantry: OTA_INVALID_IMAGE: /m);
  });

  it('should print live events with watch until Ctrl-C', async () => {
    const watch = start(['watch']);
    await until('the subscription', () => watch.stderr().includes('Watching GW-3920A9'));
    await g.request('POST', '/api/v1/ota/check-updates', { token: await g.login(), body: { force: true } });
    await until('a log line', () => /INFO\s+ota: Update check/.test(watch.stdout()));
    watch.child.kill('SIGINT');
    expect((await watch.done).code).toBe(0);
  });

  it("should drive the simulator's boot failures, the way a demo shows a rollback", async () => {
    const fail = await gantry(['simulator', 'fail-boots', 'B']);
    expect(fail.code, fail.stderr).toBe(0);
    // No count: the gateway's rollback_retries (3 by default), all the boots a trial slot gets.
    expect(fail.stdout).toMatch(/^The next 3 boot\(s\) of slot B will fail/);
    const clear = await gantry(['simulator', 'fail-boots', 'B', '0', '--json']);
    expect(JSON.parse(clear.stdout)).toEqual({ slot: 'B', count: 0 });
    const logs = await g.request('GET', '/api/v1/ota/logs?limit=20', { token: await g.login() });
    const messages: string[] = logs.body.data.logs.map((l: { message: string }) => l.message);
    expect(messages).toContain('Simulator: next 3 boot(s) of slot B will fail');
    expect(messages).toContain('Simulator: next 0 boot(s) of slot B will fail');
    const bad = await gantry(['simulator', 'fail-boots', 'C']);
    expect(bad.code).not.toBe(0);
  });

  it("should fail and clear a slot's self-test through the simulator's control", async () => {
    const device = () => g.deps.gateways.get(GATEWAY)!.device;
    const fail = await gantry(['simulator', 'fail-self-test', 'B']);
    expect(fail.code, fail.stderr).toBe(0);
    expect(fail.stdout).toMatch(/^The self-test of slot B will fail/);
    expect(await device().selfTest('B')).toEqual({ ok: false, reason: expect.stringMatching(/slot B/) });
    expect((await device().selfTest('A')).ok).toBe(true);
    const clear = await gantry(['simulator', 'fail-self-test', 'B', '--clear', '--json']);
    expect(JSON.parse(clear.stdout)).toEqual({ slot: 'B', fails: false });
    expect((await device().selfTest('B')).ok).toBe(true);
  });

  it('should print the log, filtered by level', async () => {
    const res = await gantry(['logs', '--limit', '5', '--level', 'info']);
    expect(res.code, res.stderr).toBe(0);
    const lines = res.stdout.trim().split('\n');
    expect(lines.length).toBe(5);
    for (const line of lines) expect(line).toMatch(/^\d{4}-\d\d-\d\dT\S+Z INFO /);
  });
});
