import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gantryCommand } from './lib/gantry-child.js';
import { load, type LoadResult } from './lib/load.js';
import { freePort, spawnReady, stopChild, timeToFirstResponse } from './lib/process.js';
import { median, round } from './lib/report.js';
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

interface Targets {
  gantryUrl: string;
  bareUrl: string;
  headers: Record<string, string>;
  responseBytes: number;
}

/** The round with the median throughput: one coherent set of numbers, not a mix of rounds. */
function medianRound(rounds: LoadResult[]): LoadResult {
  const sorted = [...rounds].sort((a, b) => a.requestsPerSecond - b.requestsPerSecond);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

async function measureThroughput(opts: BenchOptions) {
  const { child, ready } = await spawnReady<Targets>(
    TSX,
    [path.join(ROOT, 'bench', 'targets', 'foundation-server.ts')],
    {
      cwd: ROOT,
      env: { ...process.env },
    },
  );
  try {
    const run = (url: string, title: string, durationSeconds = opts.durationSeconds) =>
      load(url, { connections: opts.connections, durationSeconds, headers: ready.headers, title });
    opts.log('warming up both targets…');
    await run(ready.gantryUrl, 'gantry warm-up', 1);
    await run(ready.bareUrl, 'bare warm-up', 1);
    // Alternate the targets round by round so load from elsewhere on the machine hits both alike.
    const rounds = { gantry: [] as LoadResult[], bare: [] as LoadResult[] };
    for (let i = 0; i < opts.rounds; i++) {
      opts.log(`round ${i + 1}/${opts.rounds}: Gantry, then bare Express, ${opts.durationSeconds} s each…`);
      rounds.gantry.push(await run(ready.gantryUrl, 'gantry'));
      rounds.bare.push(await run(ready.bareUrl, 'bare express'));
    }
    return {
      gantry: medianRound(rounds.gantry),
      bare: medianRound(rounds.bare),
      rounds,
      responseBytes: ready.responseBytes,
    };
  } finally {
    await stopChild(child);
  }
}

function loadRow(name: string, r: LoadResult): Array<string | number> {
  return [name, r.requestsPerSecond, r.latencyMs.p50, r.latencyMs.p99, r.latencyMs.max, r.requests];
}

export const foundationSuite: BenchSuite = {
  name: 'foundation',
  description: 'start-up to first served request; GET /api/v1/ota/status vs a bare Express route',
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
    const throughput = await measureThroughput(opts);

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
      'First start: fresh data dir (migrations, admin scrypt hash, simulated slot images written and fsynced). Restart: existing data dir.',
    );

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
      },
      notes,
    };
  },
};
