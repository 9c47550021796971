import { execFileSync } from 'node:child_process';
import type { KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { buildBundle } from '../../bundle/build.js';
import { BUNDLE_FORMAT_V2, type DeltaRef, type DynamicRef } from '../../bundle/manifest.js';
import { buildDynamicArtifacts } from '../../delta/dynamic/publish.js';
import { buildHopDelta } from '../../delta/hop/build.js';
import { generateKeyPair, parsePrivateKey } from '../../bundle/keys.js';
import { addTarget, initRepository } from '../../feed/repository.js';
import { sha256File } from './fixtures.js';
import {
  procCpuSeconds,
  procMemory,
  requestJson,
  sampleRss,
  startGantryChild,
  trustVendorKey,
  type GantryChild,
  type GantryCommand,
} from './gantry-child.js';

/**
 * Gantry's side of bench/delta.ts: a TUF feed on disk that releases are published to with the
 * bundle tool's library (what `gantry-bundle build` + `feed add` run), and a simulated gateway in
 * a child process (its own RSS and CPU) driven over REST: install a release for real (download,
 * install, reboot, commit), then download the next one by a given path.
 */

/**
 * How a release is published, which decides the path a gateway with the previous release takes:
 * - `v1_full`: a `gantry-bundle-v1` bundle (uncompressed), today's baseline;
 * - `full`: a `gantry-bundle-v2` bundle, payload compressed (the bundle tool's default, zstd -19),
 *   no deltas: every gateway downloads the compressed image;
 * - `hop`: the same plus a hop delta from each previous release (`gantry-bundle build --delta-from`);
 * - `dynamic`: compressed plus the chunk index and pack (`gantry-bundle build --dynamic`), no hop
 *   delta: a gateway plans from its active slot's saved index (or by chunking the slot).
 */
export type ReleaseKind = 'v1_full' | 'full' | 'hop' | 'dynamic';

export interface Feed {
  dir: string;
  rootJson: string;
  vendorPublicKeyPem: string;
  publish(opts: {
    kind: ReleaseKind;
    /** Store the payload uncompressed (a v2 bundle with `compression: none`): see BENCH_DELTA_QUICK_PUBLISH. */
    uncompressed?: boolean;
    /** The payload codec's level instead of the bundle tool's default (brotli 11): see BENCH_DELTA_LEVEL. */
    level?: number;
    image: string;
    version: string;
    /** The releases a gateway may run before this one (hop deltas are built from them). */
    previous?: Array<{ version: string; image: string }>;
  }): Promise<Published>;
}

export interface Published {
  kind: ReleaseKind;
  version: string;
  /** Feed targets the release added, and their bytes (what a full fetch of each costs). */
  bundleBytes: number;
  /** Bytes of the artifacts published beside it (hop deltas, chunk index and pack). */
  artifactBytes: number;
  /** Seconds the bundle tool took to build the bundle and its artifacts (publisher side). */
  buildSeconds: number;
  /** The bundle came from the cache (built by an earlier run on the same images). */
  cached: boolean;
}

const MANIFEST = {
  type: 'security' as const,
  severity: 'medium' as const,
  compatible: ['Univa-GW-Pro'],
  kernel: '6.1.40-LTS',
  released: '2026-12-04',
  changelog: ['Security roll-up (benchmark image pair)'],
};

/** The image's chunk index and pack, named and placed as `gantry-bundle build --dynamic` does. */
async function dynamicRef(image: string, dir: string, version: string): Promise<DynamicRef> {
  const index = `gantry-${version}.gcix`;
  const pack = `gantry-${version}.pack`;
  const built = await buildDynamicArtifacts(image, {
    indexFile: path.join(dir, index),
    packFile: path.join(dir, pack),
  });
  return {
    index: { target: index, size: built.index.size, sha256: built.index.sha256 },
    pack: { target: pack, size: built.pack.size, sha256: built.pack.sha256 },
  };
}

/** The vendor key: the cache's (its bundles are signed with it), else a fresh one. */
function vendorKeyPem(cacheDir: string | null): { privateKeyPem: string; publicKeyPem: string } {
  const file = cacheDir && path.join(cacheDir, 'vendor-key.json');
  if (file && fs.existsSync(file)) {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as { privateKeyPem: string; publicKeyPem: string };
  }
  const pair = generateKeyPair();
  const pems = { privateKeyPem: pair.privateKeyPem, publicKeyPem: pair.publicKeyPem };
  if (file) {
    fs.mkdirSync(cacheDir, { recursive: true });
    fs.writeFileSync(file, JSON.stringify(pems), { mode: 0o600 });
  }
  return pems;
}

/**
 * A fresh feed in `dir` signed by a fresh TUF key. Bundles (and the artifacts beside them) are
 * built in `work`, or kept in `cacheDir` when given: a bundle of the same kind, version and images
 * built by an earlier run is published again instead of compressing 512 MiB again.
 */
export function createFeed(dir: string, work: string, cacheDir: string | null): Feed {
  const tufKey: KeyObject = parsePrivateKey(generateKeyPair().privateKeyPem);
  const vendor = vendorKeyPem(cacheDir);
  const vendorKey = parsePrivateKey(vendor.privateKeyPem);
  initRepository(dir, { keys: tufKey, expiresDays: 7 });
  return {
    dir,
    rootJson: path.join(dir, 'root.json'),
    vendorPublicKeyPem: vendor.publicKeyPem,
    async publish({ kind, image, version, previous = [], uncompressed = false, level }) {
      const variant = `${kind}${uncompressed ? '-uncompressed' : level !== undefined ? `-level${level}` : ''}-${version}`;
      const buildDir = cacheDir ? path.join(cacheDir, variant) : path.join(work, `build-${variant}`);
      const built = path.join(buildDir, `gantry-${version}.bundle`);
      const doneFile = path.join(buildDir, 'built.json');
      let buildSeconds: number;
      const cached = fs.existsSync(doneFile);
      try {
        if (cached) {
          buildSeconds = (JSON.parse(fs.readFileSync(doneFile, 'utf8')) as { seconds: number }).seconds;
        } else {
          fs.rmSync(buildDir, { recursive: true, force: true });
          fs.mkdirSync(buildDir, { recursive: true });
          const t0 = performance.now();
          const manifestFields = { ...MANIFEST, version, description: `Benchmark ${version} (${kind})` };
          const payloadFiles = [{ kind: 'rootfs' as const, path: image, name: 'rootfs.img' }];
          switch (kind) {
            case 'v1_full':
              await buildBundle({ manifestFields, payloadFiles, privateKey: vendorKey, out: built });
              break;
            case 'full':
            case 'hop':
            case 'dynamic': {
              const deltas: DeltaRef[] = [];
              for (const prev of kind === 'hop' ? previous : []) {
                // Named and placed as the bundle tool does: beside the bundle, where `feed add` finds it.
                const target = `gantry-${version}.from-${prev.version}.hop`;
                const hop = await buildHopDelta({
                  source: prev.image,
                  target: image,
                  out: path.join(buildDir, target),
                  tmpDir: buildDir,
                });
                deltas.push({
                  source_sha256: hop.source.sha256,
                  source_version: prev.version,
                  artifact: { target, size: hop.size, sha256: hop.sha256 },
                });
              }
              await buildBundle({
                manifestFields,
                payloadFiles,
                privateKey: vendorKey,
                out: built,
                format: BUNDLE_FORMAT_V2,
                ...(uncompressed
                  ? { compression: 'none' as const }
                  : level !== undefined
                    ? { compressionLevel: level }
                    : {}),
                tmpDir: buildDir,
                deltas: deltas.length ? { 'rootfs.img': deltas } : undefined,
                dynamic:
                  kind === 'dynamic'
                    ? { 'rootfs.img': await dynamicRef(image, buildDir, version) }
                    : undefined,
              });
              break;
            }
          }
          buildSeconds = (performance.now() - t0) / 1000;
          fs.writeFileSync(doneFile, JSON.stringify({ seconds: buildSeconds }));
        }
        const added = await addTarget(dir, built, { keys: tufKey, expiresDays: 7 });
        // addTarget's copies are not fsynced: flush them now, not during the measured download.
        execFileSync('sync');
        const artifactBytes = fs
          .readdirSync(buildDir)
          .filter((f) => /\.(hop|gcix|pack)$/.test(f))
          .reduce((n, f) => n + fs.statSync(path.join(buildDir, f)).size, 0);
        return { kind, version, bundleBytes: added.length, artifactBytes, buildSeconds, cached };
      } finally {
        if (!cacheDir) fs.rmSync(buildDir, { recursive: true, force: true });
      }
    },
  };
}

export interface ServerCounts {
  requests: number;
  ranged: number;
  notFound: number;
  connections: number;
  bodyBytes: number;
  bytesIn: number;
  bytesOut: number;
}

/** The counting static server's control port (bench/lib/static-server.ts). */
export async function serverCounts(control: string, reset = false): Promise<ServerCounts> {
  const res = await requestJson('GET', `${control}/${reset ? 'reset' : 'stats'}`);
  if (res.status !== 200) throw new Error(`static server control: ${res.status}`);
  return res.body as ServerCounts;
}

const POLL_MS = 20;

type Progress = { status: string; [k: string]: unknown };

/** Polls /progress every POLL_MS until the job reaches one of `until`; fails on error/cancelled. */
async function waitForJob(
  g: GantryChild,
  jobId: string,
  until: string[],
  timeoutMs: number,
): Promise<{ at: number; progress: Progress }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await requestJson('GET', `${g.url}/api/v1/ota/progress?job_id=${jobId}`, {
      headers: g.headers,
    });
    const at = performance.now();
    const progress = res.body?.data as Progress | undefined;
    if (res.status !== 200 || !progress)
      throw new Error(`GET /progress: ${res.status} ${JSON.stringify(res.body)}`);
    if (until.includes(progress.status)) return { at, progress };
    if (progress.status === 'error' || progress.status === 'cancelled') {
      throw new Error(
        `job ${jobId} ended ${progress.status}: ${JSON.stringify(progress.error)}\n${g.output()}`,
      );
    }
    if (Date.now() > deadline)
      throw new Error(`job ${jobId} not ${until.join('/')} in time (${progress.status})`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

async function post(g: GantryChild, route: string, body: unknown) {
  const res = await requestJson('POST', `${g.url}${route}`, { headers: g.headers, body });
  if (res.status !== 200) throw new Error(`POST ${route}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.data as Record<string, unknown>;
}

async function findUpdate(g: GantryChild, version: string): Promise<{ id: string; size?: number }> {
  await post(g, '/api/v1/ota/check-updates', { force: true, background: false });
  const list = await requestJson('GET', `${g.url}/api/v1/ota/updates`, { headers: g.headers });
  const update = (
    list.body?.data?.updates as Array<{ id: string; version: string; size?: number }> | undefined
  )?.find((u) => u.version === version);
  if (!update) throw new Error(`the feed does not offer ${version}: ${JSON.stringify(list.body)}`);
  return update;
}

export interface Gateway {
  dataDir: string;
  /** Starts Gantry on this gateway's data dir with the feed at `feedUrl`. */
  start(feedUrl: string): Promise<GantryChild>;
}

export function createGateway(cmd: GantryCommand, dataDir: string, feed: Feed): Gateway {
  trustVendorKey(dataDir, feed.vendorPublicKeyPem);
  return {
    dataDir,
    start: (feedUrl) =>
      startGantryChild(cmd, {
        dataDir,
        env: { GANTRY_FEED_URL: feedUrl, GANTRY_FEED_ROOT: feed.rootJson },
      }),
  };
}

/** Installs `version` for real: download, install, reboot into it and commit it after its health check. */
export async function installRelease(gw: Gateway, feedUrl: string, version: string): Promise<void> {
  const g = await gw.start(feedUrl);
  try {
    const update = await findUpdate(g, version);
    const start = await post(g, '/api/v1/ota/download', { update_id: update.id, version });
    const jobId = start.job_id as string;
    await waitForJob(g, jobId, ['downloaded'], 30 * 60_000);
    await post(g, '/api/v1/ota/install', { job_id: jobId });
    await waitForJob(g, jobId, ['complete'], 5 * 60_000);
    const status = await requestJson('GET', `${g.url}/api/v1/ota/status`, { headers: g.headers });
    const active = status.body?.data?.partitions?.active as { version?: string } | undefined;
    if (active?.version !== version) {
      throw new Error(`after installing ${version} the active slot runs ${JSON.stringify(active)}`);
    }
  } finally {
    await g.stop();
  }
}

export interface UpdateRun {
  /** POST /download → the first GET /progress answering `downloaded`. */
  seconds: number;
  /** Counted by the feed server from the check-updates before the download to `downloaded`. */
  counts: ServerCounts;
  /** VmHWM of the Gantry process (its lifetime peak, start-up included). */
  peakRssBytes: number | null;
  /** Largest VmRSS sampled every 50 ms during the download. */
  sampledPeakRssBytes: number;
  /** User + system CPU seconds of the Gantry process from POST /download to `downloaded`. */
  cpuSeconds: number | null;
  slotOk: boolean;
  /** What `/updates` said this gateway would download (`size`). */
  listedSize: number | null;
  /** The last /progress answer (`downloaded`): the path and bytes Gantry reports. */
  progress: Progress;
  /** The job's lines in Gantry's log (path chosen, fallbacks, repairs), oldest first. */
  log: string[];
}

/**
 * One measured update on a fresh Gantry process: wipe the target slot (a real gateway's inactive
 * slot holds an older image, not a copy of the release this row measures), check for updates,
 * download `version`, until `downloaded`; then hash the target slot against the image.
 */
export async function measureUpdate(
  gw: Gateway,
  opts: {
    feedUrl: string;
    control: string;
    version: string;
    image: { bytes: number; sha256: string };
    timeoutMs: number;
  },
): Promise<UpdateRun> {
  const g = await gw.start(opts.feedUrl);
  try {
    const status = await requestJson('GET', `${g.url}/api/v1/ota/status`, { headers: g.headers });
    const inactive = status.body?.data?.partitions?.inactive?.id as 'A' | 'B' | undefined;
    if (inactive !== 'A' && inactive !== 'B')
      throw new Error(`no inactive slot: ${JSON.stringify(status.body)}`);
    const target = g.slotFile(inactive);
    if (fs.existsSync(target)) fs.truncateSync(target, 0);

    await serverCounts(opts.control, true);
    const update = await findUpdate(g, opts.version);
    const sampler = sampleRss(g.pid);
    const cpu0 = procCpuSeconds(g.pid);
    const t0 = performance.now();
    const start = await post(g, '/api/v1/ota/download', { update_id: update.id, version: opts.version });
    if (start.target_partition !== inactive) {
      throw new Error(
        `download went to ${String(start.target_partition)}, not the inactive slot ${inactive}`,
      );
    }
    const done = await waitForJob(g, start.job_id as string, ['downloaded'], opts.timeoutMs);
    const cpu1 = procCpuSeconds(g.pid);
    const sampled = sampler.stop();
    const counts = await serverCounts(opts.control);
    const mem = procMemory(g.pid);
    const jobId = start.job_id as string;
    const logs = await requestJson('GET', `${g.url}/api/v1/ota/logs?limit=200`, { headers: g.headers });
    const log = ((logs.body?.data?.logs as Array<{ message: string }> | undefined) ?? [])
      .map((l) => l.message)
      .filter((m) => m.includes(jobId))
      .reverse();
    const slotOk =
      fs.statSync(target).size >= opts.image.bytes &&
      (await sha256File(target, opts.image.bytes)) === opts.image.sha256;
    return {
      seconds: (done.at - t0) / 1000,
      counts,
      peakRssBytes: mem?.hwm ?? null,
      sampledPeakRssBytes: sampled,
      cpuSeconds: cpu0 === null || cpu1 === null ? null : Math.round((cpu1 - cpu0) * 100) / 100,
      slotOk,
      listedSize: typeof update.size === 'number' ? update.size : null,
      progress: done.progress,
      log,
    };
  } finally {
    await g.stop();
  }
}
