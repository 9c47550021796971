import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { and, asc, count, eq, gt, lte, max, sql } from 'drizzle-orm';
import type { GantryConfig } from '../core/config.js';
import { findGantryError, GantryError, type ErrorCode } from '../core/errors.js';
import { formatBytes, isoSeconds } from '../core/format.js';
import { fsyncDirSync } from '../core/fsutil.js';
import { drained } from '../core/streams.js';
import { proxyPasswords, redactUrlCredentials } from '../feed/http/proxy.js';
import type { GantryDb } from '../drizzle/db.js';
import { logs, safetyPins, users } from '../drizzle/schema.js';
import { JOB_MACHINE } from '../core/job-kinds.js';
import type { ActorSnapshotStore } from './actor-snapshots.js';
import type { GatewayRegistry, GatewayRuntime } from './gateways.js';
import type { DebugBundleArtifact as BundleArtifact } from './job-records.js';
import type { CleanUpOutcome } from './job-restart.js';
import type { JobStore, StoredJobOf } from './jobs.js';
import type { LogService } from './logs.js';
import type { SettingsService } from './settings.js';
import { addBuffer, entryDone } from '../bundle/tar-entries.js';

/**
 * Debug bundles (SECTION 1 "Debug Bundle"): a .tar.gz an operator hands to support, with the
 * gateway's logs, configuration, metrics and job histories. Built as a job (kind `debug-bundle`)
 * streaming tar → gzip → file, so a gateway with a long history never holds it in memory, under
 * `<dataDir>/gateways/<id>/debug/<bundle_id>.tar.gz`.
 *
 * Everything in a bundle leaves the plant: secrets are redacted twice, by field name (passwords,
 * hashes of PINs, tokens, keys) and by value (the JWT secret, every password and PIN hash, the
 * admin password and PIN given by environment), whatever field or log line they turn up in.
 */

const DEBUG_BUNDLE_JOB_KIND = 'debug-bundle';
const BUNDLE_ID = /^debug-(\d{8})-(\d{3,})$/;
const STAGING_PREFIX = '.staging-';
const PART_SUFFIX = '.tar.gz.part';
const PAGE = 1000;
/** Bundles kept per gateway: they are for handing over, not an archive, and must not fill the disk. */
const DEFAULT_RETENTION = 10;
export const REDACTED = '[REDACTED]';

/** Field names whose values are secrets wherever they appear (settings, job requests, config). */
const SECRET_KEY =
  /(password|passwd|secret|token|credential|private_?key|api_?key|authorization|cookie|pin_?hash|hash_?pin|^pin$|^safety_?pin$)/i;
/** Shorter values are not scrubbed from free text: "0000" would blank half the timestamps. */
const MIN_SECRET_LENGTH = 8;

/** Replaces secret fields and every occurrence of a known secret value, recursively. */
export function redactSecrets(value: unknown, secrets: readonly string[], key?: string): unknown {
  if (key !== undefined && SECRET_KEY.test(key) && value !== null && value !== undefined) return REDACTED;
  if (typeof value === 'string') {
    // Credentials inside URLs (a proxy's or a feed's `user:password@`), whatever their length.
    let out = redactUrlCredentials(value);
    for (const s of secrets) if (out.includes(s)) out = out.split(s).join(REDACTED);
    return out;
  }
  if (Array.isArray(value)) return value.map((v) => redactSecrets(v, secrets));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactSecrets(v, secrets, k)]));
  }
  return value;
}

export interface DebugBundleServiceDeps {
  config: GantryConfig;
  db: GantryDb;
  clock: () => number;
  startedAt: number;
  gateways: GatewayRegistry;
  jobs: JobStore;
  /** The jobs' statechart snapshots, carried in the bundle's job history. */
  actorSnapshots: ActorSnapshotStore;
  settings: SettingsService;
  logs: LogService;
  retention?: number;
}

interface RunningBundle {
  id: string;
  gatewayId: string;
  abort: AbortController;
  done: Promise<void>;
}

type BundleEntry = { name: string; data: Buffer } | { name: string; file: string; size: number };

function yyyymmdd(ms: number): string {
  return isoSeconds(ms).slice(0, 10).replace(/-/g, '');
}

function fsyncFile(file: string): void {
  const fd = fs.openSync(file, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function jsonBuffer(value: unknown): Buffer {
  return Buffer.from(`${JSON.stringify(value, null, 2)}\n`, 'utf8');
}

/** Rows page by page, so a long history is streamed rather than loaded. */
function* paged<T>(fetch: (after: number) => T[], key: (row: T) => number): Generator<T> {
  let after = 0;
  for (;;) {
    const page = fetch(after);
    if (page.length === 0) return;
    yield* page;
    after = key(page[page.length - 1]!);
  }
}

/** What a debug bundle should include (the payload of POST /debug-bundle, defaults applied). */
export interface DebugBundleInput {
  include_logs: boolean;
  include_configs: boolean;
  include_metrics: boolean;
}

export class DebugBundleService {
  private readonly running = new Map<string, RunningBundle>();
  private stopping = false;

  constructor(private readonly deps: DebugBundleServiceDeps) {}

  debugDir(gatewayId: string): string {
    return path.join(this.deps.gateways.gatewayDir(gatewayId), 'debug');
  }

  // ---- lifecycle ----------------------------------------------------------------------

  /**
   * The `clean-up` restart policy of debug bundles (services/job-restart.ts): a bundle interrupted
   * by a restart is not resumed but failed; its pieces (staging dir, `.part` archive, or an archive
   * renamed into place but not yet recorded) are the start-up sweep's (services/data-dir-sweep.ts).
   */
  afterRestart(job: StoredJobOf<'debug-bundle'>): CleanUpOutcome<'debug-bundle'> {
    const message =
      'Debug bundle interrupted: Gantry stopped (restart or power loss) while building it; request it again.';
    this.deps.logs.warn(job.gatewayId, 'debug', `Debug bundle ${job.id}: ${message}`);
    return { state: 'error', failure: { code: 'INTERNAL_ERROR', message } };
  }

  private ref(id: string) {
    return { id, kind: DEBUG_BUNDLE_JOB_KIND } as const;
  }

  /** Stops bundles being built; like after a crash, the next start marks them failed. */
  async stop(): Promise<void> {
    this.stopping = true;
    const running = [...this.running.values()];
    for (const b of running) b.abort.abort(new Error('Gantry is stopping'));
    await Promise.allSettled(running.map((b) => b.done));
  }

  // ---- creating -----------------------------------------------------------------------

  create(gw: GatewayRuntime, input: DebugBundleInput, username: string) {
    if (this.stopping) throw new GantryError('OTA_OPERATION_IN_PROGRESS', 'Gantry is shutting down');
    const now = this.deps.clock();
    const id = this.nextId(now);
    this.deps.jobs.create({
      id,
      gatewayId: gw.id,
      kind: DEBUG_BUNDLE_JOB_KIND,
      state: 'creating',
      request: { ...input, requested_by: username },
    });
    const estimate = this.estimateBytes(gw.id, input);
    const bundle: RunningBundle = {
      id,
      gatewayId: gw.id,
      abort: new AbortController(),
      done: Promise.resolve(),
    };
    this.deps.logs.info(gw.id, 'debug', `Debug bundle ${id} requested by ${username}`);
    this.running.set(id, bundle);
    bundle.done = this.build(gw, bundle, input, username);
    return {
      bundle_id: id,
      status: 'creating' as const,
      estimatedBytes: estimate,
      download_url: `/api/v1/ota/debug/download/${id}.tar.gz`,
    };
  }

  /** `debug-YYYYMMDD-NNN`, numbered per (UTC) day across gateways: job ids are unique server-wide. */
  private nextId(now: number): string {
    const prefix = `debug-${yyyymmdd(now)}-`;
    const ids = this.deps.jobs.ids(DEBUG_BUNDLE_JOB_KIND, { prefix });
    const last = ids.reduce((m, id) => Math.max(m, Number(BUNDLE_ID.exec(id)?.[2] ?? 0)), 0);
    return `${prefix}${String(last + 1).padStart(3, '0')}`;
  }

  /** Rough compressed size: row counts and text lengths, JSON compressing about 4:1. */
  private estimateBytes(gatewayId: string, input: DebugBundleInput): number {
    const { db } = this.deps;
    let raw = 8 * 1024;
    if (input.include_logs) {
      const l = db
        .select({
          n: count(),
          text: sql<number>`coalesce(sum(length(${logs.message}) + length(${logs.source})), 0)`,
        })
        .from(logs)
        .where(eq(logs.gatewayId, gatewayId))
        .get();
      raw += (l?.text ?? 0) + (l?.n ?? 0) * 90;
    }
    const counted = this.deps.jobs.counts(gatewayId);
    raw += counted.jobs * 2048 + counted.transitions * 160;
    if (input.include_configs) raw += 16 * 1024;
    if (input.include_metrics) raw += 4 * 1024;
    return Math.max(1024, Math.round(raw / 4));
  }

  /** Every secret value this server knows of, to scrub from whatever text carries it. */
  private knownSecrets(): string[] {
    const { config, db } = this.deps;
    const values: string[] = [];
    let jwt = config.jwtSecret;
    if (!jwt) {
      try {
        jwt = fs.readFileSync(path.join(config.dataDir, 'secrets', 'jwt-secret'), 'utf8').trim();
      } catch {
        jwt = undefined;
      }
    }
    if (jwt) values.push(jwt);
    const hashes = [
      ...db.select({ h: users.passwordHash }).from(users).all(),
      ...db.select({ h: safetyPins.pinHash }).from(safetyPins).all(),
    ].map((r) => r.h);
    for (const h of hashes) {
      values.push(h);
      // The salt and key of a "$"-separated hash are secrets on their own too.
      values.push(...h.split('$').filter((part) => part.length >= 16));
    }
    values.push(...proxyPasswords(config));
    if (config.adminPassword) values.push(config.adminPassword);
    if (config.safetyPin) values.push(config.safetyPin);
    // Longest first: a secret containing another is replaced whole.
    return [...new Set(values.filter((v) => v.length >= MIN_SECRET_LENGTH))].sort(
      (a, b) => b.length - a.length,
    );
  }

  private async build(gw: GatewayRuntime, bundle: RunningBundle, input: DebugBundleInput, username: string) {
    const dir = this.debugDir(gw.id);
    const staging = path.join(dir, `${STAGING_PREFIX}${bundle.id}`);
    const part = path.join(dir, `.${bundle.id}${PART_SUFFIX}`);
    const filename = `${bundle.id}.tar.gz`;
    const signal = bundle.abort.signal;
    const secrets = this.knownSecrets();
    const redact = (v: unknown) => redactSecrets(v, secrets);
    try {
      fs.mkdirSync(staging, { recursive: true, mode: 0o700 });
      const entries: BundleEntry[] = [];
      const addJson = (name: string, value: unknown) =>
        entries.push({ name, data: jsonBuffer(redact(value)) });
      const addLines = async (name: string, rows: Iterable<unknown>) => {
        const file = path.join(staging, name.replace(/\//g, '__'));
        const lines = function* () {
          for (const row of rows) yield `${JSON.stringify(redact(row))}\n`;
        };
        await pipeline(Readable.from(lines()), fs.createWriteStream(file, { flags: 'wx', mode: 0o600 }), {
          signal,
        });
        entries.push({ name, file, size: fs.statSync(file).size });
      };

      if (input.include_logs) {
        // Up to the last entry now: the bundle's own log lines must not keep it growing.
        const last = this.deps.db
          .select({ id: max(logs.id) })
          .from(logs)
          .where(eq(logs.gatewayId, gw.id))
          .get();
        const upTo = last?.id ?? 0;
        await addLines(
          'logs/logs.jsonl',
          paged(
            (after) =>
              this.deps.db
                .select()
                .from(logs)
                .where(and(eq(logs.gatewayId, gw.id), gt(logs.id, after), lte(logs.id, upTo)))
                .orderBy(asc(logs.id))
                .limit(PAGE)
                .all()
                .map((r) => ({
                  id: r.id,
                  timestamp: isoSeconds(r.at),
                  at: r.at,
                  level: r.level,
                  source: r.source,
                  message: r.message,
                })),
            (r) => r.id,
          ),
        );
      }
      if (input.include_configs) {
        const safely = <T>(p: Promise<T>) => p.catch((err: Error) => ({ unavailable: err.message }));
        const [slots, bootEnv, booted, system] = await Promise.all([
          safely(gw.device.slots()),
          safely(gw.device.readBootEnv()),
          safely(gw.device.bootedSlot()),
          safely(gw.device.systemInfo()),
        ]);
        addJson('config/settings.json', this.deps.settings.get(gw.id));
        addJson('config/slots.json', slots);
        addJson('config/boot-env.json', bootEnv);
        addJson('config/gateway.json', { ...gw.row(), booted_slot: booted, system });
        const { gateways: configured, ...serverConfig } = this.deps.config;
        addJson('config/gantry.json', { configured_gateways: configured, config: serverConfig });
      }
      if (input.include_metrics) addJson('metrics/metrics.json', await this.metrics(gw));
      await addLines('jobs/jobs.jsonl', this.jobRows(gw.id));
      await addLines('jobs/transitions.jsonl', this.transitionRows(gw.id));

      const createdAt = this.deps.clock();
      const manifest = jsonBuffer({
        bundle_id: bundle.id,
        gateway_id: gw.id,
        created_at: isoSeconds(createdAt),
        requested_by: username,
        includes: {
          logs: input.include_logs,
          configs: input.include_configs,
          metrics: input.include_metrics,
          jobs: true,
        },
        entries: entries.map((e) => ({ name: e.name, size: 'data' in e ? e.data.length : e.size })),
        redaction: `secrets (passwords, PIN and password hashes, tokens, keys, the JWT secret, credentials in URLs such as a proxy's) appear as ${REDACTED}`,
      });
      const all: BundleEntry[] = [{ name: 'manifest.json', data: manifest }, ...entries];

      const { size, sha256 } = await this.pack(bundle.id, all, part, new Date(createdAt), signal);
      fsyncFile(part);
      const finalPath = path.join(dir, filename);
      fs.renameSync(part, finalPath);
      fsyncDirSync(dir);
      fs.rmSync(staging, { recursive: true, force: true });
      const artifact: BundleArtifact = {
        path: finalPath,
        filename,
        size,
        sha256,
        entries: all.map((e) => ({
          name: `${bundle.id}/${e.name}`,
          size: 'data' in e ? e.data.length : e.size,
        })),
      };
      this.deps.jobs.transition(
        this.ref(bundle.id),
        { from: 'creating', to: 'complete', event: 'bundle.complete', context: { size, sha256 } },
        { artifact },
      );
      this.deps.logs.info(gw.id, 'debug', `Debug bundle ${bundle.id} ready: ${formatBytes(size)}`);
      this.prune(gw.id);
    } catch (err) {
      if (this.stopping && signal.aborted) return;
      fs.rmSync(staging, { recursive: true, force: true });
      fs.rmSync(part, { force: true });
      const code: ErrorCode =
        (err as NodeJS.ErrnoException).code === 'ENOSPC'
          ? 'OTA_INSUFFICIENT_SPACE'
          : (findGantryError(err)?.gantryCode ?? 'INTERNAL_ERROR');
      const message = `Debug bundle failed: ${(err as Error).message}`;
      this.deps.jobs.fail(this.ref(bundle.id), 'creating', { code, message }, 'bundle.failed');
      this.deps.logs.error(gw.id, 'debug', `Debug bundle ${bundle.id}: ${message}`);
    } finally {
      this.running.delete(bundle.id);
    }
  }

  /** tar → gzip → file, hashed on the way; entries from files are streamed, never loaded. */
  private async pack(
    id: string,
    entries: BundleEntry[],
    out: string,
    mtime: Date,
    signal: AbortSignal,
  ): Promise<{ size: number; sha256: string }> {
    // Loaded on first use (scripts/server-bundle-plugins.ts LAZY_PACKAGES): an idle server never packs.
    const { default: tar } = await import('tar-stream');
    const pack = tar.pack();
    const header = (name: string, size: number) => ({
      name: `${id}/${name}`,
      size,
      mode: 0o644,
      mtime,
      type: 'file' as const,
      uname: '',
      gname: '',
    });
    const feed = async (): Promise<void> => {
      for (const e of entries) {
        signal.throwIfAborted();
        if ('data' in e) {
          await addBuffer(pack, header(e.name, e.data.length), e.data);
          continue;
        }
        const entry = pack.entry(header(e.name, e.size));
        const done = entryDone(entry);
        for await (const chunk of fs.createReadStream(e.file)) {
          if (entry.destroyed) throw new Error('bundle output closed');
          if (!entry.write(chunk as Buffer)) await drained(entry);
        }
        entry.end(undefined);
        await done;
      }
      pack.finalize();
    };
    const hash = createHash('sha256');
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, callback) {
        hash.update(chunk);
        size += chunk.length;
        callback(null, chunk);
      },
    });
    // Node's pipeline does not fully understand tar-stream's streamx streams: read pack by iteration.
    const packed = async function* (): AsyncGenerator<Buffer> {
      for await (const chunk of pack) yield chunk as Buffer;
    };
    let failure: unknown;
    const fail = (err: unknown): void => {
      failure ??= err;
      pack.destroy(err as Error);
    };
    await Promise.all([
      feed().catch(fail),
      pipeline(packed, zlib.createGzip(), meter, fs.createWriteStream(out, { flags: 'w', mode: 0o600 }), {
        signal,
      }).catch(fail),
    ]);
    if (failure !== undefined) throw failure;
    return { size, sha256: hash.digest('hex') };
  }

  private async metrics(gw: GatewayRuntime) {
    const safely = <T>(p: Promise<T>) => p.catch((err: Error) => ({ unavailable: err.message }));
    const [resources, storage, system, safety] = await Promise.all([
      safely(gw.device.resources()),
      safely(gw.device.storageSpace()),
      safely(gw.device.systemInfo()),
      safely(gw.device.readSafety()),
    ]);
    const now = this.deps.clock();
    return {
      captured_at: isoSeconds(now),
      resources,
      storage,
      uptime: {
        gateway_seconds: 'uptimeSeconds' in system ? system.uptimeSeconds : null,
        gantry_seconds: Math.round((now - this.deps.startedAt) / 1000),
        host_seconds: Math.round(os.uptime()),
      },
      safety_readings: safety,
      current_operation: gw.currentOperation(),
      process: {
        memory: process.memoryUsage(),
        node: process.version,
        platform: process.platform,
        arch: process.arch,
        pid: process.pid,
      },
      host: {
        load_average: os.loadavg(),
        cpus: os.cpus().length,
        total_memory: os.totalmem(),
        free_memory: os.freemem(),
      },
    };
  }

  /** Every job as stored (a row this version cannot read too), with its statechart's snapshot. */
  private *jobRows(gatewayId: string): Generator<unknown> {
    for (let offset = 0; ; offset += PAGE) {
      const page = this.deps.jobs.rawPage(gatewayId, offset, PAGE);
      if (page.length === 0) return;
      for (const row of page) {
        const machine = JOB_MACHINE[row.kind] ?? null;
        const stored = machine ? this.deps.actorSnapshots.stored(machine, row.id) : undefined;
        yield {
          ...row,
          snapshot: stored ? { machine, version: stored.version, value: stored.snapshot } : null,
          created: isoSeconds(row.createdAt),
          finished: row.finishedAt ? isoSeconds(row.finishedAt) : null,
        };
      }
    }
  }

  private transitionRows(gatewayId: string): Iterable<unknown> {
    return paged(
      (after) =>
        this.deps.jobs
          .transitionPage(gatewayId, after, PAGE)
          .map((t) => ({ ...t, timestamp: isoSeconds(t.at) })),
      (r) => r.id,
    );
  }

  /** Keeps the newest bundles of the gateway; older files are deleted (their download answers 404). */
  private prune(gatewayId: string): void {
    const keep = this.deps.retention ?? DEFAULT_RETENTION;
    const done = this.deps.jobs.list(gatewayId, DEBUG_BUNDLE_JOB_KIND, { state: 'complete' });
    for (const job of done.slice(keep)) {
      if (job.artifact && fs.existsSync(job.artifact.path)) fs.rmSync(job.artifact.path, { force: true });
    }
  }

  // ---- download -----------------------------------------------------------------------

  private ready(
    gatewayId: string,
    bundleId: string,
  ): { row: StoredJobOf<'debug-bundle'>; artifact: BundleArtifact } {
    const row = this.deps.jobs.find(gatewayId, bundleId, [DEBUG_BUNDLE_JOB_KIND]);
    // Another gateway's bundle answers exactly like an unknown one: its existence is not ours to tell.
    if (!row) throw new GantryError('NOT_FOUND', `Debug bundle ${bundleId} not found`);
    if (row.state === 'error') {
      throw new GantryError(
        'NOT_FOUND',
        `Debug bundle ${bundleId} failed: ${row.errorMessage ?? 'unknown error'}`,
      );
    }
    const artifact = row.artifact;
    if (row.state !== 'complete' || !artifact) {
      throw new GantryError('NOT_FOUND', `Debug bundle ${bundleId} is not ready yet (${row.state})`, {
        status: row.state,
      });
    }
    if (!fs.existsSync(artifact.path)) {
      throw new GantryError('NOT_FOUND', `Debug bundle ${bundleId} was deleted (only the newest are kept)`);
    }
    return { row, artifact };
  }

  /** What the download route serves, after the caller was authorized for the gateway. */
  describe(gw: GatewayRuntime, bundleId: string) {
    const { artifact } = this.ready(gw.id, bundleId);
    return { bundle_id: bundleId, filename: artifact.filename, size: artifact.size, sha256: artifact.sha256 };
  }

  /** The file behind `describe` (kept off the API: clients get bytes, not server paths). */
  filePath(gatewayId: string, bundleId: string): string {
    return this.ready(gatewayId, bundleId).artifact.path;
  }
}
