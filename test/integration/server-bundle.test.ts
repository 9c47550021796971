import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { io as ioClient } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer, firstWideChar } from '../../scripts/build-server.js';
import { configurationZip } from '../fixtures/zip/zips.js';
import { ADMIN_PASSWORD, GATEWAY, tempDataDir } from '../helpers/gantry.js';

/**
 * What bin/gantry-server runs is the esbuild bundle of the server, not the sources the other tests
 * import: a module the bundle cannot resolve, or a lazily imported package whose exports look
 * different once bundled, only shows there. So the bundle is built, started as a process, and each
 * part it loads on first use (tuf-js, jszip, socket.io, the API reference) is used once.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

describe('the server bundle (what bin/gantry-server runs)', () => {
  // Two levels below the repository like dist/server-bundle, so migrations and web assets resolve.
  const outdir = path.join(ROOT, 'dist', `server-bundle-test-${process.pid}`);
  let child: ChildProcess;
  let url: string;
  let token: string;
  let output = '';
  const headers = () => ({ authorization: `Bearer ${token}`, 'x-gateway-id': GATEWAY });

  beforeAll(async () => {
    await buildServer(outdir);
    child = spawn(process.execPath, ['--optimize-for-size', path.join(outdir, 'main.js')], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        PORT: '0',
        HOST: '127.0.0.1',
        GANTRY_DATA_DIR: tempDataDir('gantry-bundle-'),
        GANTRY_ADMIN_PASSWORD: ADMIN_PASSWORD,
      },
    });
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    url = await new Promise<string>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`the bundle exited with ${code}: ${output}`)));
      readline.createInterface({ input: child.stdout! }).on('line', (line) => {
        output += `${line}\n`;
        const m = /^Gantry listening on (\S+)/.exec(line);
        if (m) resolve(m[1]!);
      });
    });
    const login = await fetch(`${url}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }),
    });
    token = ((await login.json()) as { data: { token: string } }).data.token;
  }, 120_000);

  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    fs.rmSync(outdir, { recursive: true, force: true });
  });

  it('should build a bundle V8 can keep as one-byte source', () => {
    const source = fs.readFileSync(path.join(outdir, 'main.js'), 'utf8');
    expect(source.length).toBeGreaterThan(100_000);
    expect(firstWideChar(source)).toBe(-1);
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
    expect(res.status, output).toBe(200);
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
