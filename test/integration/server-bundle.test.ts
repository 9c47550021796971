import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import readline from 'node:readline';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { io as ioClient } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer, firstWideChar, launcherFlags } from '../../scripts/build-server.js';
import { LAZY_BUILTINS, LAZY_PACKAGES } from '../../scripts/server-bundle-plugins.js';
import { CODE_CACHE_FILE, codeCacheFileName } from '../../server/code-cache-name.js';
import { configurationZip } from '../fixtures/zip/zips.js';
import { ADMIN_PASSWORD, GATEWAY, tempDataDir } from '../helpers/gantry.js';
import { waitFor } from '../helpers/wait.js';

/**
 * What bin/gantry-server runs is the esbuild bundle of the server, not the sources the other tests
 * import: a module the bundle cannot resolve, or a lazily imported package whose exports look
 * different once bundled, only shows there. So the bundle is built, started as a process, and each
 * part it loads on first use (tuf-js, jszip, socket.io, the API reference) is used once.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

interface BundleProcess {
  child: ChildProcess;
  url: string;
  output(): string;
  stop(): Promise<void>;
}

/**
 * Starts the built bundle's main.cjs (the loader) on a data dir; resolves once it listens. With
 * other node flags than the launcher's (the default here), V8 refuses the code cache the build
 * ships, as it would on a gateway whose node runs other flags than the build's.
 */
async function startBundle(
  outdir: string,
  dataDir: string,
  nodeFlags = ['--optimize-for-size'],
  env: Record<string, string> = {},
): Promise<BundleProcess> {
  let output = '';
  const child = spawn(process.execPath, [...nodeFlags, path.join(outdir, 'main.cjs')], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      GANTRY_DATA_DIR: dataDir,
      GANTRY_ADMIN_PASSWORD: ADMIN_PASSWORD,
      ...env,
    },
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  };
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`the bundle exited with ${code}: ${output}`)));
      readline.createInterface({ input: child.stdout! }).on('line', (line) => {
        output += `${line}\n`;
        const m = /^Gantry listening on (\S+)/.exec(line);
        if (m) resolve(m[1]!);
      });
    });
    return { child, url, output: () => output, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

// Two levels below the repository like dist/server-bundle, so migrations and web assets resolve.
const outdir = path.join(ROOT, 'dist', `server-bundle-test-${process.pid}`);
beforeAll(() => buildServer(outdir), 120_000);
afterAll(() => fs.rmSync(outdir, { recursive: true, force: true }));

describe('the server bundle (what bin/gantry-server runs)', () => {
  let server: BundleProcess;
  let url: string;
  let token: string;
  const headers = () => ({ authorization: `Bearer ${token}`, 'x-gateway-id': GATEWAY });

  beforeAll(async () => {
    server = await startBundle(outdir, tempDataDir('gantry-bundle-'));
    url = server.url;
    const login = await fetch(`${url}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
    });
    token = ((await login.json()) as { data: { token: string } }).data.token;
  }, 120_000);

  afterAll(() => server?.stop());

  it('should build a bundle V8 can keep as one-byte source', () => {
    const source = fs.readFileSync(path.join(outdir, 'server.cjs'), 'utf8');
    expect(source.length).toBeGreaterThan(100_000);
    expect(firstWideChar(source)).toBe(-1);
  });

  it('should keep the rarely used packages out of the server file, each in its own vendor file', () => {
    const source = fs.readFileSync(path.join(outdir, 'server.cjs'), 'utf8');
    for (const [name, file] of Object.entries(LAZY_PACKAGES)) {
      expect(source).not.toContain(`"node_modules/${name}/`);
      expect(source).toContain(`require("./vendor/${file}")`);
      expect(firstWideChar(fs.readFileSync(path.join(outdir, 'vendor', file), 'utf8'))).toBe(-1);
    }
    // The VCDIFF decoder as delta/hop/apply.ts takes it (the other two are used below).
    const vendorRequire = createRequire(path.join(outdir, 'server.cjs'));
    const vcdiff = vendorRequire(`./vendor/${LAZY_PACKAGES['@ably/vcdiff-decoder']}`) as { decode?: unknown };
    expect(typeof vcdiff.decode).toBe('function');
    // Packages' JSON files stay JSON beside the server (mime-db is read by the first answer Express
    // writes, as below; iconv-lite's tables only for a body in such a code page).
    for (const json of ['mime-db/db.json', 'iconv-lite/encodings/tables/shiftjis.json']) {
      expect(source).not.toContain(`"node_modules/${json}"`);
      expect(source).toContain(`require("./vendor/json/${json}")`);
    }
    const table = vendorRequire('./vendor/json/iconv-lite/encodings/tables/shiftjis.json') as unknown[];
    expect(table.length).toBeGreaterThan(10);
  });

  it("should carry zod's English locale alone, which is all the server asks zod for", () => {
    const source = fs.readFileSync(path.join(outdir, 'server.cjs'), 'utf8');
    const locales = new Set(source.match(/node_modules\/zod\/v4\/locales\/[\w-]+\.js/g));
    expect([...locales].sort()).toEqual([
      'node_modules/zod/v4/locales/en.js',
      'node_modules/zod/v4/locales/index.js',
    ]);
    // No other locale is chosen anywhere (z.config) or asked for (z.locales.xx): the bundle would
    // find it undefined.
    const sources = execFileSync(
      'git',
      ['grep', '-lE', String.raw`\.config\(|locales\.[a-z]`, '--', '*.ts'],
      {
        cwd: ROOT,
        encoding: 'utf8',
      },
    ).split('\n');
    const zodUsers = sources.filter(
      (f) => f && /\bfrom 'zod/.test(fs.readFileSync(path.join(ROOT, f), 'utf8')),
    );
    for (const file of zodUsers)
      expect(fs.readFileSync(path.join(ROOT, file), 'utf8'), file).not.toMatch(
        /\bz\.config\(|\blocales\.(?!en\b)[a-z]/,
      );
  });

  it('should serve /status from the migrated store', async () => {
    const res = await fetch(`${url}/api/v1/ota/status`, { headers: headers() });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { data: { partitions: { active: { id: string } } } };
    expect(body.data.partitions.active.id).toBe('A');
  });

  it('should check the (demo) feed with tuf-js, loaded on first use', async () => {
    const res = await fetch(`${url}/api/v1/ota/check-updates`, {
      method: 'POST',
      headers: { ...headers(), 'content-type': 'application/json' },
      body: JSON.stringify({ force: true, background: false }),
    });
    const body = (await res.json()) as { data: { status: string; total_available: number } };
    expect(res.status, server.output()).toBe(200);
    expect(body.data.status).toBe('completed');
    expect(body.data.total_available).toBeGreaterThan(0);
  });

  it('should build the API reference on the first request for it', async () => {
    const doc = (await (await fetch(`${url}/api/v1/openapi.json`)).json()) as {
      paths: Record<string, unknown>;
    };
    expect(Object.keys(doc.paths)).toContain('/api/v1/ota/status');
    const page = await fetch(`${url}/api/docs`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('/api/v1/ota/status');
  });

  it('should read a configuration ZIP with jszip, loaded on first use', async () => {
    const { zip } = await configurationZip();
    const form = new FormData();
    form.append('ota_zip_file', new Blob([new Uint8Array(zip)]), 'config.zip');
    const res = await fetch(`${url}/ota-configure`, { method: 'POST', body: form, headers: headers() });
    const body = (await res.json()) as { success: boolean };
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body.success).toBe(true);
  });

  it('should accept a socket.io client on /ota-update, loading socket.io on its first request', async () => {
    const socket = ioClient(`${url}/ota-update`, {
      auth: { token, gateway_id: GATEWAY },
      transports: ['polling', 'websocket'],
      reconnection: false,
    });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve());
        socket.once('connect_error', reject);
      });
      expect(socket.connected).toBe(true);
    } finally {
      socket.close();
    }
  });
});

describe('the server bundle: its V8 code cache, shipped with the build and in the data dir', () => {
  const cacheFiles = (dir: string) =>
    fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => CODE_CACHE_FILE.test(n)) : [];
  const cachePath = (dataDir: string) =>
    path.join(dataDir, 'cache', cacheFiles(path.join(dataDir, 'cache'))[0]!);
  const status = async (url: string) => (await fetch(`${url}/api/v1/ota/status`)).status;
  const launcherNodeFlags = () => launcherFlags().split(/\s+/).filter(Boolean);

  it("should ship the cache of this very bundle, which V8 takes with the launcher's flags alone", () => {
    const sha256 = createHash('sha256')
      .update(fs.readFileSync(path.join(outdir, 'server.cjs')))
      .digest('hex');
    expect(cacheFiles(outdir)).toEqual([codeCacheFileName(sha256)]);
    // Compiled as the loader compiles it; V8 checks the cache against its version and flags.
    const rejected = (nodeFlags: string[]) =>
      execFileSync(
        process.execPath,
        [
          ...nodeFlags,
          '-e',
          `const fs = require('fs'), vm = require('vm'), { wrap } = require('module');
           const s = new vm.Script(wrap(fs.readFileSync(process.argv[1], 'utf8')), { cachedData: fs.readFileSync(process.argv[2]) });
           process.stdout.write(String(s.cachedDataRejected));`,
          path.join(outdir, 'server.cjs'),
          path.join(outdir, codeCacheFileName(sha256)),
        ],
        { encoding: 'utf8' },
      );
    expect(rejected(launcherNodeFlags())).toBe('false');
    expect(rejected(['--optimize-for-size'])).toBe('true');
  });

  it("should take a first start from the shipped cache, write none of its own, and remove another build's", async () => {
    const dataDir = tempDataDir('gantry-bundle-cache-');
    const stale = path.join(dataDir, 'cache', `server-${'0'.repeat(32)}.v8cache`);
    fs.mkdirSync(path.dirname(stale), { recursive: true });
    fs.writeFileSync(stale, 'the cache of the Gantry this update replaced');
    const first = await startBundle(outdir, dataDir, launcherNodeFlags());
    try {
      expect(await status(first.url)).toBe(401);
      await waitFor(
        () => fs.existsSync(stale),
        (present) => !present,
        "the other build's cache removed",
      );
    } finally {
      await first.stop();
    }
    // The loader settles the data dir's cache once, right after listening: had V8 refused the
    // shipped cache, its own would be there by now.
    expect(cacheFiles(path.join(dataDir, 'cache'))).toEqual([]);
  }, 120_000);

  it('should write its own cache where the shipped one does not fit, then start from it without writing it again', async () => {
    const dataDir = tempDataDir('gantry-bundle-cache-');
    const first = await startBundle(outdir, dataDir);
    try {
      await waitFor(
        () => cacheFiles(path.join(dataDir, 'cache')),
        (f) => f.length === 1,
        'the code cache',
      );
    } finally {
      await first.stop();
    }
    const written = fs.statSync(cachePath(dataDir));
    const second = await startBundle(outdir, dataDir);
    try {
      expect(await status(second.url)).toBe(401);
      const again = fs.statSync(cachePath(dataDir));
      expect([again.ino, again.mtimeMs, again.size]).toEqual([written.ino, written.mtimeMs, written.size]);
    } finally {
      await second.stop();
    }
  }, 120_000);

  it('should start from a damaged cache as without one, and replace it (and a cache of another build)', async () => {
    const dataDir = tempDataDir('gantry-bundle-cache-');
    const first = await startBundle(outdir, dataDir);
    await waitFor(
      () => cacheFiles(path.join(dataDir, 'cache')),
      (f) => f.length === 1,
      'the code cache',
    );
    await first.stop();
    const file = cachePath(dataDir);
    const garbage = Buffer.alloc(fs.statSync(file).size, 0x5a);
    fs.writeFileSync(file, garbage);
    const stale = path.join(dataDir, 'cache', `server-${'0'.repeat(32)}.v8cache`);
    fs.writeFileSync(stale, 'an older build');

    const second = await startBundle(outdir, dataDir);
    try {
      expect(await status(second.url)).toBe(401);
      await waitFor(
        () => !fs.readFileSync(file).equals(garbage),
        (replaced) => replaced,
        'a new code cache',
      );
      expect(cacheFiles(path.join(dataDir, 'cache'))).toEqual([path.basename(file)]);
    } finally {
      await second.stop();
    }
  }, 120_000);
});

describe('the server bundle: what an idle server leaves unloaded', () => {
  /** The built-in modules the server has loaded (`process.moduleLoadList`) and the files it required. */
  const MODULES_ON_SIGNAL = `process.on('SIGUSR2', () => require('node:fs').writeFileSync(process.env.MODULES_OUT, [...process.moduleLoadList, ...Object.keys(require.cache)].join('\\n')));`;

  it('should answer a login and GET /status without the modules it loads on first use, and load them when used', async () => {
    const dataDir = tempDataDir('gantry-bundle-idle-');
    const hook = path.join(dataDir, 'modules-hook.cjs');
    const out = path.join(dataDir, 'modules.txt');
    fs.writeFileSync(hook, MODULES_ON_SIGNAL);
    const server = await startBundle(
      outdir,
      dataDir,
      [...launcherFlags().split(/\s+/).filter(Boolean), '--require', hook],
      {
        MODULES_OUT: out,
        GANTRY_DEMO_FEED: 'off',
      },
    );
    const loaded = async () => {
      fs.rmSync(out, { force: true });
      server.child.kill('SIGUSR2');
      const text = await waitFor(
        () => (fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : ''),
        (t) => t.length > 0,
        'the module list',
      );
      return new Set(text.split('\n').map((line) => line.replace(/^NativeModule /, '')));
    };
    const login = (body: Uint8Array<ArrayBuffer>, headers: Record<string, string> = {}) =>
      fetch(`${server.url}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body,
      });
    try {
      const credentials = new TextEncoder().encode(
        JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
      );
      const first = await login(credentials);
      expect(first.status).toBe(200);
      const { token } = ((await first.json()) as { data: { token: string } }).data;
      const status = await fetch(`${server.url}/api/v1/ota/status`, {
        headers: { authorization: `Bearer ${token}`, 'x-gateway-id': GATEWAY },
      });
      expect(status.status).toBe(200);

      const idle = await loaded();
      expect(idle.has('http')).toBe(true);
      // LAZY_BUILTINS (scripts/server-bundle-plugins.ts); tty: the debug package, taken only with DEBUG set;
      // perf_hooks: the global `performance`; the ES module loader: a CommonJS main.
      for (const name of [...LAZY_BUILTINS, 'tty', 'perf_hooks', 'internal/modules/esm/module_job'])
        expect(idle.has(name), name).toBe(false);
      // LAZY_PACKAGES_REQUIRED: mime-types, and with it mime-db's JSON file.
      const mimeDb = path.join(outdir, 'vendor', 'json', 'mime-db', 'db.json');
      expect(idle.has(mimeDb)).toBe(false);

      // Express's res.json asks mime-types for application/json's charset, through the stand-in.
      const reference = await fetch(`${server.url}/api/v1/openapi.json`);
      expect(reference.headers.get('content-type')).toBe('application/json; charset=utf-8');
      expect((await loaded()).has(mimeDb)).toBe(true);

      // A gzip-compressed body: body-parser inflates it through the zlib stand-in.
      const inflated = await login(new Uint8Array(zlib.gzipSync(credentials)), {
        'content-encoding': 'gzip',
      });
      expect(inflated.status).toBe(200);
      expect((await loaded()).has('zlib')).toBe(true);
    } finally {
      await server.stop();
    }
  }, 120_000);

  it("should print the packages' debug lines when DEBUG asks at start-up", async () => {
    const server = await startBundle(outdir, tempDataDir('gantry-bundle-debug-'), undefined, {
      DEBUG: 'router',
    });
    try {
      await waitFor(
        () => server.output(),
        (output) => / router use '\/api\/v1'/.test(output),
        "the router's debug lines",
      );
    } finally {
      await server.stop();
    }
  }, 120_000);
});
