import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { EventBus } from '../core/bus.js';
import { findGantryError, GantryError, type ErrorCode } from '../core/errors.js';
import { formatBytes, isoSeconds } from '../core/format.js';
import { fsyncDirSync, removeTreeSync } from '../core/fsutil.js';
import { pipeChunks } from '../core/lending.js';
import { SlotWriter } from '../device/slot-writer.js';
import type { SlotId, SlotInfo } from '../device/types.js';
import type { GatewayRegistry, GatewayRuntime } from './gateways.js';
import {
  SNAPSHOT_CONFIG_FILE as CONFIG_FILE,
  SNAPSHOT_ID,
  SNAPSHOT_IMAGE_FILE as IMAGE_FILE,
  snapshotMetaSchema,
  type SnapshotMeta,
  type SnapshotProgress,
} from './job-records.js';
import type { CleanUpOutcome } from './job-restart.js';
import type { JobStore, StoredJob, StoredJobOf } from './jobs.js';
import type { LogService } from './logs.js';
import type { SettingsService } from './settings.js';
import type { JobProgress } from './updates/job-types.js';

/**
 * System snapshots (SECTION 1 "Snapshot", used by SECTION 5 restore): a byte-for-byte copy of the
 * booted slot's image plus the gateway's configuration, under
 * `<dataDir>/gateways/<id>/snapshots/<snapshot_id>/` (image.img, config.json, snapshot.json).
 *
 * A snapshot is a job (jobs table, kind `snapshot`) that holds the gateway's operation lock while
 * it copies: nothing may write the slot or reboot the gateway under a copy in progress. Files are
 * written into a staging directory and renamed into place only once every byte is fsynced and the
 * hash matched the slot's record, so a directory named like a snapshot is always a whole one.
 */

const SNAPSHOT_JOB_KIND = 'snapshot';
const STAGING_PREFIX = '.staging-';
const META_FILE = 'snapshot.json';
/** Copy rate assumed for the first estimate of a gateway (eMMC read + write + fsync on a gateway). */
const ASSUMED_BYTES_PER_SECOND = 100 * 1024 * 1024;
/** Space kept free beyond the image, so a snapshot never fills the data partition to the last byte. */
const FREE_SPACE_MARGIN = 16 * 1024 * 1024;
const PROGRESS_PUBLISH_MS = 250;
const PROGRESS_PERSIST_MS = 500;

/** A finished snapshot, as the recovery code (restore, factory reset) sees it. */
export interface SnapshotEntry {
  id: string;
  name: string;
  description: string;
  /** OS version of the slot the image was copied from. */
  version: string;
  kernel: string | null;
  sourceSlot: SlotId;
  /** Bytes of image.img. */
  size: number;
  /** SHA-256 (hex) of image.img. */
  sha256: string;
  createdAt: number;
  imagePath: string;
  configPath: string;
}

/** config.json of a snapshot: what the gateway was configured as when the image was copied. */
export interface SnapshotConfig {
  format: 1;
  gateway_id: string;
  captured_at: string;
  gateway: { model: string; timezone: string };
  settings: unknown;
  booted_slot: SlotId;
  slots: Record<SlotId, SlotInfo>;
  boot_env: unknown;
  system: unknown;
}

export interface SnapshotServiceDeps {
  bus: EventBus;
  clock: () => number;
  gateways: GatewayRegistry;
  jobs: JobStore;
  settings: SettingsService;
  logs: LogService;
  /** Snapshots kept per gateway (GANTRY_SNAPSHOT_RETENTION); the oldest go first. */
  retention: number;
  /** Throughput assumed before a gateway's first snapshot was measured. */
  assumedBytesPerSecond?: number;
}

interface RunningSnapshot {
  id: string;
  gatewayId: string;
  progress: SnapshotProgress;
  abort: AbortController;
  /** Why it was aborted (factory reset), reported instead of the stream's "aborted". */
  abortReason: string | null;
  lastPersistAt: number;
  lastPublishAt: number;
  done: Promise<void>;
}

function snapshotId(seq: number): string {
  return `snap-${String(seq).padStart(3, '0')}`;
}

function seqOf(id: string): number {
  const m = SNAPSHOT_ID.exec(id);
  return m ? Number(m[1]) : 0;
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

function writeDurable(file: string, data: string): void {
  const fd = fs.openSync(file, 'wx', 0o644);
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function sameVersion(a: string, b: string): boolean {
  const norm = (v: string) => v.trim().replace(/^v/i, '');
  return norm(a) === norm(b);
}

/** A snapshot to take: its name (already checked against the safe alphabet) and description. */
export interface SnapshotInput {
  name: string;
  description: string;
}

export class SnapshotService {
  private readonly running = new Map<string, RunningSnapshot>();
  /** Ids handed out but not yet in the jobs table (job ids are unique across gateways). */
  private readonly reserved = new Set<string>();
  private stopping = false;

  constructor(private readonly deps: SnapshotServiceDeps) {}

  get retention(): number {
    return this.deps.retention;
  }

  snapshotsDir(gatewayId: string): string {
    return path.join(this.deps.gateways.gatewayDir(gatewayId), 'snapshots');
  }

  // ---- lifecycle ----------------------------------------------------------------------

  /**
   * The `clean-up` restart policy of snapshot jobs (services/job-restart.ts): a snapshot job left
   * `creating` cannot be resumed (the slot may have changed since), so it fails; its partial copy
   * (`.staging-<id>`) is the start-up sweep's (services/data-dir-sweep.ts). One whose directory was
   * already renamed into place is whole (the rename is the last step) and is complete.
   */
  afterRestart(job: StoredJobOf<'snapshot'>): CleanUpOutcome<'snapshot'> {
    const progress = job.progress;
    const meta = this.readMeta(job.gatewayId, job.id);
    if (meta) {
      this.deps.logs.warn(job.gatewayId, 'snapshot', `Snapshot ${job.id} was complete before the restart`);
      return { state: 'complete', ...this.completed(job.gatewayId, job.id, progress, meta) };
    }
    // Named like a snapshot but not a whole one (its metadata does not match its image).
    removeTreeSync(path.join(this.snapshotsDir(job.gatewayId), job.id));
    const where = progress
      ? ` while ${this.operationName(progress).replace(/_/g, ' ')} at ${this.percentage(progress, 'creating')}%`
      : '';
    const message = `Snapshot interrupted: Gantry stopped (restart or power loss)${where}; the partial copy was removed. Create the snapshot again.`;
    this.deps.logs.error(job.gatewayId, 'snapshot', `Snapshot ${job.id}: ${message}`);
    return { state: 'error', failure: { code: 'INTERNAL_ERROR', message } };
  }

  /**
   * Stops copies in progress without touching their rows: the next start finds them unfinished and
   * treats them exactly like after a crash (one path to test, not two).
   */
  async stop(): Promise<void> {
    this.stopping = true;
    const jobs = [...this.running.values()];
    for (const job of jobs) job.abort.abort(new Error('Gantry is stopping'));
    await Promise.allSettled(jobs.map((j) => j.done));
  }

  // ---- creating -----------------------------------------------------------------------

  /**
   * A snapshot taken by an install (`create_snapshot: true`) under the lock the install already
   * holds; resolves when the copy is complete, rejects if it failed.
   */
  async createUnderLock(gw: GatewayRuntime, input: SnapshotInput, username: string): Promise<string> {
    const started = await this.create(gw, input, username, { lockHeld: true });
    await this.running.get(started.snapshot_id)?.done;
    const row = this.deps.jobs.get(started.snapshot_id);
    if (row?.state !== 'complete') {
      throw new GantryError(
        'OTA_INSTALL_FAILED',
        `Snapshot before install failed: ${row?.errorMessage ?? 'unknown error'}`,
      );
    }
    return started.snapshot_id;
  }

  async create(
    gw: GatewayRuntime,
    input: SnapshotInput,
    username: string,
    opts: { lockHeld?: boolean } = {},
  ) {
    if (this.stopping) throw new GantryError('OTA_OPERATION_IN_PROGRESS', 'Gantry is shutting down');
    // Id and lock in one synchronous step: a second request sees the lock, never the same id.
    const id = this.nextId(gw.id);
    const release = opts.lockHeld
      ? () => undefined
      : gw.beginOperation({ kind: 'snapshot', id }, this.deps.clock());
    this.reserved.add(id);
    let created = false;
    try {
      const [booted, slots, space] = await Promise.all([
        gw.device.bootedSlot(),
        gw.device.slots(),
        gw.device.storageSpace(),
      ]);
      const record = slots[booted];
      if (record.state !== 'bootable' || !record.version || record.imageBytes <= 0) {
        throw new GantryError(
          'OTA_INVALID_IMAGE',
          `Slot ${booted} (booted) holds no verified image to snapshot (${record.state})`,
        );
      }
      if (space.freeBytes < record.imageBytes + FREE_SPACE_MARGIN) {
        throw new GantryError(
          'OTA_INSUFFICIENT_SPACE',
          `A snapshot of slot ${booted} needs ${formatBytes(record.imageBytes + FREE_SPACE_MARGIN)}; ${formatBytes(space.freeBytes)} free`,
        );
      }
      const now = this.deps.clock();
      const progress: SnapshotProgress = {
        phase: 'copying',
        sourceSlot: booted,
        version: record.version,
        totalBytes: record.imageBytes,
        bytesDone: 0,
        speedBps: 0,
        startedAt: now,
        copyMs: null,
      };
      this.deps.jobs.create({
        id,
        gatewayId: gw.id,
        kind: SNAPSHOT_JOB_KIND,
        state: 'creating',
        request: { name: input.name, description: input.description, requested_by: username },
        progress,
      });
      created = true;
      const estimate = this.estimateSeconds(gw.id, record.imageBytes);
      const job: RunningSnapshot = {
        id,
        gatewayId: gw.id,
        progress,
        abort: new AbortController(),
        abortReason: null,
        lastPersistAt: now,
        lastPublishAt: 0,
        done: Promise.resolve(),
      };
      gw.updateOperation(id, { currentOperation: this.operationName(progress), progress: 0 });
      this.deps.logs.info(
        gw.id,
        'snapshot',
        `Snapshot ${id} "${input.name}" of slot ${booted} (${record.version}, ${formatBytes(record.imageBytes)}) started by ${username}`,
      );
      // From here the run owns the lock and releases it however it ends.
      this.running.set(id, job);
      job.done = this.run(gw, job, input, record, release);
      return {
        snapshot_id: id,
        status: 'creating' as const,
        estimatedSeconds: estimate,
      };
    } catch (err) {
      if (!this.running.has(id)) {
        release();
        if (created) {
          this.deps.jobs.fail(
            this.ref(id),
            'creating',
            { code: 'INTERNAL_ERROR', message: (err as Error).message },
            'snapshot.failed',
          );
        }
      }
      throw err;
    } finally {
      this.reserved.delete(id);
    }
  }

  private ref(id: string) {
    return { id, kind: SNAPSHOT_JOB_KIND } as const;
  }

  /** Next `snap-NNN` of the gateway; a number another gateway already used is skipped. */
  private nextId(gatewayId: string): string {
    const ids = this.deps.jobs.ids(SNAPSHOT_JOB_KIND, { gatewayId });
    let seq = ids.reduce((max, id) => Math.max(max, seqOf(id)), 0) + 1;
    for (;;) {
      const id = snapshotId(seq);
      if (!this.reserved.has(id) && !this.deps.jobs.get(id)) return id;
      seq++;
    }
  }

  /** From the gateway's last measured copy rate, else the assumed one; plus a second of overhead. */
  private estimateSeconds(gatewayId: string, bytes: number): number {
    const [last] = this.deps.jobs.list(gatewayId, SNAPSHOT_JOB_KIND, { state: 'complete', limit: 1 });
    const measured = last?.progress ?? null;
    let rate = this.deps.assumedBytesPerSecond ?? ASSUMED_BYTES_PER_SECOND;
    // A copy of a few milliseconds says more about timer resolution than about the disk.
    if (measured?.copyMs && measured.copyMs >= 50) rate = (measured.totalBytes / measured.copyMs) * 1000;
    return Math.ceil(bytes / Math.max(rate, 1024 * 1024) + 1);
  }

  private async run(
    gw: GatewayRuntime,
    job: RunningSnapshot,
    input: SnapshotInput,
    record: SlotInfo,
    release: () => void,
  ): Promise<void> {
    const root = this.snapshotsDir(gw.id);
    const staging = path.join(root, `${STAGING_PREFIX}${job.id}`);
    const signal = job.abort.signal;
    const { sourceSlot: slot, totalBytes } = job.progress;
    try {
      fs.rmSync(staging, { recursive: true, force: true });
      fs.mkdirSync(staging, { recursive: true });
      const hash = createHash('sha256');
      const imageFile = path.join(staging, IMAGE_FILE);
      const copyStarted = this.deps.clock();
      // The slot is lent to the writer one reused buffer at a time; the writer fsyncs at its end.
      await pipeChunks(
        gw.device.openSlotReader(slot, { start: 0, end: totalBytes - 1 }),
        new SlotWriter(imageFile, 0, true),
        {
          signal,
          onChunk: (chunk) => {
            hash.update(chunk);
            this.advance(gw, job, chunk.length);
          },
        },
      );
      if (job.progress.bytesDone !== totalBytes) {
        throw new GantryError(
          'OTA_INVALID_IMAGE',
          `Slot ${slot} ended after ${job.progress.bytesDone} of ${totalBytes} bytes`,
        );
      }
      const sha256 = hash.digest('hex');
      // A snapshot exists to be restored: copying an image that is not what its record says would
      // only move the corruption somewhere it looks trustworthy.
      if (record.sha256 && sha256 !== record.sha256) {
        throw new GantryError(
          'OTA_INVALID_IMAGE',
          `Slot ${slot} does not hold the image its record describes (SHA-256 ${sha256.slice(0, 12)}…, recorded ${record.sha256.slice(0, 12)}…); not snapshotting it`,
        );
      }
      job.progress = { ...job.progress, copyMs: this.deps.clock() - copyStarted };
      this.setPhase(gw, job, 'configuration');
      const config = await this.captureConfig(gw);
      writeDurable(path.join(staging, CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
      const createdAt = this.deps.clock();
      const meta: SnapshotMeta = {
        format: 1,
        id: job.id,
        gateway_id: gw.id,
        name: input.name,
        description: input.description,
        version: job.progress.version,
        kernel: record.kernel,
        source_partition: slot,
        size: totalBytes,
        sha256,
        created_at: isoSeconds(createdAt),
        created_at_ms: createdAt,
        image: IMAGE_FILE,
        config: CONFIG_FILE,
      };
      writeDurable(path.join(staging, META_FILE), `${JSON.stringify(meta, null, 2)}\n`);
      fsyncDirSync(staging);
      signal.throwIfAborted();
      this.setPhase(gw, job, 'finalizing');
      fs.renameSync(staging, path.join(root, job.id));
      fsyncDirSync(root);
      this.deps.jobs.transition(
        this.ref(job.id),
        {
          from: 'creating',
          to: 'complete',
          event: 'snapshot.complete',
          context: { sha256: meta.sha256, size: meta.size },
        },
        this.completed(gw.id, job.id, job.progress, meta),
      );
      this.deps.logs.info(
        gw.id,
        'snapshot',
        `Snapshot ${job.id} "${input.name}" complete: ${meta.version}, ${formatBytes(totalBytes)}, sha256:${sha256}`,
      );
      this.prune(gw.id);
    } catch (err) {
      if (this.stopping && signal.aborted) {
        // Left as a crash would leave it; the next start's recovery removes the partial copy.
        this.deps.jobs.update(this.ref(job.id), { progress: job.progress });
        return;
      }
      fs.rmSync(staging, { recursive: true, force: true });
      const code: ErrorCode =
        (err as NodeJS.ErrnoException).code === 'ENOSPC'
          ? 'OTA_INSUFFICIENT_SPACE'
          : (findGantryError(err)?.gantryCode ?? 'INTERNAL_ERROR');
      const message = job.abortReason ?? `Snapshot failed: ${(err as Error).message}`;
      this.deps.jobs.transition(
        this.ref(job.id),
        {
          from: 'creating',
          to: 'error',
          event: 'snapshot.failed',
          context: { bytesDone: job.progress.bytesDone },
        },
        { progress: job.progress, errorCode: code, errorMessage: message },
      );
      this.deps.logs.error(gw.id, 'snapshot', `Snapshot ${job.id} failed: ${code}: ${message}`);
    } finally {
      this.running.delete(job.id);
      release();
      if (!this.stopping) this.publish(gw, job.id);
    }
  }

  private async captureConfig(gw: GatewayRuntime): Promise<SnapshotConfig> {
    const [slots, booted, bootEnv, system] = await Promise.all([
      gw.device.slots(),
      gw.device.bootedSlot(),
      gw.device.readBootEnv(),
      gw.device.systemInfo(),
    ]);
    const row = gw.row();
    return {
      format: 1,
      gateway_id: gw.id,
      captured_at: isoSeconds(this.deps.clock()),
      gateway: { model: row.model, timezone: row.timezone },
      settings: this.deps.settings.get(gw.id),
      booted_slot: booted,
      slots,
      boot_env: bootEnv,
      system,
    };
  }

  /** What a complete snapshot job's row holds: every byte copied, and where the snapshot is. */
  private completed(gatewayId: string, id: string, progress: SnapshotProgress | null, meta: SnapshotMeta) {
    return {
      progress: progress ? { ...progress, bytesDone: progress.totalBytes } : null,
      artifact: { ...meta, path: path.join(this.snapshotsDir(gatewayId), id) },
    };
  }

  /** Keeps the newest `retention` snapshots of the gateway. */
  private prune(gatewayId: string): void {
    for (const old of this.list(gatewayId).slice(this.deps.retention)) {
      try {
        removeTreeSync(path.dirname(old.imagePath));
        this.deps.logs.info(
          gatewayId,
          'snapshot',
          `Snapshot ${old.id} "${old.name}" (${old.version}) deleted: only the newest ${this.deps.retention} are kept`,
        );
      } catch (err) {
        this.deps.logs.warn(
          gatewayId,
          'snapshot',
          `Deleting snapshot ${old.id} failed: ${(err as Error).message}`,
        );
      }
    }
  }

  // ---- progress -----------------------------------------------------------------------

  private advance(gw: GatewayRuntime, job: RunningSnapshot, bytes: number): void {
    const now = this.deps.clock();
    const p = job.progress;
    const elapsed = Math.max(1, now - p.startedAt);
    job.progress = {
      ...p,
      bytesDone: p.bytesDone + bytes,
      speedBps: ((p.bytesDone + bytes) / elapsed) * 1000,
    };
    if (now - job.lastPersistAt >= PROGRESS_PERSIST_MS) {
      job.lastPersistAt = now;
      this.deps.jobs.update(this.ref(job.id), { progress: job.progress });
    }
    if (now - job.lastPublishAt >= PROGRESS_PUBLISH_MS) this.publish(gw, job.id);
  }

  private setPhase(gw: GatewayRuntime, job: RunningSnapshot, phase: SnapshotProgress['phase']): void {
    job.progress = { ...job.progress, phase };
    job.lastPersistAt = this.deps.clock();
    this.deps.jobs.update(this.ref(job.id), { progress: job.progress });
    this.publish(gw, job.id);
  }

  private publish(gw: GatewayRuntime, id: string): void {
    const row = this.deps.jobs.get(id);
    if (!row) return;
    const view = this.progress(gw, row);
    const job = this.running.get(id);
    if (job) job.lastPublishAt = this.deps.clock();
    gw.updateOperation(id, {
      currentOperation: view.currentOperation,
      progress: view.percentage,
    });
    this.deps.bus.publish(gw.id, {
      type: 'update_progress',
      jobId: id,
      status: view.status,
      progress: view.percentage,
      currentOperation: view.currentOperation,
      bytesPerSecond: view.speedBps,
      etaSeconds: view.etaSeconds,
      at: this.deps.clock(),
    });
  }

  private operationName(p: SnapshotProgress): string {
    if (p.phase === 'configuration') return 'saving_configuration';
    if (p.phase === 'finalizing') return 'finalizing';
    return `copying_partition_${p.sourceSlot.toLowerCase()}`;
  }

  private percentage(p: SnapshotProgress, state: string): number {
    if (state === 'complete') return 100;
    const fraction = p.totalBytes > 0 ? p.bytesDone / p.totalBytes : 0;
    // Whole bytes copied is not a whole snapshot yet: configuration and the rename are still to come.
    return Math.min(99.9, round1(fraction * 100));
  }

  /** GET /progress?snapshot_id=…, registered with the update service for jobs of kind `snapshot`. */
  progress(gw: GatewayRuntime, row: StoredJob): JobProgress {
    const running = this.running.get(row.id);
    const p = running?.progress ?? (row.kind === SNAPSHOT_JOB_KIND ? row.progress : null);
    const state = row.state === 'complete' || row.state === 'error' ? row.state : 'creating';
    const now = this.deps.clock();
    const error = row.errorCode ? { code: row.errorCode, message: row.errorMessage ?? '' } : null;
    if (!p) {
      return {
        status: state,
        jobId: row.id,
        percentage: state === 'complete' ? 100 : 0,
        currentOperation: state === 'creating' ? 'queued' : state,
        speedBps: 0,
        bytesDone: 0,
        totalBytes: 0,
        etaSeconds: 0,
        update: { id: null, version: 'unknown' },
        elapsedMs: (row.finishedAt ?? now) - row.createdAt,
        targetSlot: 'A',
        error,
        blockedBy: [],
      };
    }
    const creating = state === 'creating';
    const eta = creating && p.speedBps > 0 ? (p.totalBytes - p.bytesDone) / p.speedBps : 0;
    return {
      status: state,
      jobId: row.id,
      percentage: this.percentage(p, state),
      currentOperation: creating ? this.operationName(p) : state,
      speedBps: creating ? p.speedBps : 0,
      bytesDone: p.bytesDone,
      totalBytes: p.totalBytes,
      etaSeconds: eta,
      update: { id: null, version: p.version },
      elapsedMs: (row.finishedAt ?? now) - p.startedAt,
      // The slot the image is copied from: the only partition a snapshot involves.
      targetSlot: p.sourceSlot,
      error,
      blockedBy: [],
    };
  }

  // ---- what recovery uses -------------------------------------------------------------

  private readMeta(gatewayId: string, id: string): SnapshotMeta | null {
    const dir = path.join(this.snapshotsDir(gatewayId), id);
    try {
      const parsed = snapshotMetaSchema.safeParse(
        JSON.parse(fs.readFileSync(path.join(dir, META_FILE), 'utf8')),
      );
      if (!parsed.success || parsed.data.id !== id) return null;
      const image = fs.statSync(path.join(dir, IMAGE_FILE));
      return image.size === parsed.data.size ? parsed.data : null;
    } catch {
      return null;
    }
  }

  /** The gateway's complete snapshots, newest first. */
  list(gatewayId: string): SnapshotEntry[] {
    const root = this.snapshotsDir(gatewayId);
    if (!fs.existsSync(root)) return [];
    const entries: SnapshotEntry[] = [];
    for (const name of fs.readdirSync(root)) {
      if (!SNAPSHOT_ID.test(name)) continue;
      const meta = this.readMeta(gatewayId, name);
      if (!meta) continue;
      const dir = path.join(root, name);
      entries.push({
        id: meta.id,
        name: meta.name,
        description: meta.description,
        version: meta.version,
        kernel: meta.kernel,
        sourceSlot: meta.source_partition,
        size: meta.size,
        sha256: meta.sha256,
        createdAt: meta.created_at_ms,
        imagePath: path.join(dir, IMAGE_FILE),
        configPath: path.join(dir, CONFIG_FILE),
      });
    }
    return entries.sort((a, b) => b.createdAt - a.createdAt || seqOf(b.id) - seqOf(a.id));
  }

  get(gatewayId: string, id: string): SnapshotEntry | undefined {
    return this.list(gatewayId).find((s) => s.id === id);
  }

  /** The newest snapshot of that OS version ("v5.0.3" and "5.0.3" are the same version). */
  findByVersion(gatewayId: string, version: string): SnapshotEntry | undefined {
    return this.list(gatewayId).find((s) => sameVersion(s.version, version));
  }

  /** Reads a snapshot's config.json (settings, slot records, boot environment at the time). */
  readConfig(entry: SnapshotEntry): SnapshotConfig {
    return JSON.parse(fs.readFileSync(entry.configPath, 'utf8')) as SnapshotConfig;
  }

  /**
   * Factory reset: every snapshot of the gateway is deleted. A copy in progress is stopped first
   * (it fails with that reason) so nothing writes into the directory after it is gone.
   */
  async reset(gatewayId: string): Promise<void> {
    const stopping = [...this.running.values()].filter((job) => job.gatewayId === gatewayId);
    for (const job of stopping) {
      job.abortReason = 'Snapshot cancelled: a factory reset removed all snapshots';
      job.abort.abort(new Error(job.abortReason));
    }
    await Promise.allSettled(stopping.map((job) => job.done));
    const removed = this.list(gatewayId).length;
    removeTreeSync(this.snapshotsDir(gatewayId));
    this.deps.logs.warn(gatewayId, 'snapshot', `Factory reset: ${removed} snapshot(s) deleted`);
  }
}
