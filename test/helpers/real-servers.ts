import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe } from 'vitest';
import { freePort } from './process.js';

/**
 * Real servers for the feed transport tests, from Debian packages (.ci/run installs them): nginx as
 * the origin (`nginx-light`) and tinyproxy as the forward proxy. Each runs as its own foreground
 * process with its own configuration, logs and pid file in a temp dir, on free loopback ports;
 * `stop()` kills it, waits for it to exit and removes the dir. The system services are never
 * touched. Without the binaries the suites are skipped locally (saying so) and fail in CI.
 */

const inCI = !!process.env.CI && !['false', '0'].includes(process.env.CI.toLowerCase());

function installed(binary: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${binary}`], { stdio: 'ignore' }).status === 0;
}

const NGINX = fs.existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';
const present = (fs.existsSync(NGINX) || installed('nginx')) && installed('tinyproxy');
if (!present && !inCI) {
  console.warn(
    '[transport tests] SKIPPED: nginx and tinyproxy are needed (apt-get install nginx-light tinyproxy). With CI=true they fail instead.',
  );
}

/** The suites that need nginx and tinyproxy: skipped locally without them (with the message above), never in CI. */
export const describeWithServers = describe.skipIf(!present && !inCI);

/** One line of the origin's access log (log_format `gantry` below); "" where nginx logs "-". */
export interface AccessEntry {
  server: string;
  connection: string;
  connectionRequests: number;
  uri: string;
  status: number;
  bytes: number;
  /** Whole response (head and body) and whole request on the wire. */
  sent: number;
  requestLength: number;
  range: string;
  ifRange: string;
  authorization: string;
  via: string;
  /** `r` when the TLS session was resumed, `.` when not ('' over plain http). */
  sslReused: string;
}

export interface Nginx {
  /** Ports of the server blocks, by the names the config was given. */
  ports: Record<string, number>;
  /** `http://127.0.0.1:<port>` (https for the `tls` ones). */
  url(server: string): string;
  accessLog(): AccessEntry[];
  /** SIGKILL (open connections drop at once), waiting for the exit. */
  kill(): Promise<void>;
  /** Starts it again with the same configuration and ports. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

const LOG_FORMAT = `log_format gantry escape=json '{"server":"$server_port","connection":"$connection","connection_requests":"$connection_requests","uri":"$request_uri","status":"$status","bytes":"$body_bytes_sent","sent":"$bytes_sent","request_length":"$request_length","range":"$http_range","if_range":"$http_if_range","authorization":"$http_authorization","via":"$http_via","ssl_reused":"$ssl_session_reused"}';`;

/** Waits until something accepts connections on the port (the server finished starting). */
async function listening(port: number, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`the server exited while starting:\n${output()}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port} after 10 s:\n${output()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function exit(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  await exited;
}

/**
 * nginx with `servers(ports)` as its server blocks; `names` are the server blocks' names (a port
 * each; names starting with `tls` are served over https by the caller's block). One process
 * (`master_process off`), so a SIGKILL drops every connection like a crashed server.
 */
export async function startNginx(
  names: string[],
  servers: (ports: Record<string, number>, dir: string) => string,
): Promise<Nginx> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-nginx-'));
  const ports: Record<string, number> = {};
  for (const name of names) ports[name] = await freePort();
  for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) fs.mkdirSync(path.join(dir, sub));
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(
    conf,
    `master_process off;
worker_processes 1;
error_log ${dir}/error.log info;
events { worker_connections 128; }
http {
  ${LOG_FORMAT}
  access_log ${dir}/access.log gantry;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  default_type application/octet-stream;
  types { application/json json; }
  sendfile on;
  keepalive_timeout 30s;
  keepalive_requests 1000;
${servers(ports, dir)}
}
`,
  );
  let child: ChildProcess | null = null;
  let output = '';
  const start = async (): Promise<void> => {
    output = '';
    child = spawn(NGINX, ['-p', dir, '-c', conf, '-g', `daemon off; pid ${dir}/nginx.pid;`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', (err) => (output += `spawn failed: ${err.message}`));
    const errorLog = () => {
      try {
        return output + fs.readFileSync(path.join(dir, 'error.log'), 'utf8');
      } catch {
        return output;
      }
    };
    for (const port of Object.values(ports)) await listening(port, child, errorLog);
  };
  await start().catch(async (err: unknown) => {
    if (child) await exit(child, 'SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  });
  return {
    ports,
    url: (server) => `${server.startsWith('tls') ? 'https' : 'http'}://127.0.0.1:${ports[server]}`,
    accessLog() {
      const file = path.join(dir, 'access.log');
      if (!fs.existsSync(file)) return [];
      return fs
        .readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => {
          const e = JSON.parse(line) as Record<string, string>;
          return {
            server: e.server!,
            connection: e.connection!,
            connectionRequests: Number(e.connection_requests),
            uri: e.uri!,
            status: Number(e.status),
            bytes: Number(e.bytes),
            sent: Number(e.sent),
            requestLength: Number(e.request_length),
            range: e.range!,
            ifRange: e.if_range!,
            authorization: e.authorization!,
            via: e.via!,
            sslReused: e.ssl_reused!,
          };
        });
    },
    async kill() {
      if (child) await exit(child, 'SIGKILL');
    },
    start,
    async stop() {
      if (child) await exit(child, 'SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Tinyproxy {
  port: number;
  url: string;
  /** Lines of its log (requests it forwarded or tunnelled are there). */
  log(): string[];
  /** Requests it handled: `GET http://…` or `CONNECT host:port`. */
  requests(): string[];
  stop(): Promise<void>;
}

/**
 * tinyproxy on a free loopback port, with Basic auth when `auth` is given; CONNECT is allowed to
 * `connectPorts` only (tinyproxy refuses the others with 403).
 */
export async function startTinyproxy(
  opts: { auth?: { user: string; password: string }; connectPorts?: number[] } = {},
): Promise<Tinyproxy> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-tinyproxy-'));
  const port = await freePort();
  const logFile = path.join(dir, 'tinyproxy.log');
  const conf = path.join(dir, 'tinyproxy.conf');
  fs.writeFileSync(
    conf,
    [
      `Port ${port}`,
      'Listen 127.0.0.1',
      'Timeout 30',
      `LogFile "${logFile}"`,
      'LogLevel Info',
      `PidFile "${path.join(dir, 'tinyproxy.pid')}"`,
      'MaxClients 50',
      'Allow 127.0.0.1',
      ...(opts.connectPorts ?? []).map((p) => `ConnectPort ${p}`),
      ...(opts.auth ? [`BasicAuth ${opts.auth.user} ${opts.auth.password}`] : []),
      '',
    ].join('\n'),
  );
  let output = '';
  const child = spawn('tinyproxy', ['-d', '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  child.on('error', (err) => (output += `spawn failed: ${err.message}`));
  const log = (): string[] => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').split('\n') : []);
  try {
    await listening(port, child, () => output + log().join('\n'));
  } catch (err) {
    await exit(child, 'SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    log,
    requests: () =>
      log()
        .map((l) => /Request \(file descriptor \d+\): (.*)$/.exec(l)?.[1])
        .filter((r): r is string => r !== undefined),
    async stop() {
      await exit(child, 'SIGTERM');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

const TLS_DIR = path.resolve(import.meta.dirname, '..', 'fixtures', 'tls');
export const TEST_CA_FILE = path.join(TLS_DIR, 'cert.pem');

/**
 * nginx serving the TUF feed in `feedDir` as a static origin would: under `/feed/` on `origin`
 * (plain http), `other` (a second origin) and `tls` (https, the test certificate), and through
 * redirects on `origin`:
 * - `/r301/ /r302/ /r303/ /r307/ /r308/` → `/feed/` with that status;
 * - `/chain/` → 301 → 302 → 307 → 308 → `/feed/` (four hops); `/deep/` six hops (one too many);
 * - `/loop-a/` ⇄ `/loop-b/`; `/other/` → 302 to the `other` origin;
 * - `/slow/`: `/feed/` at 1 MiB/s after the first 512 KiB (time to drop a connection midway);
 * - on `tls`: `/downgrade/` → 302 to `http://…/feed/` on `origin`, `/r301/` → `/feed/`.
 */
export function startFeedOrigin(feedDir: string): Promise<Nginx> {
  return startNginx(['origin', 'other', 'tls'], (ports) => {
    const feed = `location /feed/ { alias ${feedDir}/; }`;
    const hop = (from: string, status: number, to: string) =>
      `location ~ ^/${from}/(.*)$ { return ${status} ${to}$1; }`;
    return `
  server {
    listen 127.0.0.1:${ports.origin};
    ${feed}
    location /slow/ { alias ${feedDir}/; limit_rate_after 512k; limit_rate 1m; }
    ${[301, 302, 303, 307, 308].map((s) => hop(`r${s}`, s, '/feed/')).join('\n    ')}
    ${hop('chain', 301, '/c2/')}
    ${hop('c2', 302, '/c3/')}
    ${hop('c3', 307, '/c4/')}
    ${hop('c4', 308, '/feed/')}
    ${hop('deep', 301, '/d2/')}
    ${[2, 3, 4, 5, 6].map((n) => hop(`d${n}`, 302, n < 6 ? `/d${n + 1}/` : '/feed/')).join('\n    ')}
    ${hop('loop-a', 302, '/loop-b/')}
    ${hop('loop-b', 302, '/loop-a/')}
    ${hop('other', 302, `http://127.0.0.1:${ports.other}/feed/`)}
  }
  server {
    listen 127.0.0.1:${ports.other};
    ${feed}
  }
  server {
    listen 127.0.0.1:${ports.tls} ssl;
    ssl_certificate ${TLS_DIR}/cert.pem;
    ssl_certificate_key ${TLS_DIR}/key.pem;
    ${feed}
    ${hop('downgrade', 302, `http://127.0.0.1:${ports.origin}/feed/`)}
    ${hop('r301', 301, '/feed/')}
  }`;
  });
}
