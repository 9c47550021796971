import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, stopChild } from './process.js';
import { launcherFlags, launcherMallocEnv } from '../../scripts/build-server.js';

/**
 * A real Gantry in its own process (so its memory is its own), talked to over REST exactly as an
 * operator's client would: used by bench/pipeline.ts and bench/upload.ts.
 */

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const GATEWAY = 'GW-3920A9';
export const ADMIN_PASSWORD = 'bench-admin-password';
const DIST_MAIN = path.join(ROOT, 'dist', 'server-bundle', 'main.cjs');
/** The production launcher (node and malloc memory settings) around DIST_MAIN. */
const LAUNCHER = path.join(ROOT, 'bin', 'gantry-server');
/** What `npm run build` compiles: tsconfig.build.json's folders. */
const BUILD_DIRS = (
  JSON.parse(fs.readFileSync(path.join(ROOT, 'tsconfig.build.json'), 'utf8')) as { include: string[] }
).include;

export interface GantryCommand {
  command: string;
  args: string[];
  /** 'dist' (bin/gantry-server: node dist/server-bundle/main.cjs) or 'tsx' (node --import tsx server/main.ts). */
  mode: 'dist' | 'tsx';
  env?: Record<string, string>;
  note?: string;
}

function newestSourceMtime(): number {
  let newest = 0;
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.ts')) newest = Math.max(newest, fs.statSync(full).mtimeMs);
    }
  };
  for (const dir of BUILD_DIRS) if (fs.existsSync(path.join(ROOT, dir))) walk(path.join(ROOT, dir));
  return newest;
}

/**
 * How to start Gantry: the built dist through bin/gantry-server, exactly what production runs (no
 * transpiler thread in the RSS, the launcher's memory settings),
 * rebuilt first when older than the sources; `node --import tsx server/main.ts` if no build exists.
 * GANTRY_NODE in the bench's environment names the node the launcher runs (a wrapper that adds
 * `--trace-gc` and keeps its output, say); the bench's own node otherwise.
 */
export function gantryCommand(opts: { build: boolean; log: (m: string) => void }): GantryCommand {
  const tsx: GantryCommand = {
    command: process.execPath,
    args: ['--import', 'tsx', path.join(ROOT, 'server', 'main.ts')],
    mode: 'tsx',
  };
  let note: string | undefined;
  const stale = !fs.existsSync(DIST_MAIN) || fs.statSync(DIST_MAIN).mtimeMs < newestSourceMtime();
  if (opts.build || stale) {
    opts.log('building dist/ (npm run build)…');
    try {
      execFileSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: 'pipe' });
    } catch (err) {
      // tsc still emits on type errors (files other engineers are editing): use what was emitted.
      const first = String((err as { stdout?: Buffer }).stdout ?? '').split('\n')[0] ?? '';
      const out = first.length > 160 ? `${first.slice(0, 160)}…` : first;
      note = `npm run build reported errors; measured the emitted dist anyway: ${out}`;
    }
  }
  if (!fs.existsSync(DIST_MAIN)) {
    return { ...tsx, note: 'no dist/ build: Gantry ran under tsx (its loader thread adds to the RSS)' };
  }
  return {
    command: LAUNCHER,
    args: [],
    env: { GANTRY_NODE: process.env.GANTRY_NODE ?? process.execPath },
    mode: 'dist',
    note,
  };
}

/**
 * Another program built like the server (scripts/build-server.ts with another entry: its `main.cjs`
 * loader in `dir`), started with the launcher's node flags and malloc settings.
 */
export function launchedLikeTheServer(dir: string): GantryCommand {
  return {
    command: process.execPath,
    args: [...launcherFlags().split(/\s+/).filter(Boolean), path.join(dir, 'main.cjs')],
    mode: 'dist',
    env: launcherMallocEnv(),
  };
}

// ---- HTTP -------------------------------------------------------------------------------

const agent = new http.Agent({ keepAlive: true, maxSockets: 64, scheduling: 'fifo' });

export interface JsonResponse {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
}

/** Keep-alive connections that the server closed while idle and the client reused (retried). */
export const connectionResets = { count: 0 };

function requestOnce(
  method: string,
  url: string,
  opts: { headers?: Record<string, string>; body?: unknown },
): Promise<JsonResponse> {
  return new Promise((resolve, reject) => {
    const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
    const req = http.request(
      url,
      {
        method,
        agent,
        headers: {
          ...opts.headers,
          ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            /* not JSON */
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/**
 * One JSON request over a keep-alive connection. A GET that meets a reset on a reused connection
 * (the server closed it while it sat idle in the pool: a race of keep-alive, not a failure of the
 * server) is sent once more; the caller's timing includes both attempts.
 */
export async function requestJson(
  method: string,
  url: string,
  opts: { headers?: Record<string, string>; body?: unknown } = {},
): Promise<JsonResponse> {
  try {
    return await requestOnce(method, url, opts);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (method !== 'GET' || (code !== 'ECONNRESET' && code !== 'EPIPE')) throw err;
    connectionResets.count++;
    return requestOnce(method, url, opts);
  }
}

// ---- memory -----------------------------------------------------------------------------

/**
 * VmRSS and VmHWM (peak resident set) of a process, in bytes, from /proc/<pid>/status, and VmRSS's
 * two parts: anonymous (V8's heap, malloc's: what the kernel cannot take back without swap) and
 * file-backed (the node binary's and libraries' pages: clean, dropped and read again under pressure).
 */
export function procMemory(
  pid: number,
): { rss: number; hwm: number; anonymous: number; fileBacked: number } | null {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return {
      rss: kib('VmRSS') * 1024,
      hwm: kib('VmHWM') * 1024,
      anonymous: kib('RssAnon') * 1024,
      fileBacked: kib('RssFile') * 1024,
    };
  } catch {
    return null;
  }
}

/**
 * Starts a new peak measurement: returns the VmHWM so far (the process's peak until now) and has
 * the kernel reset it to the current VmRSS (`/proc/<pid>/clear_refs` 5), so the next VmHWM read is
 * the exact peak of what happened in between: start-up, the login, one operation. Null where the
 * kernel refuses the reset (then VmHWM stays the lifetime peak).
 */
export function resetPeakRss(pid: number): number | null {
  const before = procMemory(pid);
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return before?.hwm ?? null;
  } catch {
    return null;
  }
}

/** What VmRSS is made of: the node binary's pages, other files', malloc's heap, anonymous memory. */
export type RssByMapping = Record<'node binary' | 'other files' | 'malloc heap' | 'anonymous', number>;

/**
 * VmRSS by mapping kind, from /proc/<pid>/smaps (bytes); null once the process is gone. Anonymous
 * memory holds V8's heap pages, WebAssembly memories (the slot writer's blocks), thread stacks and
 * the mmapped blocks of malloc (those above its mmap threshold).
 */
export function rssByMapping(pid: number): RssByMapping | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/smaps`, 'utf8');
  } catch {
    return null;
  }
  const out: RssByMapping = { 'node binary': 0, 'other files': 0, 'malloc heap': 0, anonymous: 0 };
  let kind: keyof RssByMapping = 'anonymous';
  for (const line of text.split('\n')) {
    const m = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (m) {
      const name = m[1]!.trim();
      kind =
        name === '[heap]'
          ? 'malloc heap'
          : name === '' || name.startsWith('[')
            ? 'anonymous'
            : name === process.execPath || name.endsWith('/node')
              ? 'node binary'
              : 'other files';
    } else if (line.startsWith('Rss:')) {
      out[kind] += Number(line.split(/\s+/)[1]) * 1024;
    }
  }
  return out;
}

/**
 * Samples VmRSS every `everyMs` until stopped; `stop()` gives the largest. With `mapping`,
 * `peakMapping()` is what that largest sample was made of (rssByMapping, read each time a new
 * largest VmRSS is seen: a parse of smaps on the measuring side, so only where it is asked for).
 */
export function sampleRss(
  pid: number,
  opts: { everyMs?: number; mapping?: boolean } = {},
): { stop(): number; peakMapping(): RssByMapping | null } {
  let max = 0;
  let mapping: RssByMapping | null = null;
  const sample = () => {
    const m = procMemory(pid);
    if (!m || m.rss <= max) return;
    max = m.rss;
    if (opts.mapping) mapping = rssByMapping(pid) ?? mapping;
  };
  sample();
  const timer = setInterval(sample, opts.everyMs ?? 50);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return max;
    },
    peakMapping: () => mapping,
  };
}

/** User + system CPU seconds a process has used so far, from /proc/<pid>/stat. */
export function procCpuSeconds(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces): utime and stime are 14th and 15th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

// ---- the child --------------------------------------------------------------------------

export interface GantryChild {
  pid: number;
  url: string;
  child: ChildProcess;
  /** Bearer token of `admin` plus the gateway header: what every /api/v1/ota call carries. */
  headers: Record<string, string>;
  token: string;
  /** VmRSS once it first answered HTTP, and after the admin login (scrypt) — bytes. */
  rssAfterStart: number | null;
  rssAfterLogin: number | null;
  /**
   * VmHWM from spawn to the first answer (start-up: on a fresh data dir, migrations, the admin's
   * password hash and the simulator's slot images), and over the login alone (scrypt); null without
   * `phasePeaks` or where the kernel refused the reset between them (see resetPeakRss).
   */
  startupPeakRssBytes: number | null;
  loginPeakRssBytes: number | null;
  /** The larger of the two: the process's peak before its first operation (null: not reset). */
  peakBeforeBytes: number | null;
  /** The simulated gateway's slot image file. */
  slotFile(slot: 'A' | 'B'): string;
  /** Last lines the child printed (for error messages). */
  output(): string;
  stop(): Promise<void>;
}

/**
 * Starts Gantry on a port picked here (HOST 127.0.0.1, data in `dataDir`, `env` on top), waits
 * until it answers HTTP, then logs in as admin over REST.
 */
export async function startGantryChild(
  cmd: GantryCommand,
  opts: {
    dataDir: string;
    env?: Record<string, string>;
    timeoutMs?: number;
    /**
     * Reset VmHWM after start-up and after the login (resetPeakRss), so the start-up and login
     * peaks are known apart and the caller can measure its own steps' peaks the same way. Off, the
     * process's VmHWM stays its lifetime peak (what the other suites read).
     */
    phasePeaks?: boolean;
    /**
     * Start Gantry once in the data dir and stop it first, so the measured process is a restart:
     * its store holds the admin (no password hash at start-up). What a gateway that has run before
     * starts as.
     */
    restart?: boolean;
  },
): Promise<GantryChild> {
  if (opts.restart) {
    const first = await startGantryChild(cmd, { ...opts, restart: false, phasePeaks: false });
    await first.stop();
  }
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(cmd.command, cmd.args, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      GANTRY_DATA_DIR: opts.dataDir,
      GANTRY_ADMIN_PASSWORD: ADMIN_PASSWORD,
      GANTRY_LOGIN_ATTEMPTS_PER_MINUTE: '1000',
      ...cmd.env,
      ...opts.env,
    },
  });
  let tail = '';
  const keep = (d: Buffer) => {
    tail = (tail + d.toString()).slice(-8192);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let exited: string | null = null;
  child.once('exit', (code, signal) => (exited = `code ${code} signal ${signal}`));
  const stop = () => stopChild(child);

  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  try {
    for (;;) {
      try {
        await requestJson('GET', `${url}/api/v1/ota/status`);
        break;
      } catch {
        if (exited) throw new Error(`Gantry exited (${exited}) before answering: ${tail}`);
        if (Date.now() > deadline) throw new Error(`Gantry did not answer ${url} in time: ${tail}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const rssAfterStart = procMemory(child.pid!)?.rss ?? null;
    const startupPeak = opts.phasePeaks ? resetPeakRss(child.pid!) : null;
    const login = await requestJson('POST', `${url}/api/v1/auth/login`, {
      body: { username: 'admin', password: ADMIN_PASSWORD },
    });
    if (login.status !== 200) throw new Error(`login failed: ${login.status} ${JSON.stringify(login.body)}`);
    const token = login.body.data.token as string;
    const rssAfterLogin = procMemory(child.pid!)?.rss ?? null;
    const loginPeak = startupPeak === null ? null : resetPeakRss(child.pid!);
    return {
      pid: child.pid!,
      url,
      child,
      token,
      rssAfterStart,
      rssAfterLogin,
      startupPeakRssBytes: startupPeak,
      loginPeakRssBytes: loginPeak,
      peakBeforeBytes: startupPeak === null || loginPeak === null ? null : Math.max(startupPeak, loginPeak),
      headers: { authorization: `Bearer ${token}`, 'x-gateway-id': GATEWAY },
      slotFile: (slot) => path.join(opts.dataDir, 'gateways', GATEWAY, 'device', `slot-${slot}.img`),
      output: () => tail,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * BENCH_PIPELINE_RESTART=1: each Gantry is measured on a restart (its data dir started once
 * before: the admin exists), not on the first start of a fresh data dir.
 */
export function restartMode(): boolean {
  return process.env.BENCH_PIPELINE_RESTART === '1';
}

/** Writes the vendor's public key where a Gantry data dir trusts it. */
export function trustVendorKey(dataDir: string, publicKeyPem: string): void {
  fs.mkdirSync(path.join(dataDir, 'trusted-keys'), { recursive: true });
  fs.writeFileSync(path.join(dataDir, 'trusted-keys', 'vendor.pem'), publicKeyPem);
}
