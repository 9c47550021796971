import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCommand } from './lib/command.js';
import {
  createFeed,
  createGateway,
  installRelease,
  measureUpdate,
  serverCounts,
  type ReleaseKind,
  type UpdateRun,
} from './lib/delta-gantry.js';
import { applyPeer, makePeer, missingPeerPackages, PEERS } from './lib/delta-peers.js';
import { sha256File } from './lib/fixtures.js';
import { gantryCommand, ROOT } from './lib/gantry-child.js';
import { spawnReady, stopChild } from './lib/process.js';
import { round } from './lib/report.js';
import type { BenchOptions, BenchSuite, SuiteResult, Table } from './lib/suite.js';
import { CELLULAR_LINK } from './lib/throttle-link.js';

/**
 * Delta updates (issue 14): what one minor update costs on the wire, by each of Gantry's paths and
 * by the peers, on the same image pair in the same run.
 *
 * - Images: `--v1 IMG --v2 IMG`, else the fixture `../shared/fixtures/minor-update/build.sh` built
 *   into a temp dir (needs root; deleted afterwards).
 * - Gantry: v1 and v2 published with the bundle tool's library to a TUF feed served by the bench's
 *   counting static server; v1 installed for real on a simulated gateway (a child process), then
 *   v2 downloaded by each path on a fresh process: seconds from POST /download to `downloaded`,
 *   bytes and requests counted at the server from the check-updates on, VmHWM, CPU, slot hash.
 * - Peers (Debian packages): `zstd -19` of v2, `xdelta3 -e -9`, `zstd -19 --long=30 --patch-from`,
 *   casync with 16 KiB chunks (store of v2, `casync extract --seed=v1` over HTTP): made, then
 *   fetched from the same server and applied into a fresh file (hashed, synced).
 * - The full and hop paths again through a throttled link (bench/lib/throttle-link.ts: 1 MB/s,
 *   150 ms round trip); every row also gets the link time its bytes and requests imply.
 *
 * Knobs: BENCH_DELTA_ROWS (comma list of rows to run, default all), BENCH_DELTA_THROTTLED (rows
 * timed through the link, default "gantry.full,gantry.hop"; "" for none), BENCH_DELTA_CACHE (a
 * directory keeping the peers' artifacts per image pair, so a rerun on the same pair skips making
 * them — `zstd -19` of 512 MiB takes minutes; the make columns then are the earlier run's),
 * BENCH_DELTA_QUICK_PUBLISH=1 (publish in minutes instead of half an hour on a busy 2-core machine:
 * v1 as a v1 bundle, so no index is saved at its install and the dynamic path chunks the active
 * slot; the hop and dynamic releases store their payload uncompressed — those paths fetch only the
 * bundle's head, so their bytes do not change, but `/updates` size and the dynamic path's
 * threshold are then taken against the uncompressed bundle), BENCH_DELTA_LEVEL=N (compressed v2
 * payloads at level N instead of the bundle tool's default brotli 11).
 */

const STATIC_SERVER = path.join(ROOT, 'bench', 'lib', 'static-server.ts');
const THROTTLE = path.join(ROOT, 'bench', 'lib', 'throttle-link-main.ts');
const FIXTURE_BUILD = path.resolve(ROOT, '..', 'shared', 'fixtures', 'minor-update', 'build.sh');

/** Gantry's paths: the row, how v2 is published for it. */
const GANTRY_PATHS: Array<{ row: string; kind: ReleaseKind; describe: string }> = [
  {
    row: 'gantry.v1_full',
    kind: 'v1_full',
    describe: 'uncompressed gantry-bundle-v1: the baseline before issue 14',
  },
  { row: 'gantry.full', kind: 'full', describe: 'gantry-bundle-v2, payload compressed, no delta offered' },
  { row: 'gantry.hop', kind: 'hop', describe: 'the same with a hop delta from v1 (ext4 extent maps)' },
  {
    row: 'gantry.dynamic',
    kind: 'dynamic',
    describe: 'the same with the chunk index and pack, no hop delta (planned from the saved index of v1)',
  },
];

const V1_VERSION = 'v5.1.0';
/** v1 is published as a release of today's tool would be: compressed, with its chunk index and pack
 * (installing it saves its index with the slot, which the dynamic path plans from). */
const V1_KIND: ReleaseKind = 'dynamic';

interface Row {
  name: string;
  describe: string;
  wire_bytes: number | null;
  /** Bodies only (no HTTP heads). */
  body_bytes: number | null;
  requests: number | null;
  seconds: number | null;
  peak_rss_mib: number | null;
  cpu_seconds: number | null;
  slot_ok: boolean | null;
  /** wire_bytes as a share of `zstd -19` of v2, percent. */
  pct_of_zstd19: number | null;
  /** What these bytes and requests take on the link: bytes / rate + requests × round trip. */
  link_seconds_estimate: number | null;
  /** Measured through the throttled link, when this row was run there. */
  throttled?: { seconds: number; wire_bytes: number; requests: number; slot_ok: boolean };
  make?: {
    seconds: number;
    peak_rss_mib: number | null;
    cpu_seconds: number | null;
    artifact_bytes: number;
    /** Gantry: bytes of the hop deltas, chunk index and pack published beside the bundle. */
    delta_artifact_bytes?: number;
    /** Where the artifact was kept (BENCH_DELTA_CACHE): made by this run or an earlier one on the same pair. */
    cache?: string;
  };
  /** Gantry's own account: the final /progress answer, `/updates` size. */
  gantry?: {
    /** The path Gantry says it took (`/progress` `delivery.path`), when it says. */
    reported_path: string | null;
    progress: Record<string, unknown>;
    listed_size: number | null;
    /** The job's lines in Gantry's log: the path chosen and why, fallbacks, repairs. */
    log: string[];
    sampled_peak_rss_mib: number;
  };
  error?: string;
}

const mib = (bytes: number | null) => (bytes === null ? null : round(bytes / (1024 * 1024), 1));

function emptyRow(name: string, describe: string): Row {
  return {
    name,
    describe,
    wire_bytes: null,
    body_bytes: null,
    requests: null,
    seconds: null,
    peak_rss_mib: null,
    cpu_seconds: null,
    slot_ok: null,
    pct_of_zstd19: null,
    link_seconds_estimate: null,
  };
}

function listEnv(name: string, fallback: string): string[] {
  return (process.env[name] ?? fallback)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** The image pair: the given one, or the fixture built into `work` (root only). */
async function images(opts: BenchOptions, work: string, notes: string[]) {
  if (opts.images) {
    for (const f of [opts.images.v1, opts.images.v2]) {
      if (!fs.statSync(f).isFile()) throw new Error(`${f} is not a file`);
    }
    return { ...opts.images, source: 'given' as const };
  }
  if (process.getuid?.() !== 0) {
    throw new Error(
      `building the fixture (${FIXTURE_BUILD}) needs root; run as root or pass --v1 IMG --v2 IMG`,
    );
  }
  if (!fs.existsSync(FIXTURE_BUILD)) {
    throw new Error(`no fixture builder at ${FIXTURE_BUILD}; pass --v1 IMG --v2 IMG`);
  }
  opts.log(`building the fixture pair with ${FIXTURE_BUILD} (~30 s)…`);
  const out = path.join(work, 'fixture');
  const r = await runCommand('bash', [FIXTURE_BUILD, out], { timeoutMs: 30 * 60_000 });
  if (r.code !== 0) throw new Error(`fixture build failed (${r.code}): ${r.stderr.slice(-2000)}`);
  const summary = r.stdout.split('\n').find((l) => l.startsWith('v2 tree'));
  if (summary) notes.push(`fixture: ${summary}`);
  return { v1: path.join(out, 'v1.img'), v2: path.join(out, 'v2.img'), source: 'fixture' as const };
}

function reportedPath(progress: Record<string, unknown>): string | null {
  const delivery = progress.delivery as { path?: unknown } | undefined;
  return typeof delivery?.path === 'string' ? delivery.path : null;
}

/**
 * What built bundles depend on: the publisher's code (bundle/ and delta/ as committed). A cached
 * bundle is reused only by the same code, never after the format or codec changed.
 */
/** What builds Gantry's releases (bundles, hop deltas, chunk index and pack). */
const PUBLISHER_PATHS = [
  'bundle',
  'delta/artifact.ts',
  'delta/hop/build.ts',
  'delta/hop/format.ts',
  'delta/dynamic/publish.ts',
  'delta/dynamic/chunker.ts',
  'delta/dynamic/chunk-index.ts',
];

function publisherVersion(): string {
  try {
    // The publisher's code only: a change to the gateway's side (appliers, providers) does not
    // make the releases of an earlier run stale.
    const trees = execFileSync('git', ['rev-parse', ...PUBLISHER_PATHS.map((p) => `HEAD:${p}`)], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    return createHash('sha256').update(trees).digest('hex').slice(0, 12);
  } catch {
    return 'uncommitted';
  }
}

/** The commit measured (and whether the tree had changes on top of it). */
function gitState(): { commit: string | null; dirty: boolean | null } {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
      cwd: ROOT,
      encoding: 'utf8',
    }).trim();
    return { commit, dirty: dirty.length > 0 };
  } catch {
    return { commit: null, dirty: null };
  }
}

function gantryRow(name: string, describe: string, run: UpdateRun): Row {
  return {
    ...emptyRow(name, describe),
    wire_bytes: run.counts.bytesOut + run.counts.bytesIn,
    body_bytes: run.counts.bodyBytes,
    requests: run.counts.requests,
    seconds: round(run.seconds, 2),
    peak_rss_mib: mib(run.peakRssBytes),
    cpu_seconds: run.cpuSeconds,
    slot_ok: run.slotOk,
    gantry: {
      reported_path: reportedPath(run.progress),
      progress: run.progress,
      listed_size: run.listedSize,
      log: run.log,
      sampled_peak_rss_mib: mib(run.sampledPeakRssBytes)!,
    },
  };
}

const fmt = (v: number | null | undefined, digits = 2) =>
  v === null || v === undefined ? '–' : round(v, digits);
const yesNo = (v: boolean | null | undefined) => (v === null || v === undefined ? '–' : v ? 'yes' : 'NO');

export const deltaSuite: BenchSuite = {
  name: 'delta',
  description:
    'one minor update on the wire: Gantry full / hop / dynamic vs zstd -19, xdelta3, zstd --patch-from, casync; throttled link',
  async run(opts: BenchOptions): Promise<SuiteResult> {
    const t0 = performance.now();
    const git = gitState();
    const notes: string[] = [];
    const only = listEnv('BENCH_DELTA_ROWS', '');
    const wanted = (row: string) => only.length === 0 || only.includes(row);
    const throttledRows = listEnv('BENCH_DELTA_THROTTLED', 'gantry.full,gantry.hop');
    const quick = process.env.BENCH_DELTA_QUICK_PUBLISH === '1';
    const level = process.env.BENCH_DELTA_LEVEL ? Number(process.env.BENCH_DELTA_LEVEL) : undefined;
    if (level !== undefined && !Number.isInteger(level)) throw new Error('BENCH_DELTA_LEVEL: an integer');
    if (level !== undefined) {
      notes.push(
        `BENCH_DELTA_LEVEL=${level}: compressed v2 payloads at level ${level} instead of the bundle tool's default (brotli 11, whose build of the fixture's 512 MiB image took 14 CPU minutes, 48 wall minutes at low priority on a loaded 2-core machine); the gateway's decoder and its memory are the same, the bytes are a few % more.`,
      );
    }
    const cache = process.env.BENCH_DELTA_CACHE ? path.resolve(process.env.BENCH_DELTA_CACHE) : null;
    const link = CELLULAR_LINK;
    const loadBefore = os.loadavg().map((v) => round(v, 2));
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-bench-delta-'));
    const serveDir = path.join(work, 'serve');
    fs.mkdirSync(serveDir);
    let server: Awaited<ReturnType<typeof spawnReady<{ url: string; control: string }>>> | null = null;
    const rows: Row[] = [];
    try {
      const pair = await images(opts, work, notes);
      const [v1Bytes, v2Bytes] = [fs.statSync(pair.v1).size, fs.statSync(pair.v2).size];
      opts.log(`hashing ${pair.v1} and ${pair.v2}…`);
      const [v1Sha, v2Sha] = [await sha256File(pair.v1), await sha256File(pair.v2)];
      const v2Image = { bytes: v2Bytes, sha256: v2Sha };

      server = await spawnReady<{ url: string; control: string }>(
        process.execPath,
        ['--import', 'tsx', STATIC_SERVER, serveDir],
        { cwd: ROOT, env: { ...process.env } },
      );
      const { url, control } = server.ready;

      // ---- peers ------------------------------------------------------------------------
      const missing = missingPeerPackages();
      if (missing.length) {
        notes.push(
          `MISSING peer packages (rows not measured): ${missing.join(', ')} — apt-get install -y --no-install-recommends ${missing.join(' ')}`,
        );
      }
      if (!fs.existsSync('/usr/bin/time')) {
        notes.push(
          "GNU time (Debian package `time`) is missing: the peers' peak RSS and CPU are not measured",
        );
      }
      for (const peer of PEERS) {
        if (!wanted(peer.name)) continue;
        const row = emptyRow(peer.name, peer.describe);
        rows.push(row);
        if (missing.includes(peer.pkg)) {
          row.error = `not measured: Debian package ${peer.pkg} is not installed`;
          continue;
        }
        const dir = path.join(serveDir, 'peers', peer.name);
        const cached = cache
          ? path.join(cache, `${v1Sha.slice(0, 16)}-${v2Sha.slice(0, 16)}`, peer.name)
          : null;
        try {
          let made: Awaited<ReturnType<typeof makePeer>>;
          const makeRecord = cached && path.join(cached, 'make.json');
          if (makeRecord && fs.existsSync(makeRecord)) {
            made = JSON.parse(fs.readFileSync(makeRecord, 'utf8')) as typeof made;
            opts.log(`${peer.name}: made in an earlier run (${cached})`);
          } else {
            opts.log(`${peer.name}: making…`);
            made = await makePeer(peer.name, pair.v1, pair.v2, cached ?? dir);
            if (makeRecord) fs.writeFileSync(makeRecord, JSON.stringify(made));
          }
          if (cached) {
            fs.mkdirSync(path.dirname(dir), { recursive: true });
            fs.symlinkSync(cached, dir);
          }
          row.make = {
            seconds: round(made.seconds, 2),
            peak_rss_mib: made.peakRssMiB,
            cpu_seconds: made.cpuSeconds,
            artifact_bytes: made.artifactBytes,
            ...(cached ? { cache: cached } : {}),
          };
          opts.log(
            `  ${made.artifactBytes} bytes, made in ${round(made.seconds, 1)} s, ${made.peakRssMiB} MiB; applying…`,
          );
          await serverCounts(control, true);
          const applied = await applyPeer(
            peer.name,
            pair.v1,
            `${url}/peers/${peer.name}`,
            path.join(work, 'out.img'),
          );
          const counts = await serverCounts(control);
          Object.assign(row, {
            wire_bytes: counts.bytesOut + counts.bytesIn,
            body_bytes: counts.bodyBytes,
            requests: counts.requests,
            seconds: round(applied.seconds, 2),
            peak_rss_mib: applied.peakRssMiB,
            cpu_seconds: applied.cpuSeconds,
            slot_ok: applied.sha256 === v2Sha,
          });
          opts.log(
            `  ${row.wire_bytes} bytes on the wire in ${row.requests} requests, ${row.seconds} s, slot ${yesNo(row.slot_ok)}`,
          );
        } catch (err) {
          row.error = (err as Error).message;
          opts.log(`  ${peer.name} failed: ${row.error}`);
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      }
      const zstd19 = rows.find((r) => r.name === 'zstd19.full')?.make?.artifact_bytes ?? null;

      // ---- Gantry -----------------------------------------------------------------------
      const gantryPaths = GANTRY_PATHS.filter((p) => wanted(p.row));
      if (gantryPaths.length) {
        const cmd = gantryCommand(opts);
        if (cmd.note) notes.push(cmd.note);
        opts.log(`Gantry runs as: ${[cmd.command, ...cmd.args].join(' ')}`);
        const feed = createFeed(
          path.join(serveDir, 'feed'),
          work,
          cache
            ? path.join(cache, `${v1Sha.slice(0, 16)}-${v2Sha.slice(0, 16)}`, `gantry-${publisherVersion()}`)
            : null,
        );
        const feedUrl = `${url}/feed`;
        const v1Kind: ReleaseKind = quick ? 'v1_full' : V1_KIND;
        opts.log(`publishing v1 as ${V1_VERSION} (${v1Kind}) and installing it on a simulated gateway…`);
        await feed.publish({ kind: v1Kind, image: pair.v1, version: V1_VERSION });
        if (quick) {
          notes.push(
            'BENCH_DELTA_QUICK_PUBLISH: v1 was published as a v1 bundle (no chunk index saved at its install: the dynamic path chunked the active slot), and the hop and dynamic releases store their payload uncompressed (they fetch only its head; /updates size and the dynamic threshold are then against the uncompressed bundle).',
          );
        }
        const gw = createGateway(cmd, path.join(work, 'gantry-data'), feed);
        await installRelease(gw, feedUrl, V1_VERSION);

        const published = new Map<string, string>();
        for (const p of gantryPaths) {
          const row = emptyRow(p.row, p.describe);
          rows.push(row);
          try {
            // By the path's place in GANTRY_PATHS, not in this run's subset: a release published
            // by an earlier run with other BENCH_DELTA_ROWS is the same bundle (BENCH_DELTA_CACHE).
            const version = `v5.1.${GANTRY_PATHS.indexOf(p) + 1}`;
            opts.log(`${p.row}: publishing v2 as ${version} (${p.kind})…`);
            const release = await feed.publish({
              uncompressed: quick && (p.kind === 'hop' || p.kind === 'dynamic'),
              level,
              kind: p.kind,
              image: pair.v2,
              version,
              previous: [{ version: V1_VERSION, image: pair.v1 }],
            });
            published.set(p.row, version);
            row.make = {
              seconds: round(release.buildSeconds, 2),
              peak_rss_mib: null,
              cpu_seconds: null,
              artifact_bytes: release.bundleBytes,
              delta_artifact_bytes: release.artifactBytes,
              ...(release.cached ? { cache: 'built by an earlier run (BENCH_DELTA_CACHE)' } : {}),
            };
            const run = await measureUpdate(gw, {
              feedUrl,
              control,
              version,
              image: v2Image,
              timeoutMs: 30 * 60_000,
            });
            Object.assign(row, gantryRow(p.row, p.describe, run));
            const expected = p.kind === 'v1_full' ? 'full' : p.kind;
            const reported = row.gantry?.reported_path ?? null;
            if (reported !== null && reported !== expected) {
              notes.push(`${p.row}: Gantry reports the ${reported} path, not ${expected}`);
            }
            opts.log(
              `  ${row.wire_bytes} bytes on the wire in ${row.requests} requests, ${row.seconds} s, peak ${row.peak_rss_mib} MiB, slot ${yesNo(row.slot_ok)}`,
            );
          } catch (err) {
            row.error = (err as Error).message;
            opts.log(`  ${p.row} failed: ${row.error}`);
          }
        }

        // ---- the throttled link ---------------------------------------------------------
        const throttled = throttledRows.filter((r) => published.has(r));
        for (const name of throttledRows.filter((r) => !published.has(r))) {
          notes.push(
            `${name} was not timed through the throttled link: that path was not measured in this run`,
          );
        }
        for (const name of throttled) {
          const row = rows.find((r) => r.name === name)!;
          const proxy = await spawnReady<{ url: string }>(
            process.execPath,
            ['--import', 'tsx', THROTTLE, url, String(link.bytesPerSecond), String(link.rttMs)],
            { cwd: ROOT, env: { ...process.env } },
          );
          try {
            opts.log(
              `${name}: again through the throttled link (${link.bytesPerSecond / 1e6} MB/s, ${link.rttMs} ms RTT)…`,
            );
            const run = await measureUpdate(gw, {
              feedUrl: `${proxy.ready.url}/feed`,
              control,
              version: published.get(name)!,
              image: v2Image,
              timeoutMs: 60 * 60_000,
            });
            row.throttled = {
              seconds: round(run.seconds, 2),
              wire_bytes: run.counts.bytesOut + run.counts.bytesIn,
              requests: run.counts.requests,
              slot_ok: run.slotOk,
            };
            opts.log(`  ${row.throttled.seconds} s`);
          } catch (err) {
            notes.push(`${name} through the throttled link failed: ${(err as Error).message}`);
          } finally {
            await stopChild(proxy.child);
          }
        }
      }

      // ---- derived columns, targets -------------------------------------------------------
      for (const r of rows) {
        if (r.wire_bytes !== null && zstd19) r.pct_of_zstd19 = round((100 * r.wire_bytes) / zstd19, 2);
        if (r.wire_bytes !== null && r.requests !== null) {
          r.link_seconds_estimate = round(
            r.wire_bytes / link.bytesPerSecond + (r.requests * link.rttMs) / 1000,
            1,
          );
        }
      }
      const byName = new Map(rows.map((r) => [r.name, r]));
      const targets = deltaTargets(byName, zstd19);

      const record = {
        git,
        images: {
          source: pair.source,
          v1: { path: pair.source === 'given' ? pair.v1 : 'fixture v1.img', bytes: v1Bytes, sha256: v1Sha },
          v2: { path: pair.source === 'given' ? pair.v2 : 'fixture v2.img', bytes: v2Bytes, sha256: v2Sha },
        },
        raw_bytes: v2Bytes,
        zstd19_bytes: zstd19,
        link: { bytes_per_second: link.bytesPerSecond, rtt_ms: link.rttMs },
        load_average: { before: loadBefore, after: os.loadavg().map((v) => round(v, 2)) },
        wall_seconds: round((performance.now() - t0) / 1000, 1),
        quick_publish: quick,
        missing_packages: missing,
        rows: Object.fromEntries(rows.map(({ name, ...rest }) => [name, rest])),
        targets,
      };
      notes.push(
        "wire_bytes: every byte both ways on the feed server's sockets (HTTP heads included) from the update check (Gantry) or the fetch (peers) to the end; body_bytes: response bodies only.",
        "seconds: Gantry from POST /download to the first GET /progress answering `downloaded` (polled every 20 ms; the update check before it is not timed); peers from the fetch to the output written, hashed (openssl) and synced. peak_rss_mib: Gantry's VmHWM (its lifetime peak, start-up included, fresh process per row); peers: the largest process of the apply (GNU time). One run per row.",
        `link s (est.): wire_bytes at ${link.bytesPerSecond / 1e6} MB/s plus one ${link.rttMs} ms round trip per request, one request at a time; "throttled s" is measured through the throttling relay.`,
        "Each Gantry row wipes the inactive slot first: a real gateway's inactive slot holds an older image, not the release the previous row downloaded.",
      );
      return { tables: tables(rows, targets, zstd19, v2Bytes), ratios: ratios(byName), record, notes };
    } finally {
      if (server) await stopChild(server.child);
      fs.rmSync(work, { recursive: true, force: true });
    }
  },
};

type Target = { target: string; value: number | null; met: boolean | null };

/** The targets, checked and reported (never asserted). */
function deltaTargets(rows: Map<string, Row>, zstd19: number | null): Record<string, Target> {
  const t: Record<string, Target> = {};
  const pct = (name: string) => rows.get(name)?.pct_of_zstd19 ?? null;
  const check = (key: string, target: string, value: number | null, ok: (v: number) => boolean) => {
    t[key] = { target, value, met: value === null ? null : ok(value) };
  };
  check('hop wire % of zstd -19', '≤ 2.5', pct('gantry.hop'), (v) => v <= 2.5);
  check('dynamic wire % of zstd -19', '≤ 22', pct('gantry.dynamic'), (v) => v <= 22);
  check('dynamic requests', '≤ 600', rows.get('gantry.dynamic')?.requests ?? null, (v) => v <= 600);
  const full = rows.get('gantry.full');
  check(
    'full wire / zstd -19',
    '≤ 1.02',
    full?.wire_bytes != null && zstd19 ? round(full.wire_bytes / zstd19, 3) : null,
    (v) => v <= 1.02,
  );
  const hop = rows.get('gantry.hop');
  check(
    'hop seconds / full seconds (loopback)',
    '≤ 0.75',
    hop?.seconds != null && full?.seconds ? round(hop.seconds / full.seconds, 3) : null,
    (v) => v <= 0.75,
  );
  check(
    'hop seconds / full seconds (throttled link)',
    '≤ 0.1',
    hop?.throttled && full?.throttled ? round(hop.throttled.seconds / full.throttled.seconds, 3) : null,
    (v) => v <= 0.1,
  );
  for (const name of ['gantry.full', 'gantry.hop', 'gantry.dynamic', 'gantry.v1_full']) {
    const r = rows.get(name);
    if (r) check(`${name} peak RSS MiB`, '≤ 128', r.peak_rss_mib, (v) => v <= 128);
  }
  return t;
}

function ratios(rows: Map<string, Row>): Record<string, number> {
  const out: Record<string, number> = {};
  const xdelta = rows.get('xdelta3')?.wire_bytes;
  for (const name of ['gantry.hop', 'gantry.dynamic', 'gantry.full']) {
    const w = rows.get(name)?.wire_bytes;
    if (w && xdelta) out[`${name} wire / xdelta3 wire`] = round(w / xdelta, 2);
  }
  return out;
}

function tables(rows: Row[], targets: Record<string, Target>, zstd19: number | null, raw: number): Table[] {
  const mb = (b: number | null | undefined) => (b === null || b === undefined ? '–' : round(b / 1e6, 2));
  return [
    {
      title: `One update v1 → v2 (v2: ${round(raw / 1e6, 1)} MB raw, ${zstd19 === null ? '?' : round(zstd19 / 1e6, 2)} MB as zstd -19); MB = 10^6 bytes on the wire`,
      columns: [
        'row',
        'wire MB',
        '% zstd19',
        'requests',
        'seconds',
        'link s (est.)',
        'throttled s',
        'peak RSS MiB',
        'CPU s',
        'slot ok',
        'path',
      ],
      rows: rows.map((r) => [
        r.error && r.wire_bytes === null ? `${r.name} (failed)` : r.name,
        mb(r.wire_bytes),
        fmt(r.pct_of_zstd19),
        fmt(r.requests, 0),
        fmt(r.seconds),
        fmt(r.link_seconds_estimate, 1),
        fmt(r.throttled?.seconds),
        fmt(r.peak_rss_mib, 1),
        fmt(r.cpu_seconds),
        yesNo(r.slot_ok),
        r.gantry ? (r.gantry.reported_path ?? '?') : '',
      ]),
    },
    {
      title: 'Making the artifact (publisher side)',
      columns: ['row', 'artifact MB', 'beside it MB', 'seconds', 'peak RSS MiB', 'CPU s'],
      rows: rows
        .filter((r) => r.make)
        .map((r) => [
          r.name,
          mb(r.make!.artifact_bytes),
          mb(r.make!.delta_artifact_bytes),
          fmt(r.make!.seconds),
          fmt(r.make!.peak_rss_mib, 1),
          fmt(r.make!.cpu_seconds),
        ]),
    },
    {
      title: 'Targets (issue 14), reported',
      columns: ['what', 'target', 'value', 'met'],
      rows: Object.entries(targets).map(([k, v]) => [k, v.target, v.value ?? '–', yesNo(v.met)]),
    },
    ...(rows.some((r) => r.error)
      ? [
          {
            title: 'Rows that failed or were not measured',
            columns: ['row', 'why'],
            rows: rows.filter((r) => r.error).map((r) => [r.name, r.error!.split('\n')[0]!.slice(0, 200)]),
          },
        ]
      : []),
  ];
}
