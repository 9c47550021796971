import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ADMIN_PASSWORD } from './gantry.js';
import { tsxChildEnv } from './temp.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const READY = /Gantry listening on (http:\/\/\S+)/;

/** A port nobody listens on right now (the kernel picks it; we close it again at once). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface GantryProcess {
  child: ChildProcess;
  pid: number;
  url: string;
  port: number;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  request(
    method: string,
    urlPath: string,
    opts?: { token?: string; gateway?: string | null; body?: unknown },
  ): Promise<{ status: number; body: any }>; // eslint-disable-line @typescript-eslint/no-explicit-any
  login(username?: string, password?: string): Promise<string>;
  /** Sends `signal` and resolves once the process is gone (SIGKILL: no shutdown code runs). */
  kill(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Gantry as `npm start` runs it, in a child process: `node --import tsx server/main.ts` with its
 * configuration in the environment. Resolves once it printed "Gantry listening"; rejects with its
 * output if it exits or stays silent first.
 */
export async function spawnGantry(opts: {
  dataDir: string;
  port: number;
  env?: Record<string, string>;
  readyTimeoutMs?: number;
}): Promise<GantryProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'server/main.ts'], {
    cwd: REPO_ROOT,
    env: {
      ...tsxChildEnv(),
      PORT: String(opts.port),
      HOST: '127.0.0.1',
      GANTRY_DATA_DIR: opts.dataDir,
      GANTRY_ADMIN_PASSWORD: ADMIN_PASSWORD,
      GANTRY_LOGIN_ATTEMPTS_PER_MINUTE: '1000',
      // Tests bring their own feed (test/helpers/feed.ts); test/integration/demo-feed.test.ts turns it on.
      GANTRY_DEMO_FEED: 'off',
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (output += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (output += s));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`Gantry did not start within ${opts.readyTimeoutMs ?? 20_000} ms:\n${output}`));
    }, opts.readyTimeoutMs ?? 20_000);
    const onData = () => {
      const m = READY.exec(output);
      if (!m) return;
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      resolve(m[1]!);
    };
    child.stdout!.on('data', onData);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`Gantry exited (code ${code}, signal ${signal}) before listening:\n${output}`));
    });
  });

  const request: GantryProcess['request'] = async (method, urlPath, o = {}) => {
    const headers: Record<string, string> = {};
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    if (o.gateway !== null) headers['x-gateway-id'] = o.gateway ?? 'GW-3920A9';
    let body: string | undefined;
    if (o.body !== undefined) {
      body = JSON.stringify(o.body);
      headers['content-type'] = 'application/json';
    }
    const res = await fetch(url + urlPath, { method, headers, body });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON: keep the text */
    }
    return { status: res.status, body: parsed };
  };

  return {
    child,
    pid: child.pid!,
    url,
    port: opts.port,
    output: () => output,
    request,
    async login(username = 'admin', password = ADMIN_PASSWORD) {
      const res = await request('POST', '/api/v1/auth/login', {
        body: { username, password },
        gateway: null,
      });
      if (res.status !== 200) throw new Error(`login failed: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body.data.token as string;
    },
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
