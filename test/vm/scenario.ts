/**
 * `npm run test:vm`: Gantry on its Linux device inside a QEMU VM booted by U-Boot, updated and
 * rolled back through its own REST API (issue 6). Needs root (debootstrap, chroot) and the Debian
 * packages of vm/install-host-packages.sh; see vm/README.md.
 *
 *  1. build: `npm run build`, the Debian root and slot images (cached), a fresh disk per run
 *  2. feed: a TUF repository on the host's loopback with bundle 1 (v5.0.5, a good root file system)
 *  3. boot slot A; from the host (hostfwd): login, settings, check-updates, download to B, install
 *     with reboot; the VM comes back on B on trial, Gantry's health check commits it; /status shows
 *     B booted and committed; a reboot from the console stays on B
 *  4. bundle 2 (v5.0.6, whose Gantry cannot start) to slot A: after `bootlimit` failed boots U-Boot
 *     goes back to B and Gantry reports the rollback with its reason (/status, /logs)
 *
 * Timings go to stdout and test-artifacts/vm/result.json; the serial console (time-stamped) to
 * test-artifacts/vm/console.log. Exit 0 only if every step held.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildBundle } from '../../bundle/build.js';
import { generateKeyPair, parsePrivateKey } from '../../bundle/keys.js';
import { addTarget, initRepository } from '../../feed/repository.js';
import { serveDir, type StaticServer } from '../feed/helpers.js';
import { freePort, Qemu } from './qemu.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CACHE = process.env.GANTRY_VM_CACHE ?? path.join(process.env.HOME ?? '/root', '.cache', 'gantry-vm');
const RUN = path.join(CACHE, 'run');
const ARTIFACTS = path.join(REPO, 'test-artifacts', 'vm');
const GATEWAY = 'GW-QEMU01';
const MODEL = 'Gantry-VM-x86';
const PASSWORD = 'vm-admin-Passw0rd';
/** Boots the trial slot gets (U-Boot's bootlimit = Gantry's rollback_retries). */
const BOOT_LIMIT = 2;
const BOOT_TIMEOUT_MS = 6 * 60_000;

const t0 = Date.now();
const secs = (from = t0) => Math.round((Date.now() - from) / 100) / 10;
const timings: Record<string, number> = {};
const checks: string[] = [];

function say(msg: string): void {
  process.stdout.write(`[vm ${secs().toFixed(1).padStart(6)} s] ${msg}\n`);
}

function check(cond: unknown, what: string, detail?: unknown): void {
  if (!cond) {
    throw new Error(`FAILED: ${what}${detail === undefined ? '' : `\n${JSON.stringify(detail, null, 2)}`}`);
  }
  checks.push(what);
  say(`ok: ${what}`);
}

async function timed<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const start = Date.now();
  const out = await fn();
  timings[name] = secs(start);
  say(`${name}: ${timings[name]} s`);
  return out;
}

function sh(cmd: string, args: string[], opts: { quiet?: boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (!opts.quiet) process.stderr.write(d);
    });
    p.on('error', reject);
    p.on('exit', (code) =>
      code === 0
        ? resolve(out)
        : reject(
            new Error(`${cmd} ${args.join(' ')} exited ${code}\n${err.slice(-3000)}${out.slice(-2000)}`),
          ),
    );
  });
}

// --- the REST API, from the host through hostfwd --------------------------------------------------

interface ApiResponse {
  status: number;
  // The documented envelope; each step checks what it needs.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
}

class Api {
  token = '';
  constructor(private readonly base: string) {}

  async request(method: string, urlPath: string, body?: unknown): Promise<ApiResponse> {
    const res = await fetch(`${this.base}${urlPath}`, {
      method,
      headers: {
        'content-type': 'application/json',
        'x-gateway-id': GATEWAY,
        ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(60_000),
    });
    const text = await res.text();
    let json: unknown = text;
    try {
      json = JSON.parse(text);
    } catch {
      // Not JSON: kept as text for the failure message.
    }
    return { status: res.status, body: json };
  }

  async ok(method: string, urlPath: string, body?: unknown): Promise<ApiResponse> {
    const res = await this.request(method, urlPath, body);
    if (res.status !== 200 || res.body?.success !== true) {
      throw new Error(`${method} ${urlPath} answered ${res.status}: ${JSON.stringify(res.body)}`);
    }
    return res;
  }

  /** Polls the login until Gantry answers (it is down while the VM boots). */
  async waitUp(qemu: Qemu, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      if (qemu.exited) throw new Error('QEMU exited while waiting for Gantry');
      try {
        const res = await this.request('POST', '/api/v1/auth/login', {
          username: 'admin',
          password: PASSWORD,
        });
        if (res.status === 200 && res.body?.data?.token) {
          this.token = res.body.data.token;
          return;
        }
        last = `${res.status} ${JSON.stringify(res.body).slice(0, 300)}`;
      } catch (err) {
        last = (err as Error).message;
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
    throw new Error(`Gantry did not answer within ${timeoutMs / 1000} s (last: ${last})`);
  }

  async waitFor(
    what: string,
    urlPath: string,
    done: (r: ApiResponse) => boolean,
    timeoutMs: number,
    fail?: (r: ApiResponse) => boolean,
  ): Promise<ApiResponse> {
    const deadline = Date.now() + timeoutMs;
    let last: ApiResponse | null = null;
    while (Date.now() < deadline) {
      try {
        last = await this.request('GET', urlPath);
        if (done(last)) return last;
        if (fail?.(last)) break;
      } catch {
        // The VM may be rebooting: try again.
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
    throw new Error(`${what}: not reached (last ${urlPath}: ${JSON.stringify(last?.body)})`);
  }

  status(): Promise<ApiResponse> {
    return this.ok('GET', '/api/v1/ota/status');
  }

  async logs(limit = 100): Promise<Array<{ level: string; message: string; timestamp?: string }>> {
    const res = await this.ok('GET', `/api/v1/ota/logs?limit=${limit}`);
    return res.body.data.logs ?? res.body.data;
  }
}

// --- the feed on the host's loopback -------------------------------------------------------------

interface Feed {
  server: StaticServer;
  publish(version: string, image: string, description: string): Promise<void>;
}

async function startFeed(site: string, kernel: string): Promise<Feed> {
  const dir = path.join(RUN, 'feed');
  const bundles = path.join(RUN, 'bundles');
  fs.mkdirSync(bundles, { recursive: true });
  const tufKey = parsePrivateKey(generateKeyPair().privateKeyPem);
  const vendor = generateKeyPair();
  const signingKey = parsePrivateKey(vendor.privateKeyPem);
  initRepository(dir, { keys: tufKey, expiresDays: 30 });
  const server = await serveDir(dir);
  const port = new URL(server.url).port;
  fs.mkdirSync(site, { recursive: true });
  fs.copyFileSync(path.join(dir, 'root.json'), path.join(site, 'root.json'));
  fs.writeFileSync(path.join(site, 'vendor.pem'), vendor.publicKeyPem);
  // The guest reaches the host's loopback as 10.0.2.2 (QEMU user networking): nothing leaves QEMU.
  fs.writeFileSync(
    path.join(site, 'gantry.env'),
    [
      `GANTRY_ADMIN_PASSWORD=${PASSWORD}`,
      `GANTRY_FEED_URL=http://10.0.2.2:${port}`,
      `GANTRY_FEED_ROOT=/var/lib/gantry/site/root.json`,
      '',
    ].join('\n'),
  );
  return {
    server,
    async publish(version, image, description) {
      const out = path.join(bundles, `gantry-vm-${version}.bundle`);
      await buildBundle({
        manifestFields: {
          version,
          type: 'security',
          severity: 'critical',
          compatible: [MODEL],
          kernel,
          released: new Date().toISOString().slice(0, 10),
          description,
          changelog: [description],
        },
        payloadFiles: [{ kind: 'rootfs', path: image, name: 'rootfs.img' }],
        privateKey: signingKey,
        out,
      });
      await addTarget(dir, out, { keys: tufKey, expiresDays: 30 });
    },
  };
}

// --- the scenario ----------------------------------------------------------------------------------

async function bootAndLogin(
  qemu: Qemu,
  api: Api,
  label: string,
  from: number,
  slot: 'A' | 'B',
): Promise<void> {
  const start = Date.now();
  await qemu.expect(new RegExp(`gantry-vm: booting slot ${slot}`), {
    from,
    timeoutMs: BOOT_TIMEOUT_MS,
    what: `U-Boot booting slot ${slot}`,
  });
  await api.waitUp(qemu, BOOT_TIMEOUT_MS);
  timings[`boot: ${label}`] = secs(start);
  say(`boot: ${label}: Gantry answering after ${timings[`boot: ${label}`]} s`);
}

async function installAndReboot(api: Api, updateVersion: string, target: 'A' | 'B'): Promise<string> {
  const checked = await timed(`check-updates (${updateVersion})`, () =>
    api.ok('POST', '/api/v1/ota/check-updates', { force: true, background: false }),
  );
  check(
    checked.body.data.status === 'completed',
    `check-updates completed (${updateVersion} published)`,
    checked.body,
  );
  const list = await api.ok('GET', '/api/v1/ota/updates');
  const update = (list.body.data.updates as Array<Record<string, unknown>>).find(
    (u) => u.version === updateVersion,
  );
  check(
    update && update.compatible === true && update.signature === 'verified',
    `/updates lists ${updateVersion}, compatible, signature verified`,
    list.body.data,
  );
  const start = await api.ok('POST', '/api/v1/ota/download', {
    update_id: update!.id,
    version: updateVersion,
    target_partition: target,
    background: false,
    verify_signature: true,
  });
  const jobId: string = start.body.data.job_id;
  await timed(`download + verify ${updateVersion} into slot ${target}`, () =>
    api.waitFor(
      `download of ${updateVersion}`,
      `/api/v1/ota/progress?job_id=${jobId}`,
      (r) => r.body?.data?.status === 'downloaded',
      20 * 60_000,
      (r) => ['failed', 'error', 'cancelled'].includes(r.body?.data?.status),
    ),
  );
  const st = await api.status();
  check(
    st.body.data.partitions.inactive.id === target && st.body.data.partitions.inactive.status === 'ready',
    `slot ${target} holds the verified ${updateVersion} (status ready)`,
    st.body.data.partitions,
  );
  const install = await api.ok('POST', '/api/v1/ota/install', {
    job_id: jobId,
    strategy: 'seamless',
    reboot_after: true,
  });
  check(
    install.body.data.next_boot_partition === target,
    `install accepted, next boot ${target}`,
    install.body.data,
  );
  return jobId;
}

async function main(): Promise<void> {
  fs.rmSync(RUN, { recursive: true, force: true });
  fs.mkdirSync(RUN, { recursive: true });
  fs.mkdirSync(ARTIFACTS, { recursive: true });

  // 1. Build.
  await timed('npm run build', () => sh('npm', ['run', 'build'], { quiet: true }));
  await sh('bash', ['vm/install-host-packages.sh']);
  const imagesDir = (
    await timed('slot images (debootstrap root + Gantry), cached by input hash', () =>
      sh('bash', ['vm/build-rootfs.sh']),
    )
  )
    .trim()
    .split('\n')
    .pop()!;
  const kernel = fs.readFileSync(path.join(imagesDir, 'kernel-version'), 'utf8').trim();
  const site = path.join(RUN, 'site');
  const feed = await timed('feed: TUF repository + bundle 1 (v5.0.5)', async () => {
    const f = await startFeed(site, kernel);
    await f.publish(
      'v5.0.5',
      path.join(imagesDir, 'slot-v5.0.5.img'),
      'Gantry VM test: good root file system',
    );
    return f;
  });
  const disk = (
    await timed('disk image', () =>
      sh('bash', ['vm/make-disk.sh', RUN, path.join(imagesDir, 'slot-v5.0.4.img'), site], { quiet: true }),
    )
  )
    .trim()
    .split('\n')
    .pop()!;

  const apiPort = await freePort();
  const qemu = new Qemu({ disk, consoleLog: path.join(ARTIFACTS, 'console.log'), apiPort });
  const api = new Api(`http://127.0.0.1:${apiPort}`);
  const scenarioStart = Date.now();
  try {
    qemu.start();

    // 3. First boot: slot A, the factory image.
    await bootAndLogin(qemu, api, '1 slot A (factory v5.0.4)', 0, 'A');
    let st = await api.status();
    check(
      st.body.data.partitions.active.id === 'A' && st.body.data.partitions.active.status === 'healthy',
      'GET /status: slot A booted and healthy',
      st.body.data,
    );
    check(
      st.body.data.gateway.os_version === 'v5.0.4',
      'os_version v5.0.4 (the factory image)',
      st.body.data.gateway,
    );
    say(`guest: ${await qemu.run('systemctl is-system-running; cat /proc/cmdline; fw_printenv')}`);
    // The VM's load under TCG would block updates (system_load > 0.9 per CPU); auto-update must not
    // race the test; U-Boot's bootlimit comes from rollback_retries.
    await api.ok('POST', '/api/v1/ota/settings', {
      safety: { system_load: false },
      auto_update: { enabled: false },
      rollback_retries: BOOT_LIMIT,
    });

    let mark = qemu.mark();
    const job1 = await installAndReboot(api, 'v5.0.5', 'B');
    const boot2 = await qemu.expect(/gantry-vm: (slot B on trial, boot 1 of \d+)/, {
      from: mark,
      timeoutMs: BOOT_TIMEOUT_MS,
      what: 'U-Boot counting the first trial boot of slot B',
    });
    say(`console: ${boot2[1]}`);
    await bootAndLogin(qemu, api, '2 slot B on trial (v5.0.5)', mark, 'B');
    st = await timed('health check + commit of slot B', () =>
      api.waitFor(
        'slot B committed',
        '/api/v1/ota/status',
        (r) =>
          r.body?.data?.partitions?.active?.id === 'B' && r.body.data.partitions.active.status === 'healthy',
        5 * 60_000,
      ),
    );
    check(true, 'GET /status: slot B booted and committed (healthy) after its health check');
    check(st.body.data.gateway.os_version === 'v5.0.5', 'os_version v5.0.5', st.body.data.gateway);
    check(
      st.body.data.partitions.active.next_boot === true,
      'slot B is the next boot',
      st.body.data.partitions,
    );
    const p1 = await api.ok('GET', `/api/v1/ota/progress?job_id=${job1}`);
    check(p1.body.data.status === 'complete', `job ${job1} complete`, p1.body.data);
    const committedLog = (await api.logs(200)).find((l) =>
      /Slot B \(v5\.0\.5\) passed its health check/.test(l.message),
    );
    check(committedLog, 'GET /logs: slot B passed its health check and is committed', committedLog);
    const env1 = await qemu.run('fw_printenv');
    check(
      /boot_slot=B/.test(env1) && /upgrade_available=0/.test(env1),
      'U-Boot env: boot_slot=B, upgrade_available=0',
      env1,
    );

    // A plain reboot stays on B.
    mark = qemu.mark();
    qemu.type('systemctl reboot');
    await bootAndLogin(qemu, api, '3 slot B again (plain reboot)', mark, 'B');
    check(!/on trial/.test(qemu.since(mark)), 'no trial on the plain reboot');
    st = await api.status();
    check(
      st.body.data.partitions.active.id === 'B' && st.body.data.partitions.active.status === 'healthy',
      'GET /status after a reboot: still B, healthy',
      st.body.data.partitions,
    );

    // 4. Bundle 2: a release whose Gantry cannot start. U-Boot's count runs out and it returns to B.
    await timed('feed: bundle 2 (v5.0.6, broken)', () =>
      feed.publish(
        'v5.0.6',
        path.join(imagesDir, 'slot-v5.0.6-broken.img'),
        'Gantry VM test: Gantry cannot start (a slot device misnamed)',
      ),
    );
    mark = qemu.mark();
    const failedFrom = qemu.boots.length;
    const job2 = await installAndReboot(api, 'v5.0.6', 'A');
    const fallbackStart = Date.now();
    await qemu.expect(/gantry-vm: slot A failed \d+ boots: falling back/, {
      from: mark,
      timeoutMs: (BOOT_LIMIT + 1) * BOOT_TIMEOUT_MS,
      what: 'U-Boot falling back from slot A',
    });
    const tried = qemu.boots.slice(failedFrom).filter((b) => b.slot === 'A').length;
    check(tried === BOOT_LIMIT, `slot A was tried exactly bootlimit=${BOOT_LIMIT} times`, qemu.boots);
    await bootAndLogin(qemu, api, `${4 + BOOT_LIMIT} slot B after the fallback`, qemu.mark() - 200, 'B');
    timings[`bundle 2: install → ${BOOT_LIMIT} failed boots → back on B with Gantry up`] =
      secs(fallbackStart);
    st = await api.status();
    check(
      st.body.data.partitions.active.id === 'B' && st.body.data.partitions.active.status === 'healthy',
      'GET /status after the fallback: B booted, healthy, committed',
      st.body.data.partitions,
    );
    check(
      st.body.data.partitions.active.next_boot === true,
      'slot B stays the next boot',
      st.body.data.partitions,
    );
    const logs = await api.logs(200);
    const rollback = logs.find((l) => /Rolled back from slot A to slot B/.test(l.message));
    check(rollback, 'GET /logs reports the rollback from A to B with its reason', logs.slice(0, 30));
    say(`rollback log: ${rollback!.level}: ${rollback!.message}`);
    say(`slot A after the fallback: ${JSON.stringify(st.body.data.partitions.inactive)}`);
    check(
      st.body.data.partitions.inactive.id === 'A' && st.body.data.partitions.inactive.status === 'invalid',
      'slot A, which failed its trial, is marked invalid (not ready, no rollback target)',
      st.body.data.partitions,
    );
    const p2 = await api.request('GET', `/api/v1/ota/progress?job_id=${job2}`);
    say(`job ${job2} (v5.0.6) after the fallback: ${JSON.stringify(p2.body.data ?? p2.body)}`);
    check(
      p2.body.data?.status === 'error' && p2.body.data.error?.code === 'OTA_INSTALL_FAILED',
      `job ${job2} ends in error: slot A did not boot`,
      p2.body.data ?? p2.body,
    );
    const env2 = await qemu.run('fw_printenv');
    check(
      /boot_slot=B/.test(env2) && /upgrade_available=0/.test(env2),
      'U-Boot env: boot_slot=B, upgrade_available=0',
      env2,
    );
    timings['scenario (first boot → rollback reported)'] = secs(scenarioStart);
  } catch (err) {
    say(`console tail:\n${qemu.tail(6000)}`);
    try {
      const logs = await api.logs(40);
      say(`Gantry logs:\n${logs.map((l) => `${l.level}: ${l.message}`).join('\n')}`);
    } catch {
      // Gantry is not reachable: the console tail is all there is.
    }
    throw err;
  } finally {
    await qemu.stop();
    await feed.server.close();
    const boots = qemu.boots.map((b, i) => ({
      boot: i + 1,
      at_s: Math.round(b.at),
      slot: b.slot,
      trial: b.trial,
      took_s: Math.round((qemu.boots[i + 1]?.at ?? qemu.elapsed()) - b.at),
    }));
    const result = { timings, boots, checks, total_s: secs() };
    fs.writeFileSync(path.join(ARTIFACTS, 'result.json'), JSON.stringify(result, null, 2));
    say(`boots:\n${boots.map((b) => `  ${JSON.stringify(b)}`).join('\n')}`);
    say(
      `timings:\n${Object.entries(timings)
        .map(([k, v]) => `  ${k}: ${v} s`)
        .join('\n')}`,
    );
  }
}

main().then(
  () => {
    say(`${checks.length} passed, 0 failed (VM A/B update and rollback) in ${secs()} s`);
    process.exit(0);
  },
  (err: Error) => {
    say(err.stack ?? err.message);
    say(`${checks.length} passed, 1 failed`);
    process.exit(1);
  },
);
