import fs from 'node:fs';
import path from 'node:path';
import { runCommand } from './lib/command.js';
import { MiB, sizeLabel } from './lib/fixtures.js';
import {
  GATEWAY,
  procCpuSeconds,
  procMemory,
  requestJson,
  resetPeakRss,
  ROOT,
  rssByMapping,
  sampleRss,
  restartMode,
  startGantryChild,
  trustVendorKey,
  type GantryCommand,
  type RssByMapping,
} from './lib/gantry-child.js';
import { spawnReady, stopChild } from './lib/process.js';
import { median, round } from './lib/report.js';
import { mib } from './lib/stats.js';
import type { Table } from './lib/suite.js';

/**
 * Manual upload of a signed bundle: `curl -F file=@bundle` to POST /api/v1/ota/upload/verify
 * (multipart parsed, streamed to disk hashed and fsynced, then the bundle's signature and every
 * payload hash verified) next to `curl -T bundle` into a bare Node http server that only pipes the
 * request into a file and fsyncs it. Each Gantry run is a fresh child process, so its peak RSS
 * (VmHWM) is that of one upload.
 */

export interface UploadRun {
  seconds: number;
  ok: boolean;
  /** VmRSS after login, before the upload. */
  idleRssBytes?: number;
  /** VmHWM at the end of the upload (peak resident set of the process's life so far). */
  peakRssBytes?: number;
  /** VmHWM over start-up and over the login alone (absent: the kernel refused the peak reset). */
  startupPeakRssBytes?: number;
  loginPeakRssBytes?: number;
  /** VmHWM over the upload alone (POST /upload/verify to its answer). */
  uploadPeakRssBytes?: number;
  /** VmRSS 0.5 s after the upload was answered, just before the deploy. */
  rssAfterUploadBytes?: number;
  /** VmHWM over the deploy alone (POST /upload/deploy to `downloaded`). */
  deployOwnPeakRssBytes?: number;
  /** VmRSS ~0.5 s after the deploy reached `downloaded`. */
  rssAfterDeployBytes?: number;
  /** Largest VmRSS sampled every 50 ms during the upload. */
  sampledPeakRssBytes?: number;
  /** CPU seconds (user + system) Gantry used during the upload. */
  cpuSeconds?: number;
  /** The verified upload deployed to slot B: POST /upload/deploy until the job is `downloaded`. */
  deploySeconds?: number;
  /** Largest VmRSS sampled every 50 ms during the deploy (the bundle read from disk, lent). */
  deploySampledPeakRssBytes?: number;
  /** VmRSS by mapping: before the upload, at its largest sample, after it, at the deploy's largest. */
  mappings?: {
    idle: RssByMapping | null;
    upload: RssByMapping | null;
    afterUpload: RssByMapping | null;
    deploy: RssByMapping | null;
  };
  /** VmHWM once the deploy reached `downloaded`: the process's lifetime peak, upload included. */
  deployPeakRssBytes?: number;
}

/** Deploys the verified upload to slot B and waits for `downloaded`; seconds and sampled peak. */
async function deployUpload(
  g: { url: string; pid: number; headers: Record<string, string> },
  file: { name: string; checksum: string },
): Promise<{ seconds: number; sampledPeak: number; peakMapping: RssByMapping | null }> {
  const sampler = sampleRss(g.pid, { mapping: true });
  const t0 = performance.now();
  try {
    const res = await requestJson('POST', `${g.url}/api/v1/ota/upload/deploy`, {
      headers: g.headers,
      body: { filename: file.name, checksum: file.checksum, target_partition: 'B' },
    });
    const jobId = (res.body as { data?: { job_id?: string } }).data?.job_id;
    if (res.status !== 200 || !jobId)
      throw new Error(`deploy refused: ${res.status} ${JSON.stringify(res.body)}`);
    const deadline = Date.now() + 300_000;
    for (;;) {
      const p = await requestJson('GET', `${g.url}/api/v1/ota/progress?job_id=${jobId}`, {
        headers: g.headers,
      });
      const status = (p.body as { data?: { status?: string } }).data?.status;
      if (status === 'downloaded') break;
      if (status === 'error' || status === 'cancelled' || Date.now() > deadline) {
        throw new Error(
          `deploy ${jobId} ended ${status ?? 'nowhere'}: ${JSON.stringify(p.body).slice(0, 300)}`,
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    const sampledPeak = sampler.stop();
    return { seconds: (performance.now() - t0) / 1000, sampledPeak, peakMapping: sampler.peakMapping() };
  } finally {
    sampler.stop();
  }
}

export interface UploadResult {
  label: string;
  bundleBytes: number;
  runs: { gantry: UploadRun[]; bare: UploadRun[] };
  gantrySeconds: number;
  bareSeconds: number;
  ratio: number;
  gantryPeakRssBytes: number;
  /** Largest VmHWM after a deploy (lifetime peak of a process that received and deployed). */
  gantryDeployPeakRssBytes: number;
  bareSinkPeakRssBytes: number | null;
  table: Table;
  /** What the upload's and the deploy's sampled peaks were made of, in the run of the median upload peak. */
  mappingTable: Table | null;
  notes: string[];
}

/**
 * The floor of an HTTP upload: plain Node (no transpiler, so its RSS is Node's own), piping each
 * request body (\`curl -T FILE URL\`) into argv[1], fsyncing it, answering {"bytes": N}. Prints
 * {"url": …} once listening.
 */
const BARE_SINK = `
import fs from 'node:fs';
import http from 'node:http';
import { pipeline } from 'node:stream/promises';
const out = process.argv[1];
const server = http.createServer((req, res) => {
  const fd = fs.openSync(out, 'w');
  const file = fs.createWriteStream('', { fd, autoClose: false });
  pipeline(req, file).then(
    () => {
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ bytes: file.bytesWritten }));
    },
    (err) => {
      fs.closeSync(fd);
      res.writeHead(500).end(String(err));
    },
  );
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ url: 'http://127.0.0.1:' + server.address().port })));
process.once('SIGTERM', () => { server.closeAllConnections(); server.close(() => process.exit(0)); });
`;

async function gantryUpload(
  cmd: GantryCommand,
  opts: { work: string; bundle: string; vendorPublicKeyPem: string },
): Promise<UploadRun> {
  const dataDir = fs.mkdtempSync(path.join(opts.work, 'gantry-upload-'));
  trustVendorKey(dataDir, opts.vendorPublicKeyPem);
  // No demo feed, as in the field (a feed is configured) and in the download runs: with no feed
  // set, a simulated gateway generates and serves one at its first start, which left its idle
  // ~2-8 MiB higher (interleaved first starts: VmRSS 2 s after start 76.9-82.5 MiB against 74.8-74.9).
  const g = await startGantryChild(cmd, {
    dataDir,
    env: { GANTRY_DEMO_FEED: 'off' },
    phasePeaks: true,
    restart: restartMode(),
  });
  try {
    const idle = procMemory(g.pid);
    const idleMapping = rssByMapping(g.pid);
    // From here VmHWM is the upload's own peak (what came before is in g.peakBeforeBytes).
    const resets = g.peakBeforeBytes !== null && resetPeakRss(g.pid) !== null;
    const sampler = sampleRss(g.pid, { mapping: true });
    const cpu0 = procCpuSeconds(g.pid);
    const resp = path.join(opts.work, 'upload-response.json');
    const r = await runCommand(
      'curl',
      [
        '-sS',
        '-o',
        resp,
        '-w',
        '%{http_code}',
        '-H',
        `Authorization: Bearer ${g.token}`,
        '-H',
        `X-Gateway-ID: ${GATEWAY}`,
        '-F',
        `file=@${opts.bundle};type=application/octet-stream`,
        `${g.url}/api/v1/ota/upload/verify`,
      ],
      { timeoutMs: 300_000 },
    );
    const cpu1 = procCpuSeconds(g.pid);
    const sampled = sampler.stop();
    const mem = procMemory(g.pid);
    const body = fs.existsSync(resp) ? fs.readFileSync(resp, 'utf8') : '';
    fs.rmSync(resp, { force: true });
    const ok = r.code === 0 && r.stdout === '200' && body.includes('"verified":true');
    if (!ok) {
      throw new Error(
        `upload to Gantry failed: curl ${r.code}, HTTP ${r.stdout}: ${body.slice(0, 300)} ${r.stderr}`,
      );
    }
    const verified = (JSON.parse(body) as { data: { file: { name: string; checksum: string } } }).data.file;
    // What the upload held is released once it is answered (core/young-gc.ts releaseAfterOperation,
    // an asynchronous collection): its "after" is read a moment later, as a deploy would come.
    await new Promise((r) => setTimeout(r, 500));
    const afterUpload = procMemory(g.pid);
    const afterUploadMapping = rssByMapping(g.pid);
    const uploadPeak = resets ? (resetPeakRss(g.pid) ?? undefined) : undefined;
    const deploy = await deployUpload(g, verified);
    const deployMem = procMemory(g.pid);
    await new Promise((r) => setTimeout(r, 500));
    const afterDeploy = procMemory(g.pid);
    const before = g.peakBeforeBytes ?? 0;
    return {
      seconds: r.seconds,
      ok,
      idleRssBytes: idle?.rss,
      peakRssBytes: resets ? Math.max(before, uploadPeak ?? 0) : mem?.hwm,
      sampledPeakRssBytes: sampled,
      startupPeakRssBytes: g.startupPeakRssBytes ?? undefined,
      loginPeakRssBytes: g.loginPeakRssBytes ?? undefined,
      uploadPeakRssBytes: uploadPeak,
      rssAfterUploadBytes: afterUpload?.rss,
      deployOwnPeakRssBytes: resets ? deployMem?.hwm : undefined,
      rssAfterDeployBytes: afterDeploy?.rss,
      cpuSeconds: cpu0 === null || cpu1 === null ? undefined : round(cpu1 - cpu0, 2),
      deploySeconds: round(deploy.seconds, 3),
      deploySampledPeakRssBytes: deploy.sampledPeak,
      deployPeakRssBytes: resets ? Math.max(before, uploadPeak ?? 0, deployMem?.hwm ?? 0) : deployMem?.hwm,
      mappings: {
        idle: idleMapping,
        upload: sampler.peakMapping(),
        afterUpload: afterUploadMapping,
        deploy: deploy.peakMapping,
      },
    };
  } finally {
    await g.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

async function bareUpload(url: string, bundle: string, bytes: number, out: string): Promise<UploadRun> {
  try {
    const r = await runCommand('curl', ['-sS', '-w', '\n%{http_code}', '-T', bundle, `${url}/upload`], {
      timeoutMs: 300_000,
    });
    const [body = '', status] = r.stdout.split('\n');
    const ok = r.code === 0 && status === '200' && body === JSON.stringify({ bytes });
    if (!ok) throw new Error(`upload to the bare server failed: curl ${r.code}, ${r.stdout} ${r.stderr}`);
    return { seconds: r.seconds, ok };
  } finally {
    fs.rmSync(out, { force: true });
  }
}

const maxOf = (runs: UploadRun[], f: (r: UploadRun) => number | undefined): number | undefined => {
  const values = runs.map(f).filter((v): v is number => v !== undefined);
  return values.length ? Math.max(...values) : undefined;
};
const over = (peak: number | undefined, from: number | undefined) =>
  peak === undefined || from === undefined ? undefined : peak - from;
const mibOrDash = (bytes: number | undefined) => (bytes === undefined ? '–' : mib(bytes));

/** Alternates Gantry and bare uploads of `bundle`, `runs` times each. */
export async function measureUpload(opts: {
  cmd: GantryCommand;
  work: string;
  bundle: string;
  vendorPublicKeyPem: string;
  runs: number;
  log: (m: string) => void;
}): Promise<UploadResult> {
  const bytes = fs.statSync(opts.bundle).size;
  const label = sizeLabel(Math.round(bytes / MiB) * MiB);
  const sinkFile = path.join(opts.work, 'bare-upload.bin');
  const sink = await spawnReady<{ url: string }>(
    process.execPath,
    ['--input-type=module', '-e', BARE_SINK, sinkFile],
    {
      cwd: ROOT,
      env: { ...process.env },
    },
  );
  const runs = { gantry: [] as UploadRun[], bare: [] as UploadRun[] };
  let bareSinkPeak: number | null = null;
  try {
    for (let i = 0; i < opts.runs; i++) {
      opts.log(
        `upload ${label} run ${i + 1}/${opts.runs}: Gantry /upload/verify and /upload/deploy, then bare curl -T…`,
      );
      runs.gantry.push(await gantryUpload(opts.cmd, opts));
      runs.bare.push(await bareUpload(sink.ready.url, opts.bundle, bytes, sinkFile));
    }
    bareSinkPeak = procMemory(sink.child.pid!)?.hwm ?? null;
  } finally {
    await stopChild(sink.child);
    fs.rmSync(sinkFile, { force: true });
  }
  const gantrySeconds = median(runs.gantry.map((r) => r.seconds));
  const bareSeconds = median(runs.bare.map((r) => r.seconds));
  const gantryPeak = Math.max(...runs.gantry.map((r) => r.peakRssBytes ?? 0));
  const deploySeconds = median(runs.gantry.map((r) => r.deploySeconds ?? 0));
  const secs = (rs: UploadRun[]) => rs.map((r) => round(r.seconds, 2)).join(' / ');
  const byPeak = runs.gantry
    .filter((r) => r.mappings)
    .sort((a, b) => (a.sampledPeakRssBytes ?? 0) - (b.sampledPeakRssBytes ?? 0));
  const medianRun = byPeak[Math.floor(byPeak.length / 2)];
  const kinds = ['node binary', 'other files', 'malloc heap', 'anonymous'] as const;
  const mappingRow = (moment: string, m: RssByMapping | null | undefined) =>
    m
      ? [moment, ...kinds.map((k) => mib(m[k])), mib(kinds.reduce((sum, k) => sum + m[k], 0))]
      : [moment, ...kinds.map(() => '–'), '–'];
  const mappingTable: Table | null = medianRun?.mappings
    ? {
        title: `Where the upload's memory is (VmRSS by mapping, /proc/<pid>/smaps, MiB; the run of the median sampled upload peak, sampled every 50 ms: a sample's largest, not VmHWM)`,
        columns: ['moment', ...kinds, 'in all'],
        rows: [
          mappingRow('idle, before the upload', medianRun.mappings.idle),
          mappingRow('largest sample of the upload', medianRun.mappings.upload),
          mappingRow('0.5 s after the upload', medianRun.mappings.afterUpload),
          mappingRow('largest sample of the deploy', medianRun.mappings.deploy),
        ],
      }
    : null;
  return {
    label,
    bundleBytes: bytes,
    runs,
    gantrySeconds: round(gantrySeconds, 3),
    bareSeconds: round(bareSeconds, 3),
    ratio: round(gantrySeconds / bareSeconds, 2),
    gantryPeakRssBytes: gantryPeak,
    gantryDeployPeakRssBytes: Math.max(...runs.gantry.map((r) => r.deployPeakRssBytes ?? 0)),
    bareSinkPeakRssBytes: bareSinkPeak,
    mappingTable,
    table: {
      title: `Manual upload of a ${label} signed bundle (${bytes} bytes) over loopback, median of ${opts.runs}; memory in MiB: a step's own peak is VmHWM reset at its start (/proc/<pid>/clear_refs), its idle the VmRSS it started from (the deploy's: after the upload), "after" VmRSS ~0.5 s after its end (the deploy starts then), lifetime the process's VmHWM with start-up and login`,
      columns: [
        'target',
        'median s',
        'MiB/s',
        'runs s',
        'idle RSS',
        'own peak',
        'own peak − idle',
        'after',
        'lifetime VmHWM',
        'CPU s',
      ],
      rows: [
        [
          'gantry POST /upload/verify (curl -F)',
          round(gantrySeconds, 2),
          round(mib(bytes) / gantrySeconds, 0),
          secs(runs.gantry),
          mib(median(runs.gantry.map((r) => r.idleRssBytes ?? 0))),
          mibOrDash(maxOf(runs.gantry, (r) => r.uploadPeakRssBytes)),
          mibOrDash(maxOf(runs.gantry, (r) => over(r.uploadPeakRssBytes, r.idleRssBytes))),
          mib(median(runs.gantry.map((r) => r.rssAfterUploadBytes ?? 0))),
          mib(gantryPeak),
          round(median(runs.gantry.map((r) => r.cpuSeconds ?? 0)), 2),
        ],
        [
          'gantry POST /upload/deploy → slot B (`downloaded`)',
          round(deploySeconds, 2),
          round(mib(bytes) / deploySeconds, 0),
          runs.gantry.map((r) => round(r.deploySeconds ?? 0, 2)).join(' / '),
          mib(median(runs.gantry.map((r) => r.rssAfterUploadBytes ?? 0))),
          mibOrDash(maxOf(runs.gantry, (r) => r.deployOwnPeakRssBytes)),
          mibOrDash(maxOf(runs.gantry, (r) => over(r.deployOwnPeakRssBytes, r.rssAfterUploadBytes))),
          mib(median(runs.gantry.map((r) => r.rssAfterDeployBytes ?? 0))),
          mib(Math.max(...runs.gantry.map((r) => r.deployPeakRssBytes ?? 0))),
          '–',
        ],
        [
          'bare node http → file + fsync (curl -T)',
          round(bareSeconds, 2),
          round(mib(bytes) / bareSeconds, 0),
          secs(runs.bare),
          '–',
          '–',
          '–',
          '–',
          bareSinkPeak === null ? '–' : mib(bareSinkPeak),
          '–',
        ],
      ],
    },
    notes: [
      'Upload: Gantry stores the multipart file (fsynced) and verifies it on the way (whole-file and payload SHA-256 on the event loop, manifest signature, tar structure; the file written by direct I/O) before answering; the bare server only stores and fsyncs.',
      'Deploy: the verified upload from disk to slot B (read through one reused buffer, verified again, written and fsynced), in the same process right after the upload.',
      'Gantry runs with GANTRY_DEMO_FEED=off here, as in the download runs (a configured feed) and in the field.',
    ],
  };
}
