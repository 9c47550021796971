import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCommand } from './lib/command.js';
import { createFixtures, MiB, sha256File, type Fixtures, type ImageFixture } from './lib/fixtures.js';
import {
  connectionResets,
  gantryCommand,
  procCpuSeconds,
  procMemory,
  requestJson,
  resetPeakRss,
  ROOT,
  sampleRss,
  restartMode,
  startGantryChild,
  trustVendorKey,
  type GantryChild,
  type GantryCommand,
} from './lib/gantry-child.js';
import { spawnReady, stopChild } from './lib/process.js';
import { median, round } from './lib/report.js';
import { mib, percentile } from './lib/stats.js';
import type { BenchOptions, BenchSuite, SuiteResult, Table } from './lib/suite.js';
import { measureUpload } from './upload.js';

/**
 * The update pipeline end to end, next to the C peer and the shell floor, on the same random
 * images served by the same loopback static server:
 *
 * - Gantry (a child process, built dist): signed bundle in a TUF feed; REST login, check-updates,
 *   then POST /api/v1/ota/download timed until GET /progress says `downloaded` (polled every
 *   20 ms, every latency recorded); slot B hashed against the image; peak RSS from VmHWM.
 * - SWUpdate: /work/shared/peers/swupdate-stream.sh IMAGE SLOT RUNS (signed .swu, streamed
 *   straight into a slot file, plus sync).
 * - Shell: `curl URL | tee slot | openssl dgst -sha256` plus `sync slot`.
 * - Manual upload of the largest bundle (bench/upload.ts).
 *
 * Environment knobs (for quick trials): BENCH_PIPELINE_SIZES_MIB (default "256,1024"),
 * BENCH_PIPELINE_RUNS (default 3), BENCH_PIPELINE_UPLOAD=0 to skip the upload part,
 * BENCH_PIPELINE_CLIENTS (default "gantry"): the feed HTTP clients to run Gantry with
 * (GANTRY_FEED_HTTP_CLIENT, e.g. "gantry,node"; runs interleaved, one table row each; the first is
 * the one compared with the peers), BENCH_PIPELINE_PEERS=0 to skip SWUpdate, the shell pipeline and
 * bare node (a clients-only comparison), BENCH_PIPELINE_RESTART=1 to measure each Gantry on a
 * restart rather than a first start (with BENCH_RESULTS_SUFFIX=restart: pipeline-restart.json),
 * BENCH_PIPELINE_COMPRESSED (default "zstd,brotli"; "" for none) and
 * BENCH_PIPELINE_COMPRESSED_MIB (default 256): the compressed bundles' codecs and image size.
 *
 * Compressed bundles (issue 16: "decompression of compressed bundles reported on its own row"): one
 * compressible image (half the entropy of random data, so it compresses to about half, as a root
 * filesystem does) in a format v2 bundle per codec, downloaded by Gantry as the others are. Their
 * CPU, decompression included, is reported on rows of their own against `openssl dgst` over the
 * bundle file and over the image written; the 2.5x target is the uncompressed download's.
 */

const PEER =
  process.env.BENCH_SWUPDATE_PEER ?? path.resolve(ROOT, '..', 'shared', 'peers', 'swupdate-stream.sh');
const STATIC_SERVER = path.join(ROOT, 'bench', 'lib', 'static-server.ts');
const POLL_MS = 20;
/** Baseline /progress requests after each download (the same process, nothing streaming). */
const IDLE_POLLS = 25;

interface ToolRun {
  seconds: number;
  slotOk: boolean;
}

interface GantryRun extends ToolRun {
  jobId: string;
  /** CPU seconds (user + system) the Gantry process used from POST /download to `downloaded`. */
  cpuSeconds: number | null;
  rssAfterStartBytes: number | null;
  rssAfterLoginBytes: number | null;
  /** VmRSS after login and check-updates, just before POST /download. */
  idleRssBytes: number | null;
  /** VmHWM after the job reached `downloaded`: the process's peak resident set, start-up included. */
  peakRssBytes: number | null;
  /** Largest VmRSS sampled every 50 ms during the download. */
  sampledPeakRssBytes: number;
  /** VmHWM over start-up (to the first answer) and over the login alone (null: no peak reset). */
  startupPeakRssBytes: number | null;
  loginPeakRssBytes: number | null;
  /** VmHWM from POST /download to `downloaded` alone: the download's own peak (null: no peak reset). */
  downloadPeakRssBytes: number | null;
  /** VmRSS once the job is `downloaded` and the idle polls after it are done (~0.5 s later). */
  rssAfterBytes: number | null;
  /** Latency of every GET /progress issued while the job ran, ms. */
  progressLatenciesMs: number[];
  progressPolls: number;
  /** The same GET /progress on the same process once the job is `downloaded` (nothing streaming). */
  idleProgressLatenciesMs: number[];
}

interface SizeResult {
  label: string;
  bytes: number;
  bundleBytes: number;
  gantry: GantryRun[];
  /** Every client's runs (the first client's are `gantry`). */
  byClient: Record<string, GantryRun[]>;
  swupdate: ToolRun[];
  swupdateError: string | null;
  /** SWUpdate's own CPU seconds (user + system of its processes) per run, when the shim saw them. */
  swupdateCpuSeconds: number[];
  shell: ToolRun[];
  bare: BareRun[];
  /** CPU seconds of `openssl dgst -sha256` over the bundle Gantry downloads: the hashing floor. */
  opensslCpuSeconds: number[];
}

/** The memory floor: Node itself receiving the same bundle over HTTP into a file, nothing else. */
interface BareRun extends ToolRun {
  startRssBytes: number;
  peakRssBytes: number;
}

/**
 * `http.get(url)` piped to a file and fsynced, in a node started with the launcher's settings
 * (bin/gantry-server): what receiving the bundle costs Node before Gantry does anything with it.
 */
const BARE_DOWNLOAD = `
const fs = require('node:fs'), http = require('node:http');
const hwm = () => Number(/VmHWM:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
const [url, out] = process.argv.slice(1);
const startRss = process.memoryUsage().rss;
const t0 = performance.now();
http.get(url, (res) => {
  const file = fs.createWriteStream(out);
  res.pipe(file);
  file.on('finish', () => {
    fs.fsyncSync(fs.openSync(out, 'r+'));
    console.log(JSON.stringify({ seconds: (performance.now() - t0) / 1000, startRss, peakRss: hwm() }));
  });
});
`;

async function bareDownload(url: string, slot: string, img: ImageFixture): Promise<BareRun> {
  fs.rmSync(slot, { force: true });
  try {
    const r = await runCommand(
      process.execPath,
      ['--max-semi-space-size=2', '--optimize-for-size', '-e', BARE_DOWNLOAD, url, slot],
      {
        timeoutMs: 300_000,
        env: { ...process.env, MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '131072' },
      },
    );
    if (r.code !== 0) throw new Error(`bare node download failed (${r.code}): ${r.stderr}`);
    const out = JSON.parse(r.stdout.trim()) as { seconds: number; startRss: number; peakRss: number };
    return {
      seconds: out.seconds,
      slotOk: fs.statSync(slot).size === img.bundleBytes,
      startRssBytes: out.startRss,
      peakRssBytes: out.peakRss,
    };
  } finally {
    fs.rmSync(slot, { force: true });
  }
}

function envNumber(name: string, fallback: number): number {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} must be a positive number`);
  return v;
}

/**
 * GETs /progress every POLL_MS on a fixed schedule (open loop: a slow answer does not delay the
 * next request, so a stalled server shows up in the latencies) until the job is `downloaded`.
 */
function pollUntilDownloaded(
  g: GantryChild,
  jobId: string,
  timeoutMs: number,
): Promise<{ doneAt: number; latencies: number[]; polls: number }> {
  return new Promise((resolve, reject) => {
    const latencies: number[] = [];
    let polls = 0;
    let settled = false;
    const finish = (err: Error | null, doneAt = 0) => {
      if (settled) return;
      settled = true;
      clearInterval(timer);
      clearTimeout(deadline);
      if (err) reject(err);
      else resolve({ doneAt, latencies, polls });
    };
    const tick = () => {
      polls++;
      const t0 = performance.now();
      requestJson('GET', `${g.url}/api/v1/ota/progress?job_id=${jobId}`, { headers: g.headers }).then(
        (res) => {
          const t1 = performance.now();
          if (settled) return;
          latencies.push(t1 - t0);
          const status = res.body?.data?.status as string | undefined;
          if (res.status !== 200)
            finish(new Error(`GET /progress: ${res.status} ${JSON.stringify(res.body)}`));
          else if (status === 'downloaded') finish(null, t1);
          else if (status === 'error' || status === 'cancelled') {
            finish(new Error(`job ${jobId} ended ${status}: ${JSON.stringify(res.body.data.error)}`));
          }
        },
        (err: Error) => finish(err),
      );
    };
    const timer = setInterval(tick, POLL_MS);
    const deadline = setTimeout(() => finish(new Error(`job ${jobId} not downloaded in time`)), timeoutMs);
    tick();
  });
}

/** `n` GETs of /progress, one every POLL_MS, on a job that is no longer streaming. */
async function idleProgressLatencies(g: GantryChild, jobId: string, n: number): Promise<number[]> {
  const out: number[] = [];
  const pending: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    pending.push(
      requestJson('GET', `${g.url}/api/v1/ota/progress?job_id=${jobId}`, { headers: g.headers }).then(() => {
        out.push(performance.now() - t0);
      }),
    );
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  await Promise.all(pending);
  return out;
}

async function gantryDownload(
  cmd: GantryCommand,
  fx: Fixtures,
  img: ImageFixture,
  feedUrl: string,
  work: string,
  client: string,
): Promise<GantryRun> {
  const dataDir = fs.mkdtempSync(path.join(work, 'gantry-data-'));
  trustVendorKey(dataDir, fx.vendorPublicKeyPem);
  const g = await startGantryChild(cmd, {
    dataDir,
    env: { GANTRY_FEED_URL: feedUrl, GANTRY_FEED_ROOT: fx.feedRoot, GANTRY_FEED_HTTP_CLIENT: client },
    phasePeaks: true,
    restart: restartMode(),
  });
  try {
    const check = await requestJson('POST', `${g.url}/api/v1/ota/check-updates`, {
      headers: g.headers,
      body: { force: true, background: false },
    });
    if (check.status !== 200) throw new Error(`check-updates: ${check.status} ${JSON.stringify(check.body)}`);
    const list = await requestJson('GET', `${g.url}/api/v1/ota/updates`, { headers: g.headers });
    const update = (list.body?.data?.updates as Array<{ id: string; version: string }> | undefined)?.find(
      (u) => u.version === img.version,
    );
    if (!update) throw new Error(`the feed does not offer ${img.version}: ${JSON.stringify(list.body)}`);

    const idle = procMemory(g.pid);
    // From here VmHWM is the download's own peak; what came before (check-updates) is kept.
    const checkPeak = g.peakBeforeBytes === null ? null : resetPeakRss(g.pid);
    const sampler = sampleRss(g.pid);
    const cpu0 = procCpuSeconds(g.pid);
    const t0 = performance.now();
    const start = await requestJson('POST', `${g.url}/api/v1/ota/download`, {
      headers: g.headers,
      body: { update_id: update.id, version: img.version, target_partition: 'B' },
    });
    if (start.status !== 200) throw new Error(`download: ${start.status} ${JSON.stringify(start.body)}`);
    const jobId = start.body.data.job_id as string;
    const polled = await pollUntilDownloaded(g, jobId, 300_000).catch((err: Error) => {
      const state = g.child.exitCode ?? g.child.signalCode ?? 'still running';
      throw new Error(`${err.message} (Gantry: ${state})\n--- Gantry output ---\n${g.output()}`);
    });
    const seconds = (polled.doneAt - t0) / 1000;
    const cpu1 = procCpuSeconds(g.pid);
    const sampled = sampler.stop();
    const mem = procMemory(g.pid);
    const idleLatencies = await idleProgressLatencies(g, jobId, IDLE_POLLS);
    const after = procMemory(g.pid);
    const lifetimePeak =
      mem && g.peakBeforeBytes !== null && checkPeak !== null
        ? Math.max(g.peakBeforeBytes, checkPeak, mem.hwm)
        : (mem?.hwm ?? null);

    const slot = g.slotFile('B');
    const slotOk = fs.statSync(slot).size === img.bytes && (await sha256File(slot, img.bytes)) === img.sha256;
    return {
      seconds,
      slotOk,
      jobId,
      cpuSeconds: cpu0 === null || cpu1 === null ? null : round(cpu1 - cpu0, 2),
      rssAfterStartBytes: g.rssAfterStart,
      rssAfterLoginBytes: g.rssAfterLogin,
      idleRssBytes: idle?.rss ?? null,
      peakRssBytes: lifetimePeak,
      sampledPeakRssBytes: sampled,
      startupPeakRssBytes: g.startupPeakRssBytes,
      loginPeakRssBytes: g.loginPeakRssBytes,
      downloadPeakRssBytes: checkPeak === null ? null : (mem?.hwm ?? null),
      rssAfterBytes: after?.rss ?? null,
      progressLatenciesMs: polled.latencies.map((l) => round(l, 2)),
      progressPolls: polled.polls,
      idleProgressLatenciesMs: idleLatencies.map((l) => round(l, 2)),
    };
  } finally {
    await g.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

async function shellDownload(url: string, img: ImageFixture, slot: string): Promise<ToolRun> {
  fs.rmSync(slot, { force: true });
  try {
    const r = await runCommand(
      'bash',
      [
        '-c',
        'set -eo pipefail; curl -sS "$1" | tee "$2" | openssl dgst -sha256 -r; sync "$2"',
        'shell',
        url,
        slot,
      ],
      { timeoutMs: 300_000 },
    );
    if (r.code !== 0) throw new Error(`shell pipeline failed (${r.code}): ${r.stderr}`);
    const digest = r.stdout.trim().split(/\s+/)[0];
    return { seconds: r.seconds, slotOk: digest === img.sha256 && fs.statSync(slot).size === img.bytes };
  } finally {
    fs.rmSync(slot, { force: true });
  }
}

/** User + system seconds of the children a `bash -c` script waited for, from bash's `times`. */
function childCpuSeconds(timesOutput: string): number | null {
  // `times` prints the shell's own line, then its children's: "0m1.234s 0m0.567s".
  const lines = timesOutput.trim().split('\n');
  const m = /^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/.exec(lines[lines.length - 1] ?? '');
  if (!m) return null;
  return Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4]);
}

/** CPU seconds `openssl dgst -sha256` needs for `file` (no SHA-NI here: the hashing floor). */
async function opensslCpu(file: string): Promise<number> {
  const r = await runCommand(
    'bash',
    ['-c', 'openssl dgst -sha256 "$1" >/dev/null && times', 'openssl', file],
    {
      timeoutMs: 300_000,
    },
  );
  const cpu = r.code === 0 ? childCpuSeconds(r.stdout) : null;
  if (cpu === null) throw new Error(`openssl dgst failed (${r.code}): ${r.stderr}`);
  return cpu;
}

/** An executable of that name on PATH, or undefined. */
function onPath(name: string): string | undefined {
  return process.env.PATH?.split(':')
    .map((dir) => path.join(dir, name))
    .find((f) => fs.existsSync(f));
}

/**
 * A directory put first on the peer script's PATH with a `swupdate` that runs the real one under
 * `perf stat -e task-clock` and appends its CPU milliseconds to `logFile` (swupdate and every
 * process it forks: its installer runs in children it does not wait for, so bash's `times` sees
 * nothing). The peer script itself stays untouched. Null without perf, or while SWUpdate is not
 * installed yet (the script installs it on its first run, which then has no CPU figure).
 */
function swupdateCpuShim(work: string, logFile: string): string | null {
  const real = onPath('swupdate');
  const perf = onPath('perf');
  if (!real || !perf) return null;
  const dir = fs.mkdtempSync(path.join(work, 'swupdate-shim-'));
  const out = path.join(dir, 'perf.out');
  fs.writeFileSync(
    path.join(dir, 'swupdate'),
    [
      '#!/bin/bash',
      `${JSON.stringify(perf)} stat -x, -e task-clock -o ${JSON.stringify(out)} ${JSON.stringify(real)} "$@"`,
      'rc=$?',
      `grep task-clock ${JSON.stringify(out)} | cut -d, -f1 >> ${JSON.stringify(logFile)}`,
      'exit $rc',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  return dir;
}

async function swupdateDownloads(
  img: ImageFixture,
  slot: string,
  runs: number,
  work: string,
): Promise<{ runs: ToolRun[]; cpuSeconds: number[]; error: string | null }> {
  const cpuLog = path.join(work, 'swupdate-cpu.log');
  fs.rmSync(cpuLog, { force: true });
  const shim = swupdateCpuShim(work, cpuLog);
  const cpuSeconds = () =>
    fs.existsSync(cpuLog)
      ? fs
          .readFileSync(cpuLog, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((line) => Number(line) / 1000)
          .filter((c) => Number.isFinite(c) && c > 0)
      : [];
  try {
    const r = await runCommand('bash', [PEER, img.image, slot, String(runs)], {
      timeoutMs: 600_000,
      env: shim ? { ...process.env, PATH: `${shim}:${process.env.PATH ?? ''}` } : process.env,
    });
    const parsed = r.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { seconds: number; slot_ok: boolean; bytes: number });
    if (r.code !== 0 || parsed.length === 0) {
      return {
        runs: parsed.map((p) => ({ seconds: p.seconds, slotOk: p.slot_ok })),
        cpuSeconds: cpuSeconds(),
        error: `swupdate-stream.sh exited ${r.code}: ${r.stderr.trim().split('\n').slice(-5).join(' | ')}`,
      };
    }
    return {
      runs: parsed.map((p) => ({ seconds: p.seconds, slotOk: p.slot_ok })),
      cpuSeconds: cpuSeconds(),
      error: null,
    };
  } catch (err) {
    return { runs: [], cpuSeconds: [], error: `swupdate-stream.sh could not run: ${(err as Error).message}` };
  } finally {
    fs.rmSync(slot, { force: true });
  }
}

/** The compressed bundle of one codec: Gantry's runs, and openssl dgst's CPU over the bundle and the image. */
interface CompressedResult {
  img: ImageFixture;
  gantry: GantryRun[];
  opensslBundleCpuSeconds: number[];
  opensslImageCpuSeconds: number[];
}

const med = (runs: ToolRun[]) => (runs.length ? median(runs.map((r) => r.seconds)) : NaN);
const secs = (runs: ToolRun[]) => runs.map((r) => round(r.seconds, 2)).join(' / ') || '–';
const fmt = (v: number, digits = 2) => (Number.isFinite(v) ? round(v, digits) : '–');

function latencyStats(samples: number[]) {
  return {
    requests: samples.length,
    p50: round(percentile(samples, 50), 2),
    p90: round(percentile(samples, 90), 2),
    p99: round(percentile(samples, 99), 2),
    max: round(Math.max(...samples), 2),
  };
}

export const pipelineSuite: BenchSuite = {
  name: 'pipeline',
  description:
    'update download into slot B: Gantry vs SWUpdate vs curl|tee|openssl (256 MiB, 1 GiB); compressed bundles; /progress latency; manual upload',
  async run(opts: BenchOptions): Promise<SuiteResult> {
    const sizes = (process.env.BENCH_PIPELINE_SIZES_MIB ?? '256,1024')
      .split(',')
      .map((s) => Math.round(Number(s) * MiB));
    if (sizes.some((s) => !Number.isFinite(s) || s <= 0))
      throw new Error('BENCH_PIPELINE_SIZES_MIB: sizes in MiB');
    const runs = Math.round(envNumber('BENCH_PIPELINE_RUNS', 3));
    const withUpload = process.env.BENCH_PIPELINE_UPLOAD !== '0';
    const withPeers = process.env.BENCH_PIPELINE_PEERS !== '0';
    const clients = (process.env.BENCH_PIPELINE_CLIENTS ?? 'gantry')
      .split(',')
      .map((c) => c.trim())
      .filter(Boolean);
    if (clients.length === 0) throw new Error('BENCH_PIPELINE_CLIENTS: at least one client');
    const notes: string[] = [];
    const loadBefore = os.loadavg().map((v) => round(v, 2));
    if (loadBefore[0]! > os.cpus().length * 0.5) {
      notes.push(
        `the machine was busy (1-min load ${loadBefore[0]} on ${os.cpus().length} CPUs): absolute numbers are noisy, compare the ratios`,
      );
    }
    const t0 = performance.now();
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-bench-pipeline-'));
    let server: Awaited<ReturnType<typeof spawnReady<{ url: string }>>> | null = null;
    try {
      const cmd = gantryCommand(opts);
      if (cmd.note) notes.push(cmd.note);
      opts.log(`Gantry runs as: ${[cmd.command, ...cmd.args].join(' ')}`);
      const compressions = (process.env.BENCH_PIPELINE_COMPRESSED ?? 'zstd,brotli')
        .split(',')
        .map((c) => c.trim())
        .filter(Boolean);
      for (const c of compressions) {
        if (c !== 'zstd' && c !== 'brotli')
          throw new Error(`BENCH_PIPELINE_COMPRESSED: zstd or brotli, not ${c}`);
      }
      const compressedBytes = Math.round(envNumber('BENCH_PIPELINE_COMPRESSED_MIB', 256) * MiB);
      const fx = await createFixtures(work, sizes, opts.log, {
        bytes: compressedBytes,
        compressions: compressions as Array<'zstd' | 'brotli'>,
      });
      server = await spawnReady<{ url: string }>(
        process.execPath,
        ['--import', 'tsx', STATIC_SERVER, fx.feedDir],
        {
          cwd: ROOT,
          env: { ...process.env },
        },
      );
      const feedUrl = server.ready.url;

      const results: SizeResult[] = [];
      for (const img of fx.images) {
        const res: SizeResult = {
          label: img.label,
          bytes: img.bytes,
          bundleBytes: img.bundleBytes,
          gantry: [],
          byClient: Object.fromEntries(clients.map((c) => [c, []])),
          swupdate: [],
          swupdateError: null,
          swupdateCpuSeconds: [],
          shell: [],
          bare: [],
          opensslCpuSeconds: [],
        };
        // Gantry and the shell alternate run by run; the peer script does its runs in one go.
        for (let i = 0; i < runs; i++) {
          opts.log(`${img.label} run ${i + 1}/${runs}: Gantry download, then the shell pipeline…`);
          for (const client of clients) {
            const g = await gantryDownload(cmd, fx, img, feedUrl, work, client);
            opts.log(
              `  gantry (${client} client) ${round(g.seconds, 2)} s, peak RSS ${mib(g.peakRssBytes ?? 0)} MiB, CPU ${g.cpuSeconds} s, slot ${g.slotOk ? 'ok' : 'WRONG'}`,
            );
            res.byClient[client]!.push(g);
          }
          res.gantry = res.byClient[clients[0]!]!;
          if (!withPeers) continue;
          const s = await shellDownload(
            `${feedUrl}${img.rawUrlPath}`,
            img,
            path.join(work, 'shell-slot.img'),
          );
          opts.log(`  shell ${round(s.seconds, 2)} s, slot ${s.slotOk ? 'ok' : 'WRONG'}`);
          res.shell.push(s);
          const b = await bareDownload(
            `${feedUrl}${img.bundleUrlPath}`,
            path.join(work, 'bare-slot.img'),
            img,
          );
          opts.log(`  bare node ${round(b.seconds, 2)} s, peak RSS ${mib(b.peakRssBytes)} MiB`);
          res.bare.push(b);
        }
        // The hashing floor on the very file Gantry downloads, between the runs (same machine state).
        for (let i = 0; i < runs; i++) res.opensslCpuSeconds.push(round(await opensslCpu(img.bundle), 3));
        opts.log(`  openssl dgst -sha256 CPU ${res.opensslCpuSeconds.join(' / ')} s`);
        if (withPeers) {
          opts.log(`${img.label}: SWUpdate peer, ${runs} runs (${path.relative(ROOT, PEER)})…`);
          const swu = await swupdateDownloads(img, path.join(work, 'swupdate-slot.img'), runs, work);
          res.swupdate = swu.runs;
          res.swupdateCpuSeconds = swu.cpuSeconds.map((c) => round(c, 3));
          res.swupdateError = swu.error;
          if (swu.error) {
            opts.log(`  ${swu.error}`);
            notes.push(`${img.label}: ${swu.error}`);
          }
          opts.log(`  swupdate ${secs(swu.runs)} s`);
        }
        results.push(res);
      }

      // Compressed bundles: Gantry only (the peers' artifacts are not compressed).
      const compressedResults: CompressedResult[] = [];
      for (const img of fx.compressed) {
        const res: CompressedResult = {
          img,
          gantry: [],
          opensslBundleCpuSeconds: [],
          opensslImageCpuSeconds: [],
        };
        for (let i = 0; i < runs; i++) {
          const g = await gantryDownload(cmd, fx, img, feedUrl, work, clients[0]!);
          opts.log(
            `${img.label} ${img.compression} run ${i + 1}/${runs}: gantry ${round(g.seconds, 2)} s, CPU ${g.cpuSeconds} s, download peak ${mib(g.downloadPeakRssBytes ?? 0)} MiB, slot ${g.slotOk ? 'ok' : 'WRONG'}`,
          );
          res.gantry.push(g);
        }
        for (let i = 0; i < runs; i++) {
          res.opensslBundleCpuSeconds.push(round(await opensslCpu(img.bundle), 3));
          res.opensslImageCpuSeconds.push(round(await opensslCpu(img.image), 3));
        }
        compressedResults.push(res);
      }

      let upload: Awaited<ReturnType<typeof measureUpload>> | null = null;
      if (withUpload) {
        const largest = fx.images[fx.images.length - 1]!;
        upload = await measureUpload({
          cmd,
          work,
          bundle: largest.bundle,
          vendorPublicKeyPem: fx.vendorPublicKeyPem,
          runs,
          log: opts.log,
        });
      }

      // ---- tables, ratios, targets ----------------------------------------------------
      const ratios: Record<string, number> = {};
      const installRows: Array<Array<string | number>> = [];
      const memRows: Array<Array<string | number>> = [];
      const latencyRows: Array<Array<string | number>> = [];
      const cpuRows: Array<Array<string | number>> = [];
      const summary: Record<string, unknown>[] = [];
      for (const r of results) {
        const g = med(r.gantry);
        const sw = med(r.swupdate);
        const sh = med(r.shell);
        const row = (tool: string, runsOf: ToolRun[], m: number) => [
          r.label,
          tool,
          fmt(m),
          fmt(mib(r.bytes) / m, 0),
          secs(runsOf),
          runsOf.length ? (runsOf.every((x) => x.slotOk) ? 'yes' : 'NO') : '–',
        ];
        installRows.push(
          row('gantry (REST download → downloaded)', r.gantry, g),
          row('swupdate (peer, .swu streamed)', r.swupdate, sw),
          row('curl | tee | openssl dgst; sync', r.shell, sh),
        );
        if (Number.isFinite(sw)) ratios[`${r.label}: gantry / swupdate`] = round(g / sw, 2);
        if (Number.isFinite(sh)) ratios[`${r.label}: gantry / shell`] = round(g / sh, 2);
        const peak = Math.max(...r.gantry.map((x) => x.peakRssBytes ?? 0));
        const idle = median(r.gantry.map((x) => x.idleRssBytes ?? 0));
        // The download's own peak above its idle where the kernel reset VmHWM, else the lifetime's.
        const ownPeak = (x: GantryRun) => x.downloadPeakRssBytes ?? x.peakRssBytes ?? 0;
        const growth = Math.max(...r.gantry.map((x) => ownPeak(x) - (x.idleRssBytes ?? 0)));
        const medOf = (f: (x: GantryRun) => number | null) => median(r.gantry.map((x) => f(x) ?? 0));
        const maxOf = (f: (x: GantryRun) => number | null) => Math.max(...r.gantry.map((x) => f(x) ?? 0));
        memRows.push([
          r.label,
          mib(medOf((x) => x.rssAfterStartBytes)),
          mib(maxOf((x) => x.startupPeakRssBytes)),
          mib(maxOf((x) => x.loginPeakRssBytes)),
          mib(idle),
          mib(maxOf((x) => x.downloadPeakRssBytes)),
          mib(growth),
          mib(medOf((x) => x.rssAfterBytes)),
          mib(peak),
          r.gantry.map((x) => mib(x.peakRssBytes ?? 0)).join(' / '),
        ]);
        if (r.bare.length) {
          const bareStart = median(r.bare.map((x) => x.startRssBytes));
          const barePeak = Math.max(...r.bare.map((x) => x.peakRssBytes));
          const bareGrowth = Math.max(...r.bare.map((x) => x.peakRssBytes - x.startRssBytes));
          memRows.push([
            `${r.label} (bare node http.get → file)`,
            mib(bareStart),
            '–',
            '–',
            mib(bareStart),
            '–',
            mib(bareGrowth),
            '–',
            mib(barePeak),
            r.bare.map((x) => mib(x.peakRssBytes)).join(' / '),
          ]);
          ratios[`${r.label}: download RSS growth gantry / bare node`] = round(growth / bareGrowth, 2);
        }
        const lat = latencyStats(r.gantry.flatMap((x) => x.progressLatenciesMs));
        const idleLat = latencyStats(r.gantry.flatMap((x) => x.idleProgressLatenciesMs));
        const busySeconds = r.gantry.reduce((n, x) => n + x.seconds, 0);
        latencyRows.push(
          [
            `${r.label}, while downloading`,
            lat.requests,
            round(lat.requests / busySeconds, 0),
            lat.p50,
            lat.p90,
            lat.p99,
            lat.max,
          ],
          [
            `${r.label}, after (idle)`,
            idleLat.requests,
            '–',
            idleLat.p50,
            idleLat.p90,
            idleLat.p99,
            idleLat.max,
          ],
        );
        const cpu = medOf((x) => x.cpuSeconds);
        const gib = r.bytes / (1024 * MiB);
        const openssl = r.opensslCpuSeconds.length ? median(r.opensslCpuSeconds) : NaN;
        const swCpu = r.swupdateCpuSeconds.length ? median(r.swupdateCpuSeconds) : NaN;
        const vsOpenssl = (c: number) => (Number.isFinite(c) && openssl > 0 ? round(c / openssl, 2) : '–');
        cpuRows.push(
          [
            r.label,
            'gantry (POST /download → downloaded)',
            round(cpu, 2),
            round(cpu / gib, 2),
            vsOpenssl(cpu),
            round(cpu / g, 2),
          ],
          [
            r.label,
            'swupdate (its processes)',
            fmt(swCpu),
            fmt(swCpu / gib),
            vsOpenssl(swCpu),
            fmt(swCpu / sw),
          ],
          [r.label, 'openssl dgst -sha256 (the bundle)', fmt(openssl), fmt(openssl / gib), 1, '–'],
        );
        if (Number.isFinite(openssl) && openssl > 0) {
          ratios[`${r.label}: gantry CPU / openssl dgst CPU`] = round(cpu / openssl, 2);
          if (Number.isFinite(swCpu))
            ratios[`${r.label}: swupdate CPU / openssl dgst CPU`] = round(swCpu / openssl, 2);
        }
        summary.push({
          size: r.label,
          gantrySeconds: round(g, 3),
          swupdateSeconds: Number.isFinite(sw) ? round(sw, 3) : null,
          shellSeconds: round(sh, 3),
          gantryPeakRssMiB: mib(peak),
          gantryIdleRssMiB: mib(idle),
          gantryRssGrowthMiB: mib(growth),
          gantryStartupPeakRssMiB: mib(maxOf((x) => x.startupPeakRssBytes)),
          gantryLoginPeakRssMiB: mib(maxOf((x) => x.loginPeakRssBytes)),
          gantryDownloadPeakRssMiB: mib(maxOf((x) => x.downloadPeakRssBytes)),
          gantryRssAfterMiB: mib(medOf((x) => x.rssAfterBytes)),
          progressLatencyMs: lat,
          idleProgressLatencyMs: idleLat,
          gantryCpuSeconds: round(cpu, 2),
          swupdateCpuSeconds: Number.isFinite(swCpu) ? round(swCpu, 2) : null,
          opensslCpuSeconds: Number.isFinite(openssl) ? round(openssl, 3) : null,
        });
      }
      if (upload) ratios[`upload ${upload.label}: gantry / bare`] = upload.ratio;

      const compressedRows: Array<Array<string | number>> = [];
      const compressedSummary: Record<string, unknown>[] = [];
      for (const r of compressedResults) {
        const cpu = median(r.gantry.map((x) => x.cpuSeconds ?? 0));
        const bundleFloor = median(r.opensslBundleCpuSeconds);
        const imageFloor = median(r.opensslImageCpuSeconds);
        const name = `${r.img.label} ${r.img.compression}`;
        const vsBundle = round(cpu / bundleFloor, 2);
        const vsImage = round(cpu / imageFloor, 2);
        ratios[`${name}: gantry CPU / openssl dgst CPU (bundle)`] = vsBundle;
        ratios[`${name}: gantry CPU / openssl dgst CPU (image)`] = vsImage;
        const downloadPeak = Math.max(...r.gantry.map((x) => x.downloadPeakRssBytes ?? x.peakRssBytes ?? 0));
        compressedRows.push([
          r.img.label,
          r.img.compression ?? '–',
          fmt(mib(r.img.bundleBytes), 1),
          fmt(med(r.gantry)),
          round(cpu, 2),
          round(cpu / (r.img.bytes / (1024 * MiB)), 2),
          vsBundle,
          vsImage,
          mib(downloadPeak),
          r.gantry.every((x) => x.slotOk) ? 'yes' : 'NO',
        ]);
        compressedSummary.push({
          image: r.img.label,
          compression: r.img.compression,
          imageBytes: r.img.bytes,
          bundleBytes: r.img.bundleBytes,
          gantrySeconds: round(med(r.gantry), 3),
          gantryCpuSeconds: round(cpu, 2),
          opensslBundleCpuSeconds: bundleFloor,
          opensslImageCpuSeconds: imageFloor,
          downloadPeakRssMiB: mib(downloadPeak),
          slotOk: r.gantry.every((x) => x.slotOk),
        });
      }

      // Targets of issue 3.
      const targets: Record<string, { target: string; value: number | null; met: boolean | null }> = {};
      for (const r of results) {
        const sw = med(r.swupdate);
        const ratio = Number.isFinite(sw) ? round(med(r.gantry) / sw, 2) : null;
        targets[`${r.label} time vs swupdate`] = {
          target: '≤ 1.2',
          value: ratio,
          met: ratio === null ? null : ratio <= 1.2,
        };
        const peak = mib(Math.max(...r.gantry.map((x) => x.peakRssBytes ?? 0)));
        targets[`${r.label} peak RSS MiB`] = { target: '< 120', value: peak, met: peak < 120 };
      }
      if (results.length >= 2) {
        const peaks = results.map((r) => mib(Math.max(...r.gantry.map((x) => x.peakRssBytes ?? 0))));
        const spread = round(Math.max(...peaks) - Math.min(...peaks), 1);
        targets['peak RSS spread between sizes MiB'] = { target: '≤ 16', value: spread, met: spread <= 16 };
      }
      const largest = results[results.length - 1];
      if (largest) {
        const p99 = latencyStats(largest.gantry.flatMap((x) => x.progressLatenciesMs)).p99;
        targets[`${largest.label} GET /progress p99 ms`] = { target: '< 50', value: p99, met: p99 < 50 };
      }
      if (upload) {
        targets['upload peak RSS MiB'] = {
          target: '< 120',
          value: mib(upload.gantryPeakRssBytes),
          met: mib(upload.gantryPeakRssBytes) < 120,
        };
      }
      // Targets of issue 16 (lighter on the gateway); the idle and soak rows are the foundation suite's.
      const atMost = (value: number | null, limit: number) => ({
        target: `≤ ${limit}`,
        value,
        met: value === null ? null : value <= limit,
      });
      for (const r of results) {
        targets[`${r.label} download peak RSS MiB (VmHWM, start-up included)`] = atMost(
          mib(Math.max(...r.gantry.map((x) => x.peakRssBytes ?? 0))),
          80,
        );
        const openssl = r.opensslCpuSeconds.length ? median(r.opensslCpuSeconds) : NaN;
        const cpu = median(r.gantry.map((x) => x.cpuSeconds ?? 0));
        targets[`${r.label} download CPU / openssl dgst CPU`] = atMost(
          Number.isFinite(openssl) && openssl > 0 ? round(cpu / openssl, 2) : null,
          2.5,
        );
      }
      if (upload) {
        targets['upload peak RSS MiB (VmHWM)'] = atMost(mib(upload.gantryPeakRssBytes), 80);
        targets['upload + deploy peak RSS MiB (VmHWM)'] = atMost(mib(upload.gantryDeployPeakRssBytes), 80);
      }

      // One row per feed HTTP client (GANTRY_FEED_HTTP_CLIENT), same images, runs interleaved.
      const clientRows: Array<Array<string | number>> = [];
      for (const r of results) {
        for (const [client, cruns] of Object.entries(r.byClient)) {
          if (cruns.length === 0) continue;
          const m = med(cruns);
          const peak = Math.max(...cruns.map((x) => x.peakRssBytes ?? 0));
          const growth = Math.max(
            ...cruns.map((x) => (x.downloadPeakRssBytes ?? x.peakRssBytes ?? 0) - (x.idleRssBytes ?? 0)),
          );
          const cpu = median(cruns.map((x) => x.cpuSeconds ?? 0));
          clientRows.push([
            r.label,
            client,
            fmt(m),
            fmt(mib(r.bytes) / m, 0),
            mib(peak),
            mib(growth),
            round(cpu / (r.bytes / (1024 * MiB)), 2),
            secs(cruns),
            cruns.map((x) => mib(x.peakRssBytes ?? 0)).join(' / '),
            cruns.every((x) => x.slotOk) ? 'yes' : 'NO',
          ]);
        }
      }

      const tables: Table[] = [
        ...(clients.length > 1
          ? [
              {
                title: `Gantry's download per feed HTTP client (GANTRY_FEED_HTTP_CLIENT), median of ${runs}, runs interleaved; peak is the lifetime VmHWM, growth is the download's own peak − idle before it (MiB)`,
                columns: [
                  'image',
                  'client',
                  'median s',
                  'MiB/s',
                  'peak RSS',
                  'growth',
                  'CPU s/GiB',
                  'runs s',
                  'peak per run',
                  'slot ok',
                ],
                rows: clientRows,
              },
            ]
          : []),
        {
          title: `Download into slot B over loopback HTTP, median of ${runs} (time includes fsync/sync; MiB/s of image)`,
          columns: ['image', 'tool', 'median s', 'MiB/s', 'runs s', 'slot ok'],
          rows: installRows,
        },
        {
          title: `Gantry child process memory (MiB; ${restartMode() ? 'a restart per run: its data dir started once before, so the admin exists' : 'a fresh process and data dir per run, so its start-up migrates the store and hashes the admin password'}). VmHWM is reset at the first answer, after the login and at POST /download (/proc/<pid>/clear_refs), so each peak is that phase's own: start-up, login (scrypt), the download (POST → \`downloaded\`); "after" is VmRSS ~0.5 s after \`downloaded\`; lifetime is the largest of them. The bare row is node alone receiving the same bundle into a file (launcher settings), the floor Gantry builds on (its peak − idle is over its whole life)`,
          columns: [
            'image',
            'started',
            'start-up peak',
            'login peak',
            'checked (idle)',
            'download peak',
            'download peak − idle',
            'after',
            'lifetime (VmHWM)',
            'lifetime per run',
          ],
          rows: memRows,
        },
        {
          title: `GET /api/v1/ota/progress while downloading (one request every ${POLL_MS} ms, open loop; all runs pooled; ms)`,
          columns: ['image', 'requests', 'req/s', 'p50', 'p90', 'p99', 'max'],
          rows: latencyRows,
        },
        {
          title:
            'CPU time (user + system), median of runs: Gantry from POST /download to `downloaded`; SWUpdate its whole install (perf stat task-clock, children included); openssl dgst -sha256 over the same bundle file (the hashing floor)',
          columns: ['image', 'tool', 'CPU s', 'CPU s per GiB', '× openssl', 'CPU s / wall s'],
          rows: cpuRows,
        },
        ...(compressedResults.length
          ? [
              {
                title: `Compressed bundles (format v2, the payload compressed; decompression included), median of ${runs}: Gantry's CPU from POST /download to \`downloaded\`, per GiB written to the slot, against openssl dgst -sha256 over the bundle file (what the uncompressed rows compare with) and over the image written. The image compresses to about half (random nibbles). Rows of their own: the 2.5× target is the uncompressed download's`,
                columns: [
                  'image',
                  'compression',
                  'bundle MiB',
                  'median s',
                  'CPU s',
                  'CPU s per GiB',
                  '× openssl (bundle)',
                  '× openssl (image)',
                  'download peak',
                  'slot ok',
                ],
                rows: compressedRows,
              },
            ]
          : []),
        ...(upload ? [upload.table, ...(upload.mappingTable ? [upload.mappingTable] : [])] : []),
        {
          title: 'Targets (issue 3: time, peaks, latency; issue 16: ≤ 80 MiB peaks, CPU ≤ 2.5× openssl)',
          columns: ['what', 'target', 'value', 'met'],
          rows: Object.entries(targets).map(([k, v]) => [
            k,
            v.target,
            v.value ?? '–',
            v.met === null ? '–' : v.met ? 'yes' : 'NO',
          ]),
        },
      ];
      if (upload) notes.push(...upload.notes);
      notes.push(
        `Gantry's time runs from POST /download to the first GET /progress answering \`downloaded\` (resolution ${POLL_MS} ms); it includes the job's statechart, fetch, bundle hash, tar parse, payload hash, slot writes with fsync checkpoints and the final fsync. SWUpdate's and the shell's include process start-up and the final sync.`,
        `Each Gantry run is a fresh child process (${cmd.mode})${restartMode() ? ', started on a data dir that a first start left (BENCH_PIPELINE_RESTART=1)' : ' on a fresh data dir'}; VmHWM is that process's lifetime peak, start-up included.`,
      );

      return {
        tables,
        ratios,
        record: {
          options: {
            sizesBytes: sizes,
            runs,
            clients,
            peers: withPeers,
            pollMs: POLL_MS,
            gantryMode: cmd.mode,
            gantryCommand: [cmd.command, ...cmd.args],
          },
          loadAverage: { before: loadBefore, after: os.loadavg().map((v) => round(v, 2)) },
          wallSeconds: round((performance.now() - t0) / 1000, 1),
          keepAliveResetsRetried: connectionResets.count,
          summary,
          compressed: compressedSummary,
          targets,
          sizes: results,
          upload: upload ? { ...upload, table: undefined } : null,
        },
        notes,
      };
    } finally {
      if (server) await stopChild(server.child);
      fs.rmSync(work, { recursive: true, force: true });
    }
  },
};
