import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildServer } from '../scripts/build-server.js';
import {
  ADMIN_PASSWORD,
  gantryCommand,
  launchedLikeTheServer,
  procMemory,
  requestJson,
  startGantryChild,
  type GantryChild,
  type GantryCommand,
  type JsonResponse,
} from './lib/gantry-child.js';
import { load, type LoadResult } from './lib/load.js';
import { freePort, spawnReady, stopChild, timeToFirstResponse } from './lib/process.js';
import { median, round } from './lib/report.js';
import { mib } from './lib/stats.js';
import type { BenchOptions, BenchSuite, SuiteResult } from './lib/suite.js';

/**
 * The foundation's costs: how long from "start the service" to the first served request, and
 * what GET /api/v1/ota/status sustains (auth, gateway lookup, device reads, tRPC, zod output
 * validation) next to a bare Express route returning the same JSON on the same machine and run.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TSX = path.join(ROOT, 'node_modules', '.bin', 'tsx');
const STATUS_PATH = '/api/v1/ota/status';
const DIST_MODE = 'gantry (bin/gantry-server)';

/** The start-up floor: plain Node + Express listening, no transpiler, no store. */
const BARE_EXPRESS = `
import express from 'express';
const app = express();
app.get(${JSON.stringify(STATUS_PATH)}, (_req, res) => res.status(401).json({ success: false }));
app.listen(Number(process.env.PORT), '127.0.0.1');
process.once('SIGTERM', () => process.exit(0));
`;

interface StartupMode {
  name: string;
  command: string;
  args: string[];
  env?: Record<string, string>;
  /** Whether a data dir carries over between runs (warm) or not (the first start ever). */
  gantry: boolean;
}

interface StartupStats {
  coldMs: number | null;
  warmMs: number | null;
  coldSamples: number[];
  warmSamples: number[];
}

async function measureStartup(
  modes: StartupMode[],
  opts: BenchOptions,
): Promise<Record<string, StartupStats>> {
  const stats: Record<string, StartupStats> = {};
  const warmDirs: Record<string, string> = {};
  for (const mode of modes) {
    stats[mode.name] = { coldMs: null, warmMs: null, coldSamples: [], warmSamples: [] };
    if (mode.gantry) warmDirs[mode.name] = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-bench-warm-'));
  }
  const run = async (mode: StartupMode, dataDir: string) => {
    const port = await freePort();
    const sample = await timeToFirstResponse(mode.command, mode.args, {
      cwd: ROOT,
      url: `http://127.0.0.1:${port}${STATUS_PATH}`,
      env: {
        ...process.env,
        ...mode.env,
        PORT: String(port),
        HOST: '127.0.0.1',
        GANTRY_DATA_DIR: dataDir,
        GANTRY_ADMIN_PASSWORD: 'bench-admin-password',
        GANTRY_DEMO_FEED: 'off',
      },
    });
    if (sample.status !== 401) throw new Error(`${mode.name}: first response was ${sample.status}, not 401`);
    return sample.ms;
  };
  // Prime each warm data dir (first start ever), so every warm sample is a restart.
  for (const mode of modes) if (mode.gantry) await run(mode, warmDirs[mode.name]!);
  // Interleave the modes so drift on the machine spreads over all of them.
  for (let i = 0; i < opts.startupRuns; i++) {
    for (const mode of modes) {
      const s = stats[mode.name]!;
      if (mode.gantry) {
        const cold = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-bench-cold-'));
        try {
          s.coldSamples.push(round(await run(mode, cold)));
        } finally {
          fs.rmSync(cold, { recursive: true, force: true });
        }
        s.warmSamples.push(round(await run(mode, warmDirs[mode.name]!)));
      } else {
        s.warmSamples.push(round(await run(mode, os.tmpdir())));
      }
    }
    opts.log(`start-up run ${i + 1}/${opts.startupRuns} done`);
  }
  for (const mode of modes) {
    const s = stats[mode.name]!;
    s.coldMs = s.coldSamples.length ? round(median(s.coldSamples)) : null;
    s.warmMs = round(median(s.warmSamples));
    if (warmDirs[mode.name]) fs.rmSync(warmDirs[mode.name]!, { recursive: true, force: true });
  }
  return stats;
}

/** The same JSON as Gantry's answer from plain Express in its own process (no Gantry, no flags). */
const BARE_JSON_SERVER = `
import fs from 'node:fs';
import express from 'express';
const body = JSON.parse(fs.readFileSync(process.argv[1], 'utf8'));
const app = express();
app.get(${JSON.stringify(STATUS_PATH)}, (_req, res) => res.json(body));
const server = app.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ url: \`http://127.0.0.1:\${server.address().port}${STATUS_PATH}\` }));
});
process.once('SIGTERM', () => process.exit(0));
`;

/** The round with the median throughput: one coherent set of numbers, not a mix of rounds. */
function medianRound(rounds: LoadResult[]): LoadResult {
  const sorted = [...rounds].sort((a, b) => a.requestsPerSecond - b.requestsPerSecond);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

/** An hour of an operator page left open, compressed: SOAK_MINUTES rounds of 60 polls each. */
const SOAK_MINUTES = 60;
const SOAK_POLLS_PER_MINUTE = 60;
const SOAK_PATHS = [
  STATUS_PATH,
  '/api/v1/ota/monitor',
  '/api/v1/ota/safety',
  '/api/v1/ota/updates',
  '/api/v1/ota/logs',
];

interface IdleMemory {
  /** VmRSS once the server first answered, after the admin login, and after GET /status (+1 s). */
  afterStartBytes: number | null;
  afterLoginBytes: number | null;
  afterStatusBytes: number;
  /** The idle VmRSS's anonymous and file-backed parts (procMemory). */
  anonymousBytes: number;
  fileBackedBytes: number;
  /** VmHWM at that point: start-up and the login's scrypt included. */
  peakBytes: number;
}

interface Soak {
  minutes: number;
  requests: number;
  seconds: number;
  /** VmRSS after each compressed minute (bytes). */
  rssSamples: number[];
  /**
   * The lowest sample of minutes 36-60 minus the lowest of minutes 6-30 (after warm-up), bytes: what
   * stays resident right after V8's full collections. The samples are a sawtooth (the heap fills
   * for ~13 compressed minutes, then a full GC), and each window holds two of its troughs.
   */
  growthBytes: number;
  /**
   * Median of the last ten samples minus the median of minutes 6-15, bytes: how growth was measured
   * until 2026-12-05; it reads the sawtooth's phase as much as any growth (a run whose troughs rose
   * 1.0 MiB gave +2.5 MiB), kept for comparison with the earlier results.
   */
  medianGrowthBytes: number;
}

/**
 * Polls like an open operator page, one compressed minute after another (every SOAK_PATHS route
 * SOAK_POLLS_PER_MINUTE times, ten at a time, and a fresh login every ten minutes), sampling VmRSS
 * after each minute. Timers that fire on the clock (the scheduler, sensor sampling) are not
 * compressed: only what requests allocate is.
 */
async function soak(g: GantryChild, log: (m: string) => void): Promise<Soak> {
  const t0 = performance.now();
  let headers = g.headers;
  let requests = 0;
  const rssSamples: number[] = [];
  for (let minute = 0; minute < SOAK_MINUTES; minute++) {
    if (minute > 0 && minute % 10 === 0) {
      const login = await requestJson('POST', `${g.url}/api/v1/auth/login`, {
        body: { username: 'admin', password: ADMIN_PASSWORD },
      });
      if (login.status !== 200) throw new Error(`soak login: ${login.status}`);
      headers = { ...headers, authorization: `Bearer ${login.body.data.token as string}` };
      requests++;
    }
    const queue = SOAK_PATHS.flatMap((p) => Array.from({ length: SOAK_POLLS_PER_MINUTE }, () => p));
    const worker = async () => {
      for (let p = queue.pop(); p !== undefined; p = queue.pop()) {
        const res = await requestJson('GET', `${g.url}${p}`, { headers });
        if (res.status !== 200) throw new Error(`soak GET ${p}: ${res.status} ${JSON.stringify(res.body)}`);
        requests++;
      }
    };
    await Promise.all(Array.from({ length: 10 }, worker));
    const m = procMemory(g.pid);
    if (m) rssSamples.push(m.rss);
    if ((minute + 1) % 20 === 0)
      log(`soak: ${minute + 1}/${SOAK_MINUTES} minutes, RSS ${mib(m?.rss ?? 0)} MiB`);
  }
  const half = SOAK_MINUTES / 2;
  return {
    minutes: SOAK_MINUTES,
    requests,
    seconds: round((performance.now() - t0) / 1000, 1),
    rssSamples,
    growthBytes: Math.min(...rssSamples.slice(half + 5)) - Math.min(...rssSamples.slice(5, half)),
    medianGrowthBytes: median(rssSamples.slice(-10)) - median(rssSamples.slice(5, 15)),
  };
}

/**
 * The shipped server (bin/gantry-server, built bundle) with a fresh data dir and no demo feed (a
 * gateway in the field has its feed configured and never generates one): its memory idle after
 * start, login and GET /status; GET /status under load next to a bare Express route serving the
 * same JSON from its own process, rounds alternated; then the soak.
 */
async function measureShipped(cmd: GantryCommand, opts: BenchOptions) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-bench-foundation-'));
  const g = await startGantryChild(cmd, { dataDir, env: { GANTRY_DEMO_FEED: 'off' } });
  let bare: Awaited<ReturnType<typeof spawnReady<{ url: string }>>> | null = null;
  try {
    const { idle, status } = await idleAfterStatus(g);
    opts.log(
      `idle after start + login + /status: ${mib(idle.afterStatusBytes)} MiB (peak so far ${mib(idle.peakBytes)} MiB)`,
    );

    const bodyFile = path.join(dataDir, 'status.json');
    fs.writeFileSync(bodyFile, JSON.stringify(status.body));
    bare = await spawnReady<{ url: string }>(
      process.execPath,
      ['--input-type=module', '-e', BARE_JSON_SERVER, bodyFile],
      { cwd: ROOT, env: { ...process.env } },
    );
    const gantryUrl = `${g.url}${STATUS_PATH}`;
    const run = (url: string, title: string, durationSeconds = opts.durationSeconds) =>
      load(url, { connections: opts.connections, durationSeconds, headers: g.headers, title });
    opts.log('warming up both targets…');
    await run(gantryUrl, 'gantry warm-up', 1);
    await run(bare.ready.url, 'bare warm-up', 1);
    // Alternate the targets round by round so load from elsewhere on the machine hits both alike.
    const rounds = { gantry: [] as LoadResult[], bare: [] as LoadResult[] };
    for (let i = 0; i < opts.rounds; i++) {
      opts.log(`round ${i + 1}/${opts.rounds}: Gantry, then bare Express, ${opts.durationSeconds} s each…`);
      rounds.gantry.push(await run(gantryUrl, 'gantry'));
      rounds.bare.push(await run(bare.ready.url, 'bare express'));
    }
    const afterLoad = procMemory(g.pid);
    opts.log(`soak: ${SOAK_MINUTES} compressed minutes of polling…`);
    const soaked = await soak(g, opts.log);
    return {
      idle,
      throughput: {
        gantry: medianRound(rounds.gantry),
        bare: medianRound(rounds.bare),
        rounds,
        responseBytes: JSON.stringify(status.body).length,
      },
      rssAfterLoadBytes: afterLoad?.rss ?? null,
      soak: soaked,
      peakBytes: procMemory(g.pid)?.hwm ?? null,
    };
  } finally {
    if (bare) await stopChild(bare.child);
    await g.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * The idle measure of a started and logged-in Gantry: one GET /status, then a second of rest; the
 * answer is kept (the bare route serves the same JSON).
 */
async function idleAfterStatus(g: GantryChild): Promise<{ idle: IdleMemory; status: JsonResponse }> {
  const status = await requestJson('GET', `${g.url}${STATUS_PATH}`, { headers: g.headers });
  if (status.status !== 200) throw new Error(`status answered ${status.status}`);
  await new Promise((r) => setTimeout(r, 1000));
  const mem = procMemory(g.pid)!;
  return {
    idle: {
      afterStartBytes: g.rssAfterStart,
      afterLoginBytes: g.rssAfterLogin,
      afterStatusBytes: mem.rss,
      anonymousBytes: mem.anonymous,
      fileBackedBytes: mem.fileBacked,
      peakBytes: mem.hwm,
    },
    status,
  };
}

/**
 * The idle measure of a fresh data dir: a first start, or with `restart` the server started again on
 * what a first start left (its store: the admin exists), then login, GET /status,
 * 1 s. A restart is what a gateway that has run before starts as, every time but the first.
 */
async function measureIdle(cmd: GantryCommand, restart: boolean): Promise<IdleMemory> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-bench-idle-'));
  try {
    const g = await startGantryChild(cmd, { dataDir, env: { GANTRY_DEMO_FEED: 'off' }, restart });
    try {
      return (await idleAfterStatus(g)).idle;
    } finally {
      await g.stop();
    }
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Where the dependency floor (bench/lib/dependency-floor.ts) is built, beside the server's bundle. */
const FLOOR_DIR = path.join(ROOT, 'dist', 'dependency-floor');

/**
 * The dependency floor's idle, measured as Gantry's is (first start, restart): Gantry's runtime
 * packages and none of its code, built and launched as the server is. Refused unless it bundles
 * exactly the server's set of packages, so the floor cannot drift from what Gantry carries.
 */
async function measureDependencyFloor(): Promise<{
  firstStart: IdleMemory;
  restart: IdleMemory;
  packages: number;
}> {
  const scratch = path.join(ROOT, 'dist', `server-bundle-packages-${process.pid}`);
  let serverPackages: string[];
  try {
    serverPackages = (await buildServer(scratch)).packages;
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  try {
    const { packages } = await buildServer(FLOOR_DIR, 'bench/lib/dependency-floor.ts');
    const missing = serverPackages.filter((p) => !packages.includes(p));
    const extra = packages.filter((p) => !serverPackages.includes(p));
    if (missing.length > 0 || extra.length > 0) {
      throw new Error(
        `bench/lib/dependency-floor.ts must bundle the server's packages: missing ${missing.join(', ') || 'none'}; not in the server ${extra.join(', ') || 'none'}`,
      );
    }
    const cmd = launchedLikeTheServer(FLOOR_DIR);
    return {
      firstStart: await measureIdle(cmd, false),
      restart: await measureIdle(cmd, true),
      packages: packages.length,
    };
  } finally {
    fs.rmSync(FLOOR_DIR, { recursive: true, force: true });
  }
}

function loadRow(name: string, r: LoadResult): Array<string | number> {
  return [name, r.requestsPerSecond, r.latencyMs.p50, r.latencyMs.p99, r.latencyMs.max, r.requests];
}

export const foundationSuite: BenchSuite = {
  name: 'foundation',
  description:
    'start-up to first served request; GET /api/v1/ota/status vs a bare Express route; idle memory; soak',
  async run(opts: BenchOptions): Promise<SuiteResult> {
    const notes: string[] = [];
    const loadBefore = os.loadavg().map((v) => round(v, 2));
    if (loadBefore[0]! > os.cpus().length * 0.5) {
      notes.push(
        `the machine was busy (1-min load ${loadBefore[0]} on ${os.cpus().length} CPUs): absolute numbers are noisy, compare the ratios`,
      );
    }
    // The built server through bin/gantry-server, as production starts it (rebuilt when stale).
    const cmd = gantryCommand(opts);
    if (cmd.note) notes.push(cmd.note);

    const modes: StartupMode[] = [
      {
        name: 'bare express (node -e)',
        command: process.execPath,
        args: ['--input-type=module', '-e', BARE_EXPRESS],
        gantry: false,
      },
      ...(cmd.mode === 'dist'
        ? [{ name: DIST_MODE, command: cmd.command, args: cmd.args, env: cmd.env, gantry: true }]
        : []),
      {
        name: 'gantry (tsx, npm run dev)',
        command: TSX,
        args: [path.join(ROOT, 'server', 'main.ts')],
        gantry: true,
      },
    ];
    opts.log(`start-up: ${modes.map((m) => m.name).join(', ')}; ${opts.startupRuns} runs each`);
    const startup = await measureStartup(modes, opts);
    if (cmd.mode !== 'dist') notes.push('no built server: the shipped-server rows ran under tsx');
    const shipped = await measureShipped(cmd, opts);
    const { throughput, idle, soak: soaked } = shipped;
    opts.log('idle after a restart…');
    const restartIdle = await measureIdle(cmd, true);
    opts.log(`idle after a restart + login + /status: ${mib(restartIdle.afterStatusBytes)} MiB`);
    opts.log('the dependency floor (the packages of Gantry, none of its code)…');
    const floor = await measureDependencyFloor();
    opts.log(
      `dependency floor idle: first start ${mib(floor.firstStart.afterStatusBytes)}, restart ${mib(floor.restart.afterStatusBytes)} MiB`,
    );

    const bareStart = startup['bare express (node -e)']!.warmMs!;
    const distStart = startup[DIST_MODE];
    const ratios: Record<string, number> = {
      'status throughput, gantry / bare': round(
        throughput.gantry.requestsPerSecond / throughput.bare.requestsPerSecond,
        2,
      ),
      'status p99 latency, gantry / bare': round(
        throughput.gantry.latencyMs.p99 / Math.max(throughput.bare.latencyMs.p99, 1),
        2,
      ),
    };
    if (distStart?.warmMs)
      ratios['start-up (restart), gantry dist / bare'] = round(distStart.warmMs / bareStart, 2);
    if (distStart?.coldMs)
      ratios['start-up (first start), gantry dist / bare'] = round(distStart.coldMs / bareStart, 2);
    notes.push(
      'p99 latency of the bare route is floored at 1 ms for the ratio (autocannon reports whole milliseconds).',
      'First start: fresh data dir (migrations, admin scrypt hash, simulated slot images written and fsynced; the bundle compiled from the V8 code cache its build ships). Restart: existing data dir (server/bundle-loader.ts). Gantry runs with GANTRY_DEMO_FEED=off (a gateway in the field has a feed configured and runs no demo feed).',
      `GET ${STATUS_PATH} under load: the shipped server (${cmd.mode === 'dist' ? 'bin/gantry-server' : 'tsx'}) and bare Express each in its own process, same JSON, same client.`,
      `Dependency floor (bench/lib/dependency-floor.ts): the ${floor.packages} packages the server bundles and none of Gantry's code (SQLite through drizzle, Express with a JSON body, a zod-checked login signing a JWT, a tRPC procedure, a statechart, a WebSocket server, multer), built by scripts/build-server.ts and launched with bin/gantry-server's flags and malloc settings, measured as Gantry is: what Node and the fixed stack take before Gantry adds anything.`,
      `Soak: ${SOAK_MINUTES} compressed minutes, each ${SOAK_POLLS_PER_MINUTE} GETs of ${SOAK_PATHS.join(', ')} (10 at a time) and a login every 10 minutes. VmRSS is a sawtooth (the heap fills for ~13 compressed minutes, then a full GC): growth is the lowest VmRSS of minutes 36-60 minus the lowest of minutes 6-30, what stays resident after the full collections; the median of the last 10 minutes minus that of minutes 6-15 (how growth was measured before 2026-12-05) reads the sawtooth's phase as much as growth, and is shown beside it.`,
    );
    const idleMiB = mib(idle.afterStatusBytes);
    const restartIdleMiB = mib(restartIdle.afterStatusBytes);
    const soakGrowthMiB = mib(soaked.growthBytes);
    const targets: Record<string, { target: string; value: number | null; met: boolean | null }> = {
      'idle RSS after start + login + /status, MiB': { target: '≤ 60', value: idleMiB, met: idleMiB <= 60 },
      'idle RSS after a restart + login + /status, MiB': {
        target: '≤ 60',
        value: restartIdleMiB,
        met: restartIdleMiB <= 60,
      },
      'peak (VmHWM) of a restart + login + /status, MiB': {
        target: '≤ 80',
        value: mib(restartIdle.peakBytes),
        met: mib(restartIdle.peakBytes) <= 80,
      },
      'soak RSS growth over the compressed hour, MiB': {
        target: '≤ 2 (no growth)',
        value: soakGrowthMiB,
        met: soakGrowthMiB <= 2,
      },
      'status throughput, gantry / bare': {
        target: '≥ 0.7',
        value: ratios['status throughput, gantry / bare']!,
        met: ratios['status throughput, gantry / bare']! >= 0.7,
      },
      'status p99 latency, gantry / bare': {
        target: '≤ 1.2',
        value: ratios['status p99 latency, gantry / bare']!,
        met: ratios['status p99 latency, gantry / bare']! <= 1.2,
      },
    };
    const restart = ratios['start-up (restart), gantry dist / bare'] ?? null;
    targets['restart to first answer, gantry / bare'] = {
      target: '≤ 2',
      value: restart,
      met: restart === null ? null : restart <= 2,
    };
    ratios['idle RSS after start + login + /status, MiB'] = idleMiB;
    ratios['idle RSS after a restart + login + /status, MiB'] = restartIdleMiB;
    ratios['soak RSS growth, MiB'] = soakGrowthMiB;
    ratios['soak RSS growth by medians (before 2026-12-05), MiB'] = mib(soaked.medianGrowthBytes);
    ratios['idle RSS, gantry - dependency floor (first start), MiB'] = round(
      idleMiB - mib(floor.firstStart.afterStatusBytes),
      1,
    );
    ratios['idle RSS, gantry - dependency floor (restart), MiB'] = round(
      restartIdleMiB - mib(floor.restart.afterStatusBytes),
      1,
    );

    const idleMeasures = [
      ['first start', idle],
      ['restart', restartIdle],
      ['dependency floor, first start', floor.firstStart],
      ['dependency floor, restart', floor.restart],
    ] as const;
    return {
      tables: [
        {
          title: `Start-up: spawn → first HTTP response (401 on ${STATUS_PATH}), median of ${opts.startupRuns}, ms`,
          columns: ['mode', 'first start', 'restart'],
          rows: modes.map((m) => [m.name, startup[m.name]!.coldMs ?? '–', startup[m.name]!.warmMs ?? '–']),
        },
        {
          title: `GET ${STATUS_PATH}: ${opts.connections} connections, ${opts.durationSeconds} s, ${throughput.responseBytes}-byte JSON, median of ${opts.rounds} rounds`,
          columns: ['target', 'req/s', 'p50 ms', 'p99 ms', 'max ms', 'requests'],
          rows: [
            loadRow('gantry (token + X-Gateway-ID)', throughput.gantry),
            loadRow('bare express, same JSON', throughput.bare),
          ],
        },
        {
          title: 'Shipped server memory (VmRSS, MiB; peak is VmHWM: start-up and the login scrypt included)',
          columns: [
            'start',
            'started',
            'logged in',
            'after /status (idle)',
            'peak so far',
            'after the load',
            'after the soak',
            'peak at the end',
          ],
          rows: [
            [
              'first start',
              mib(idle.afterStartBytes ?? 0),
              mib(idle.afterLoginBytes ?? 0),
              idleMiB,
              mib(idle.peakBytes),
              mib(shipped.rssAfterLoadBytes ?? 0),
              mib(soaked.rssSamples[soaked.rssSamples.length - 1] ?? 0),
              mib(shipped.peakBytes ?? 0),
            ],
            // The other idle measures: no load or soak of their own.
            ...idleMeasures
              .slice(1)
              .map(([start, m]) => [
                start,
                mib(m.afterStartBytes ?? 0),
                mib(m.afterLoginBytes ?? 0),
                mib(m.afterStatusBytes),
                mib(m.peakBytes),
                '–',
                '–',
                '–',
              ]),
          ],
        },
        {
          title:
            "What the idle VmRSS is made of (MiB, /proc/<pid>/status): anonymous is V8's heap and malloc's, which the kernel cannot take back without swap; file-backed is the node binary's and the libraries' pages, clean, which it drops under memory pressure and reads again when touched",
          columns: ['start', 'idle VmRSS', 'anonymous', 'file-backed'],
          rows: idleMeasures.map(([start, m]) => [
            start,
            mib(m.afterStatusBytes),
            mib(m.anonymousBytes),
            mib(m.fileBackedBytes),
          ]),
        },
        {
          title: `Soak: ${soaked.minutes} compressed minutes, ${soaked.requests} requests in ${soaked.seconds} s; VmRSS after every 10th minute (MiB)`,
          columns: [
            'growth (troughs)',
            'growth (medians)',
            ...soaked.rssSamples.filter((_, i) => (i + 1) % 10 === 0).map((_, i) => `min ${(i + 1) * 10}`),
          ],
          rows: [
            [
              soakGrowthMiB,
              mib(soaked.medianGrowthBytes),
              ...soaked.rssSamples.filter((_, i) => (i + 1) % 10 === 0).map((b) => mib(b)),
            ],
          ],
        },
        {
          title: 'Targets (issue 16)',
          columns: ['what', 'target', 'value', 'met'],
          rows: Object.entries(targets).map(([k, v]) => [
            k,
            v.target,
            v.value ?? '–',
            v.met === null ? '–' : v.met ? 'yes' : 'NO',
          ]),
        },
      ],
      ratios,
      record: {
        options: {
          connections: opts.connections,
          durationSeconds: opts.durationSeconds,
          rounds: opts.rounds,
          startupRuns: opts.startupRuns,
        },
        loadAverage: { before: loadBefore, after: os.loadavg().map((v) => round(v, 2)) },
        startup,
        throughput,
        idle,
        restartIdle,
        dependencyFloor: floor,
        rssAfterLoadBytes: shipped.rssAfterLoadBytes,
        soak: soaked,
        peakBytes: shipped.peakBytes,
        targets,
      },
      notes,
    };
  },
};
