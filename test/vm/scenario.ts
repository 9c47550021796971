/**
 * `npm run test:vm`: Gantry on its Linux device inside a QEMU VM booted by U-Boot, updated and
 * rolled back through its own REST API (issue 6). Needs root (debootstrap, chroot) and the Debian
 * packages of vm/install-host-packages.sh; see vm/README.md.
 *
 *  1. build: `npm run build`, the Debian root and slot images (cached), the application images, a
 *     fresh disk per run (rootfs and app A/B pairs)
 *  2. feed: a TUF repository on the host's loopback with bundle 1 (v5.0.5, a good root file system,
 *     and the application v2.0.0 for the `app` slot class, which needs rootfs >= v5.0.5)
 *  3. boot slot A (app slot A, the factory app); from the host (hostfwd): login, settings,
 *     check-updates, download to B, install `rolling` (issue 15): rootfs first, the VM comes back on
 *     B on trial, Gantry's health check commits it; then the app is written to app_b, app_slot
 *     switched and the VM rebooted (no trial: the rootfs is committed), the new app mounted and
 *     committed; /status shows B booted and committed and both component versions; a reboot from
 *     the console stays on B
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
import { buildBundle, type PayloadInput } from '../../bundle/build.js';
import { BUNDLE_FORMAT_V2 } from '../../bundle/manifest.js';
import { buildDynamicArtifacts } from '../../delta/dynamic/publish.js';
import { buildHopDelta } from '../../delta/hop/build.js';
import { generateKeyPair, parsePrivateKey } from '../../bundle/keys.js';
import type { Component } from '../../bundle/manifest.js';
import { addTarget, initRepository } from '../../feed/repository.js';
import { serveDir, type StaticServer } from '../feed/helpers.js';
import { freePort, Qemu } from './qemu.js';
import { appComponent, rootfsComponent } from '../helpers/components.js';

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
/** The application on app_a from the factory, and the one bundle 1 brings. */
const FACTORY_APP = 'v1.0.0';
const NEW_APP = 'v2.0.0';

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

  /** One login attempt: null when it worked, else what Gantry answered. */
  async login(): Promise<string | null> {
    const res = await this.request('POST', '/api/v1/auth/login', {
      username: 'admin',
      password: PASSWORD,
    });
    if (res.status === 200 && res.body?.data?.token) {
      this.token = res.body.data.token;
      return null;
    }
    return `${res.status} ${JSON.stringify(res.body).slice(0, 300)}`;
  }

  /** Polls the login until Gantry answers (it is down while the VM boots). */
  async waitUp(qemu: Qemu, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      if (qemu.exited) throw new Error('QEMU exited while waiting for Gantry');
      try {
        const failed = await this.login();
        if (failed === null) return;
        last = failed;
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
        // A reboot in between (a rolling update's) may have ended the session: log in again.
        if (last.status === 401) await this.login();
        else if (done(last)) return last;
        else if (fail?.(last)) break;
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
  /**
   * Signs a bundle of `payloads` (a rootfs image first). With `hopFrom`: format v2 (payloads
   * compressed) with a hop delta from that earlier release's image and the image's chunk index and
   * pack (what repairs the delta's operations whose source the running system changed), written
   * beside the bundle.
   */
  build(
    version: string,
    payloads: PayloadInput[],
    description: string,
    opts?: { components?: Component[]; hopFrom?: { version: string; image: string } },
  ): Promise<string>;
  /** Adds a built bundle (and the artifacts beside it) to the feed as TUF targets. */
  add(bundle: string): Promise<void>;
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
    async build(version, payloads, description, opts = {}) {
      const out = path.join(bundles, `gantry-vm-${version}.bundle`);
      const hop = opts.hopFrom;
      const rootfs = payloads[0];
      let deltas;
      let dynamic;
      if (hop && rootfs && 'path' in rootfs) {
        const base = path.basename(out, '.bundle');
        const chunks = await buildDynamicArtifacts(rootfs.path, {
          indexFile: path.join(bundles, `${base}.gcix`),
          packFile: path.join(bundles, `${base}.pack`),
        });
        dynamic = {
          [rootfs.name ?? path.basename(rootfs.path)]: {
            index: { target: `${base}.gcix`, size: chunks.index.size, sha256: chunks.index.sha256 },
            pack: { target: `${base}.pack`, size: chunks.pack.size, sha256: chunks.pack.sha256 },
          },
        };
        const target = `${path.basename(out, '.bundle')}.from-${hop.version}.hop`;
        const built = await buildHopDelta({
          source: hop.image,
          target: rootfs.path,
          out: path.join(bundles, target),
        });
        say(
          `hop delta ${hop.version} → ${version}: ${built.size} bytes (${built.mode}: ${JSON.stringify(built.ops)}), ` +
            `source sha256 ${built.source.sha256}`,
        );
        deltas = {
          [rootfs.name ?? path.basename(rootfs.path)]: [
            {
              source_sha256: built.source.sha256,
              source_version: hop.version,
              artifact: { target, size: built.size, sha256: built.sha256 },
            },
          ],
        };
      }
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
          ...(opts.components ? { components: opts.components } : {}),
        },
        payloadFiles: payloads,
        privateKey: signingKey,
        out,
        // v2 (compressed): brotli at a low level keeps the build short; the hop path fetches the delta.
        ...(deltas
          ? { format: BUNDLE_FORMAT_V2, compression: 'brotli', compressionLevel: 5, deltas, dynamic }
          : {}),
      });
      return out;
    },
    async add(bundle) {
      await addTarget(dir, bundle, { keys: tufKey, expiresDays: 30 });
    },
  };
}

// --- the scenario ----------------------------------------------------------------------------------

/** What the guest shows of its application: the marker, the mount, U-Boot's app_slot. */
const APP_PROBE = 'cat /opt/app/app-version; grep " /opt/app " /proc/mounts; fw_printenv app_slot';

function appShows(probe: string, version: string, slot: 'A' | 'B'): boolean {
  const device = slot === 'A' ? 'vda5' : 'vda6';
  return (
    new RegExp(`^${version.replace(/\./g, '\\.')}$`, 'm').test(probe) &&
    new RegExp(`^/dev/${device} /opt/app ext4 ro[,\\s]`, 'm').test(probe) &&
    new RegExp(`^app_slot=${slot}$`, 'm').test(probe)
  );
}

async function bootAndLogin(
  qemu: Qemu,
  api: Api,
  label: string,
  from: number,
  slot: 'A' | 'B',
  timeoutMs = BOOT_TIMEOUT_MS,
): Promise<void> {
  const start = Date.now();
  await qemu.expect(new RegExp(`gantry-vm: booting slot ${slot}`), {
    from,
    timeoutMs,
    what: `U-Boot booting slot ${slot}`,
  });
  await api.waitUp(qemu, BOOT_TIMEOUT_MS);
  timings[`boot: ${label}`] = secs(start);
  say(`boot: ${label}: Gantry answering after ${timings[`boot: ${label}`]} s`);
}

async function installAndReboot(
  api: Api,
  updateVersion: string,
  target: 'A' | 'B',
  strategy: 'seamless' | 'rolling',
): Promise<{ jobId: string; downloaded: Record<string, unknown> }> {
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
  const downloaded = await timed(`download + verify ${updateVersion} into slot ${target}`, () =>
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
    strategy,
    reboot_after: true,
  });
  check(
    install.body.data.next_boot_partition === target && install.body.data.strategy === strategy,
    `install (${strategy}) accepted, next boot ${target}`,
    install.body.data,
  );
  return { jobId, downloaded: downloaded.body.data };
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
  const appImage = (version: string) => path.join(RUN, `app-${version}.img`);
  await timed('application images', async () => {
    for (const version of [FACTORY_APP, NEW_APP]) {
      await sh('bash', ['vm/make-app.sh', appImage(version), version], { quiet: true });
    }
  });
  const site = path.join(RUN, 'site');
  // Bundle 1 is multi-component (issue 15): the root file system, then the application, which
  // needs that root file system; each is activated and committed before the next (`rolling`). The
  // app's slot is mounted at boot, so activating it needs a reboot.
  const bundle1Components: Component[] = [
    rootfsComponent('v5.0.5'),
    appComponent(NEW_APP, { rootfsVersion: 'v5.0.5', order: 2, needsReboot: true }),
  ];
  const feed = await timed(`feed: TUF repository + bundle 1 (rootfs v5.0.5 + app ${NEW_APP})`, async () => {
    const f = await startFeed(site, kernel);
    const bundle1 = await f.build(
      'v5.0.5',
      [
        { kind: 'rootfs', path: path.join(imagesDir, 'slot-v5.0.5.img'), name: 'rootfs.img' },
        { kind: 'app', path: appImage(NEW_APP), name: 'app.img' },
      ],
      `Gantry VM test: good root file system and application ${NEW_APP}`,
      { components: bundle1Components },
    );
    await f.add(bundle1);
    return f;
  });
  // Bundle 2 (issue 14): v2, with a hop delta from the v5.0.5 image (what slot B holds once bundle
  // 1 is installed); published later.
  const bundle2Image = path.join(imagesDir, 'slot-v5.0.6-broken.img');
  const bundle2 = timed('bundle 2 (v5.0.6, broken) with a hop delta from v5.0.5, built', () =>
    feed.build(
      'v5.0.6',
      [{ kind: 'rootfs', path: bundle2Image, name: 'rootfs.img' }],
      'Gantry VM test: Gantry cannot start (a slot device misnamed)',
      { hopFrom: { version: 'v5.0.5', image: path.join(imagesDir, 'slot-v5.0.5.img') } },
    ),
  );
  // Built before the VM starts: the ext4 delta's publisher runs debugfs synchronously for minutes,
  // and an event loop blocked that long stops the serial console being read (a fast app
  // activation reboot then went unseen and the scenario waited for a boot that had happened).
  await bundle2;
  const disk = (
    await timed('disk image', () =>
      sh(
        'bash',
        ['vm/make-disk.sh', RUN, path.join(imagesDir, 'slot-v5.0.4.img'), site, appImage(FACTORY_APP)],
        { quiet: true },
      ),
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
    const app0 = await qemu.run(APP_PROBE);
    check(
      appShows(app0, FACTORY_APP, 'A'),
      `app slot A mounted at /opt/app with the factory app ${FACTORY_APP}, app_slot=A`,
      app0,
    );
    // The VM's load under TCG would block updates (system_load > 0.9 per CPU); auto-update must not
    // race the test; U-Boot's bootlimit comes from rollback_retries.
    await api.ok('POST', '/api/v1/ota/settings', {
      safety: { system_load: false },
      auto_update: { enabled: false },
      rollback_retries: BOOT_LIMIT,
    });

    let mark = qemu.mark();
    const { jobId: job1 } = await installAndReboot(api, 'v5.0.5', 'B', 'rolling');
    const boot2 = await qemu.expect(/gantry-vm: (slot B on trial, boot 1 of \d+)/, {
      from: mark,
      timeoutMs: BOOT_TIMEOUT_MS,
      what: 'U-Boot counting the first trial boot of slot B',
    });
    say(`console: ${boot2[1]}`);
    const rootfsBoot = qemu.boots.length;
    await qemu.expect(/gantry-vm: booting slot B/, { from: mark, timeoutMs: BOOT_TIMEOUT_MS });
    // Whatever U-Boot prints from here on is the next boot: the app's activation reboot. It can come
    // seconds after Gantry starts on the trial boot (the health check commits the rootfs, the small
    // app image is written at once), before this host's first /status answers: marked now, not
    // after that answer (a mark taken then missed the app's whole boot in two runs).
    const appMark = qemu.mark();
    await bootAndLogin(qemu, api, '2 slot B on trial (rootfs v5.0.5, app still A)', mark, 'B');
    check(
      qemu.boots[rootfsBoot - 1]?.app === 'A',
      'the rootfs trial boot keeps app slot A (one component at a time)',
      qemu.boots,
    );
    // Rolling: once the health check has committed rootfs, the app goes to app_b, app_slot is
    // switched and the gateway reboots into it (on the committed rootfs: no trial).
    await timed(`health check + commit of slot B, then app ${NEW_APP} installed and activated`, () =>
      // The rootfs health check (up to GANTRY_SELF_TEST_TIMEOUT_SECONDS), the app's install, a boot.
      bootAndLogin(
        qemu,
        api,
        `3 slot B, app slot B (app ${NEW_APP} activated)`,
        appMark,
        'B',
        2 * BOOT_TIMEOUT_MS,
      ),
    );
    check(
      qemu.boots[qemu.boots.length - 1]?.app === 'B',
      'U-Boot passed app slot B on the activation reboot',
      qemu.boots,
    );
    check(!/on trial/.test(qemu.since(appMark)), 'no rootfs trial on the app activation reboot');
    // When this boot began, by the guest's clock (the one Gantry's log timestamps use).
    const appBootAt = (
      await qemu.run('date -u -d "@$(( $(date +%s) - $(cut -d. -f1 /proc/uptime) ))" +%Y-%m-%dT%H:%M:%SZ')
    ).trim();
    const p1 = await timed(`health check + commit of app ${NEW_APP}`, () =>
      api.waitFor(
        `job ${job1} complete`,
        `/api/v1/ota/progress?job_id=${job1}`,
        (r) => r.body?.data?.status === 'complete',
        5 * 60_000,
        (r) => ['error', 'cancelled'].includes(r.body?.data?.status),
      ),
    );
    check(true, `job ${job1} complete: every component committed`);
    say(`job ${job1}: ${JSON.stringify(p1.body.data)}`);
    st = await api.status();
    check(
      st.body.data.partitions.active.id === 'B' && st.body.data.partitions.active.status === 'healthy',
      'GET /status: slot B booted and committed (healthy) after its health check',
      st.body.data.partitions,
    );
    check(st.body.data.gateway.os_version === 'v5.0.5', 'os_version v5.0.5', st.body.data.gateway);
    check(
      st.body.data.partitions.active.next_boot === true,
      'slot B is the next boot',
      st.body.data.partitions,
    );
    const components = (st.body.data.components ?? []) as Array<Record<string, unknown>>;
    const rootfsRow = components.find((c) => c.name === 'rootfs');
    const appRow = components.find((c) => c.name === 'app');
    check(
      rootfsRow?.version === 'v5.0.5' &&
        rootfsRow.slot === 'B' &&
        appRow?.version === NEW_APP &&
        appRow.handler === 'ab-slot' &&
        appRow.slot === 'B' &&
        appRow.pending_version === null,
      `GET /status components: rootfs v5.0.5 on B, app ${NEW_APP} on app slot B, nothing pending`,
      components,
    );
    const logs1 = await api.logs(500);
    const committedLog = logs1.find((l) => /Slot B \(v5\.0\.5\) passed its health check/.test(l.message));
    check(committedLog, 'GET /logs: slot B passed its health check and is committed', committedLog);
    // One component at a time: each step's first log entry, in this order (a step run again after
    // a reboot logs again; the first entry is when it began).
    const steps = [
      'installing rootfs (1/2)',
      'activating rootfs (1/2)',
      'committing rootfs (1/2)',
      'installing app (2/2)',
      'activating app (2/2)',
      'health_check app (2/2)',
      'committing app (2/2)',
    ];
    const firstAt = steps.map((step) => {
      const entries = logs1.filter((l) => l.message === `Job ${job1}: ${step}`);
      return entries.map((l) => l.timestamp ?? '').sort()[0] ?? null;
    });
    check(
      firstAt.every((at, i) => at !== null && (i === 0 || at >= firstAt[i - 1]!)),
      `GET /logs: ${steps.join(' → ')}`,
      Object.fromEntries(steps.map((step, i) => [step, firstAt[i]])),
    );
    const appCheckAt = firstAt[steps.indexOf('health_check app (2/2)')];
    check(
      appCheckAt && appCheckAt >= appBootAt,
      `the app's health check ran in the boot its activation asked for (at ${appCheckAt}, booted ${appBootAt})`,
      { appCheckAt, appBootAt },
    );
    const env1 = await qemu.run('fw_printenv');
    check(
      /boot_slot=B/.test(env1) && /upgrade_available=0/.test(env1) && /^app_slot=B$/m.test(env1),
      'U-Boot env: boot_slot=B, upgrade_available=0, app_slot=B',
      env1,
    );
    const app1 = await qemu.run(APP_PROBE);
    check(appShows(app1, NEW_APP, 'B'), `app slot B mounted at /opt/app shows ${NEW_APP}`, app1);

    // A plain reboot stays on B, with app slot B.
    mark = qemu.mark();
    qemu.type('systemctl reboot');
    await bootAndLogin(qemu, api, '4 slot B again (plain reboot)', mark, 'B');
    check(!/on trial/.test(qemu.since(mark)), 'no trial on the plain reboot');
    check(qemu.boots[qemu.boots.length - 1]?.app === 'B', 'app slot B again', qemu.boots);
    st = await api.status();
    check(
      st.body.data.partitions.active.id === 'B' && st.body.data.partitions.active.status === 'healthy',
      'GET /status after a reboot: still B, healthy',
      st.body.data.partitions,
    );

    // 4. Bundle 2: a release whose Gantry cannot start. U-Boot's count runs out and it returns to B.
    const bundle2File = await bundle2;
    await timed('feed: bundle 2 (v5.0.6, broken, v2 + hop delta) published', () => feed.add(bundle2File));
    mark = qemu.mark();
    const failedFrom = qemu.boots.length;
    const { jobId: job2, downloaded: d2 } = await installAndReboot(api, 'v5.0.6', 'A', 'seamless');
    // Issue 14: the gateway (active slot B = v5.0.5) takes the hop delta: its bytes on the wire.
    const delivery = d2.delivery as Record<string, unknown> | null;
    const bundleBytes = fs.statSync(bundle2File).size;
    const imageBytes = fs.statSync(bundle2Image).size;
    say(
      `bundle 2 delivery: ${JSON.stringify(delivery)}; on the wire ${String(delivery?.wire_bytes)} bytes ` +
        `(the full v2 bundle: ${bundleBytes} bytes, the image: ${imageBytes} bytes)`,
    );
    const logs2 = await api.logs(100);
    const chosen = logs2.find(
      (l) =>
        l.message === `Job ${job2}: hop path chosen (a hop delta from the active slot image is published)`,
    );
    // The delta's source hash equals what the Linux device recorded for slot B (bundle 1's image).
    check(
      chosen,
      `the hop path was chosen: the delta's source hash is slot B's recorded image hash`,
      logs2.slice(0, 20),
    );
    // Slot B is the running root, mounted read-write: its superblock, journal and the files the
    // system wrote are no longer the image its record names. The delta's operations check their
    // source before using it; those whose source changed are repaired from the bundle's chunks.
    const repaired = logs2.find((l) => / operations repaired from chunks /.test(l.message));
    say(`hop repairs: ${repaired?.message ?? 'none logged'}`);
    check(
      delivery?.path === 'hop' &&
        typeof delivery.wire_bytes === 'number' &&
        delivery.wire_bytes < bundleBytes / 10,
      `bundle 2 came by the hop delta on the running slot B (${String(delivery?.wire_bytes)} bytes on the wire, under a tenth of the full bundle's ${bundleBytes})`,
      { delivery, logs: logs2.slice(0, 20) },
    );
    const fallbackStart = Date.now();
    await qemu.expect(/gantry-vm: slot A failed \d+ boots: falling back/, {
      from: mark,
      timeoutMs: (BOOT_LIMIT + 1) * BOOT_TIMEOUT_MS,
      what: 'U-Boot falling back from slot A',
    });
    const tried = qemu.boots.slice(failedFrom).filter((b) => b.slot === 'A').length;
    check(tried === BOOT_LIMIT, `slot A was tried exactly bootlimit=${BOOT_LIMIT} times`, qemu.boots);
    await bootAndLogin(qemu, api, `${5 + BOOT_LIMIT} slot B after the fallback`, qemu.mark() - 200, 'B');
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
      /boot_slot=B/.test(env2) && /upgrade_available=0/.test(env2) && /^app_slot=B$/m.test(env2),
      'U-Boot env: boot_slot=B, upgrade_available=0, app_slot=B (kept through the fallback)',
      env2,
    );
    const app2 = await qemu.run(APP_PROBE);
    check(appShows(app2, NEW_APP, 'B'), `app ${NEW_APP} still mounted from app slot B`, app2);
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
