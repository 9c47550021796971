import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { and, desc, eq } from 'drizzle-orm';
import {
  createActor,
  fromCallback,
  fromPromise,
  type Actor,
  type InspectionEvent,
  type SnapshotFrom,
} from 'xstate';
import type { z } from 'zod';
import type {
  cancelInputSchema,
  checkUpdatesInputSchema,
  deployInputSchema,
  downloadInputSchema,
  installInputSchema,
  progressOutputSchema,
  uploadVerifyInputSchema,
} from '../../api/schemas/updates.js';
import type { UpdateStrategy } from '../../api/schemas/settings.js';
import type { Manifest } from '../../bundle/manifest.js';
import { checkInstallable, verifyBundle } from '../../bundle/stream.js';
import type { EventBus } from '../../core/bus.js';
import { findGantryError, GantryError, type ErrorCode } from '../../core/errors.js';
import { formatBytes, formatEta, formatHms, formatSpeed, isoSeconds } from '../../core/format.js';
import { otherSlot, type SlotId } from '../../device/types.js';
import type { GantryDb } from '../../drizzle/db.js';
import { jobs as jobsTable, type JobRow } from '../../drizzle/schema.js';
import { prepareForRestore } from '../../machines/persist.js';
import {
  jobPercentage,
  jobStateName,
  updateJobMachine,
  type UpdateJobInput,
} from '../../machines/update-job.js';
import type { GatewayRegistry, GatewayRuntime } from '../gateways.js';
import type { JobStore } from '../jobs.js';
import type { LogService } from '../logs.js';
import type { BundleSource, ResumePoint } from '../pipeline/stream-to-slot.js';
import type { SettingsService } from '../settings.js';
import { imageBytes, publicUpdateId, type FeedPort, type FeedTarget, type UpdateCatalog } from './catalog.js';
import type { PartitionManager } from './partitions.js';
import { fileBundleSource, transferBundle, type TransferPolicy } from './transfer.js';

type JobActor = Actor<typeof updateJobMachine>;
type JobSnapshot = SnapshotFrom<typeof updateJobMachine>;
type JobKind = 'download' | 'deploy' | 'restore' | 'factory';
const PIPELINE_KINDS: readonly string[] = ['download', 'deploy', 'restore', 'factory'];
export type ProgressView = z.output<typeof progressOutputSchema>;

/** What a job knows beyond its statechart: where its bytes come from and what they proved to be. */
export interface JobArtifact {
  source:
    | { kind: 'feed'; target: FeedTarget }
    | { kind: 'file'; path: string; name: string; sha256: string }
    /** A raw image (a snapshot), not a bundle: its hash was taken when it was made. */
    | { kind: 'image'; path: string; sha256: string; bytes: number; version: string; kernel: string | null };
  update: { id: string | null; version: string };
  /** Display label (a manual upload's custom version); the signed manifest version still rules. */
  label: string | null;
  allowDowngrade: boolean;
  resume: ResumePoint | null;
  manifest: Manifest | null;
  sha256: string | null;
  bytes: number | null;
  /** The target slot was (possibly partly) written: on failure or cancel it must be invalidated. */
  slotTouched?: boolean;
  /** Restore and factory jobs install by themselves once the image is verified. */
  autoInstall?: { rebootAfter: boolean; wipeData: boolean } | null;
}

/** Who answers the questions the pipeline asks of the rest of Gantry (keys, safety, hooks). */
export interface UpdatePorts {
  feed: FeedPort;
  trustedKeys(gatewayId: string): import('node:crypto').KeyObject[];
  /** Throws OTA_UPDATE_BLOCKED naming the blocking constraints. */
  assertSafe(gatewayId: string, action: string): void;
  blocking(gatewayId: string): string[];
  onSafetyChange(gatewayId: string, listener: (blocking: string[]) => void): () => void;
  operationCompleted(gatewayId: string, operationId: string): void;
  runPostInstallHooks(
    gateway: GatewayRuntime,
    env: Record<string, string>,
  ): Promise<{ ok: boolean; reason: string | null }>;
  /** Factory reset with wipe_data: settings, snapshots, uploads and provisioning back to factory state. */
  factoryWipe(gateway: GatewayRuntime): Promise<void>;
  /** `create_snapshot: true`: copies the running slot under the install's lock; the snapshot id. */
  snapshotBeforeInstall(gateway: GatewayRuntime, jobId: string): Promise<string>;
}

export interface UpdateServiceDeps {
  db: GantryDb;
  bus: EventBus;
  clock: () => number;
  gateways: GatewayRegistry;
  settings: SettingsService;
  logs: LogService;
  jobs: JobStore;
  catalog: UpdateCatalog;
  partitions: PartitionManager;
  ports: UpdatePorts;
  policy: TransferPolicy;
}

interface RunningJob {
  id: string;
  gatewayId: string;
  kind: JobKind;
  actor: JobActor;
  artifact: JobArtifact;
  lastState: string;
  lastPersistAt: number;
  lastPublishAt: number;
  /** Hashes computed while streaming in this process; after a restart the slot is hashed again. */
  hashedHere: boolean;
  release: (() => void) | null;
  stopSafety: (() => void) | null;
}

const PROGRESS_PUBLISH_MS = 250;
const PROGRESS_PERSIST_MS = 500;

function jobIdFor(kind: JobKind): string {
  const suffix = randomBytes(4).toString('hex').toUpperCase().slice(0, 5);
  const prefix = { download: 'OTA-JOB', deploy: 'MANUAL-DEPLOY', restore: 'RESTORE', factory: 'FACTORY' }[
    kind
  ];
  return `${prefix}-${suffix}`;
}

function normalizeChecksum(value: string): string {
  return value.toLowerCase().replace(/^sha256:/, '');
}

/**
 * The update pipeline: feed checks, downloads and manual deployments as persisted job statecharts,
 * installation through the partition statechart, one mutating operation per gateway.
 */
export class UpdateService {
  private readonly running = new Map<string, RunningJob>();
  /** Progress of jobs other services own (snapshots, …), answered by the same /progress route. */
  private readonly progressProviders = new Map<string, (gw: GatewayRuntime, row: JobRow) => ProgressView>();
  private readonly background = new Set<Promise<unknown>>();

  constructor(private readonly deps: UpdateServiceDeps) {}

  // ---- lifecycle ----------------------------------------------------------------------

  /** Restores unfinished jobs after a restart (or a kill -9): each resumes where it was durable. */
  async start(): Promise<void> {
    for (const gw of this.deps.gateways.all()) {
      for (const row of this.deps.jobs.unfinished(gw.id, [...PIPELINE_KINDS])) {
        try {
          this.restore(gw, row);
        } catch (err) {
          this.deps.jobs.save(
            row.id,
            {
              state: 'error',
              snapshot: row.snapshot,
              errorCode: 'OTA_INSTALL_FAILED',
              errorMessage: `Could not resume after restart: ${(err as Error).message}`,
            },
            { from: row.state, to: 'error', event: 'restore.failed' },
          );
        }
      }
    }
  }

  async stop(): Promise<void> {
    for (const job of this.running.values()) {
      job.stopSafety?.();
      job.actor.stop();
    }
    this.running.clear();
    await Promise.allSettled([...this.background]);
  }

  // ---- feed ---------------------------------------------------------------------------

  private viewContext(gw: GatewayRuntime) {
    return {
      model: gw.row().model,
      versionFloor: this.deps.partitions.versionFloor(gw.id),
      trustedKeys: this.deps.ports.trustedKeys(gw.id),
    };
  }

  listUpdates(gw: GatewayRuntime) {
    const ctx = this.viewContext(gw);
    const updates = this.deps.catalog.listed(gw.id).map((row) => this.deps.catalog.view(row, ctx));
    return { updates, total_available: updates.length };
  }

  async checkForUpdates(gw: GatewayRuntime, input: z.output<typeof checkUpdatesInputSchema>) {
    const server = this.deps.ports.feed.server(gw.id);
    if (!server)
      throw new GantryError('OTA_DOWNLOAD_FAILED', 'No update feed is configured for this gateway');
    const now = this.deps.clock();
    const checkId = `check-${isoSeconds(now).slice(0, 10).replace(/-/g, '')}-${randomBytes(2).toString('hex')}`;
    const run = async () => {
      try {
        const targets = await this.deps.ports.feed.refresh(gw.id);
        this.deps.catalog.record(gw.id, targets);
        this.deps.logs.info(
          gw.id,
          'ota',
          `Update check ${checkId}: ${targets.length} update(s) offered by ${server}`,
        );
        return targets.length;
      } catch (err) {
        this.deps.logs.error(gw.id, 'ota', `Update check ${checkId} failed: ${(err as Error).message}`);
        throw err;
      }
    };
    if (input.background) {
      this.track(run().catch(() => undefined));
      return { check_id: checkId, status: 'checking' as const, server, estimated_duration: '00:00:30' };
    }
    await run();
    return {
      check_id: checkId,
      status: 'completed' as const,
      server,
      estimated_duration: formatHms((this.deps.clock() - now) / 1000),
      total_available: this.deps.catalog.listed(gw.id).length,
    };
  }

  private track(p: Promise<unknown>): void {
    this.background.add(p);
    void p.finally(() => this.background.delete(p));
  }

  // ---- starting jobs ------------------------------------------------------------------

  private async chooseTarget(gw: GatewayRuntime, requested: SlotId | undefined): Promise<SlotId> {
    const booted = await gw.device.bootedSlot();
    const target = requested ?? otherSlot(booted);
    if (target === booted) {
      throw new GantryError(
        'VALIDATION_ERROR',
        `Invalid request: target_partition: slot ${target} is the booted slot; updates are written to the inactive slot ${otherSlot(booted)}`,
        { booted_partition: booted },
      );
    }
    return target;
  }

  /** A newer job on a slot makes an older, not yet installed image there meaningless. */
  private supersede(gw: GatewayRuntime, slot: SlotId, by: string): void {
    for (const job of this.running.values()) {
      if (job.gatewayId !== gw.id || job.id === by) continue;
      const snap = job.actor.getSnapshot();
      if (snap.context.targetSlot === slot && jobStateName(snap) === 'downloaded') {
        job.actor.send({
          type: 'FAIL',
          code: 'OTA_INSTALL_FAILED',
          message: `superseded by ${by}`,
          at: this.deps.clock(),
        });
      }
    }
  }

  async startDownload(gw: GatewayRuntime, input: z.output<typeof downloadInputSchema>, username: string) {
    const row = this.deps.catalog.get(gw.id, input.update_id);
    if (input.version && input.version !== row.version) {
      throw new GantryError(
        'VALIDATION_ERROR',
        `Invalid request: version: update ${input.update_id} is ${row.version}, not ${input.version}`,
      );
    }
    const target = await this.chooseTarget(gw, input.target_partition);
    const size = imageBytes(row);
    const slots = await gw.device.slots();
    if (size > slots[target].capacityBytes) {
      throw new GantryError(
        'OTA_INSUFFICIENT_SPACE',
        `Update of ${formatBytes(size)} does not fit slot ${target} (${formatBytes(slots[target].capacityBytes)})`,
      );
    }
    const updateId = publicUpdateId(row.seq);
    const job = this.createJob(
      gw,
      'download',
      target,
      size,
      {
        source: {
          kind: 'feed',
          target: {
            path: row.target,
            length: row.length,
            sha256: row.sha256,
            custom: row.custom as Record<string, unknown>,
          },
        },
        update: { id: updateId, version: row.version },
        label: null,
        allowDowngrade: false,
        resume: null,
        manifest: null,
        sha256: null,
        bytes: null,
      },
      { ...input, requested_by: username },
    );
    return {
      job_id: job.id,
      status: 'downloading' as const,
      update: { id: updateId, version: row.version, size: formatBytes(size) },
      target_partition: target,
      progress_url: `/api/v1/ota/progress?job_id=${job.id}`,
    };
  }

  private uploadsDir(gw: GatewayRuntime): string {
    return path.join(this.deps.gateways.gatewayDir(gw.id), 'uploads');
  }

  async verifyUpload(gw: GatewayRuntime, input: z.output<typeof uploadVerifyInputSchema>) {
    const incoming = path.join(this.uploadsDir(gw), 'incoming');
    const file = path.resolve(input.path);
    // The path comes from our own upload handler; refuse anything else (a client may call tRPC directly).
    if (path.dirname(file) !== incoming || !file.endsWith('.part') || !fs.existsSync(file)) {
      throw new GantryError('VALIDATION_ERROR', 'Invalid request: path: not an upload of this gateway');
    }
    try {
      const result = await verifyBundle(fs.createReadStream(file, { highWaterMark: 1024 * 1024 }), {
        trustedKeys: this.deps.ports.trustedKeys(gw.id),
      });
      const manifest = result.manifest;
      let hardware: 'compatible' | 'incompatible' = 'compatible';
      try {
        checkInstallable(manifest, { hardwareModel: gw.row().model, currentVersion: null });
      } catch {
        hardware = 'incompatible';
      }
      const stored = path.join(this.uploadsDir(gw), `${input.sha256}.bundle`);
      fs.renameSync(file, stored);
      const label = input.version ?? manifest.version;
      const now = this.deps.clock();
      this.deps.jobs.create({
        id: `UPLOAD-${input.sha256.slice(0, 12)}-${now}`,
        gatewayId: gw.id,
        kind: 'upload',
        state: 'complete',
        request: { name: input.originalName, version: input.version ?? null },
        snapshot: null,
      });
      this.deps.db
        .update(jobsTable)
        .set({
          artifact: {
            path: stored,
            name: input.originalName,
            size: input.size,
            sha256: input.sha256,
            manifest,
            label,
          },
          finishedAt: now,
        })
        .where(eq(jobsTable.id, `UPLOAD-${input.sha256.slice(0, 12)}-${now}`))
        .run();
      this.deps.logs.info(
        gw.id,
        'ota',
        `Uploaded image ${input.originalName} (${manifest.version}) verified`,
      );
      return {
        verified: true as const,
        file: {
          name: input.originalName,
          size: formatBytes(input.size),
          checksum: `sha256:${input.sha256}`,
          version: label,
        },
        metadata: { kernel: manifest.kernel, signature: 'verified' as const },
        compatibility: { hardware },
      };
    } catch (err) {
      fs.rmSync(file, { force: true });
      this.deps.logs.warn(
        gw.id,
        'ota',
        `Uploaded image ${input.originalName} refused: ${(err as Error).message}`,
      );
      throw err;
    }
  }

  async deploy(gw: GatewayRuntime, input: z.output<typeof deployInputSchema>, username: string) {
    const checksum = normalizeChecksum(input.checksum);
    const upload = this.deps.db
      .select()
      .from(jobsTable)
      .where(and(eq(jobsTable.gatewayId, gw.id), eq(jobsTable.kind, 'upload')))
      .orderBy(desc(jobsTable.createdAt))
      .all()
      .find((r) => {
        const a = r.artifact as { name?: string; sha256?: string } | null;
        return a?.name === input.filename && a.sha256 === checksum;
      });
    const artifact = upload?.artifact as
      | { path: string; name: string; sha256: string; size: number; manifest: Manifest; label: string }
      | undefined;
    if (!artifact || !fs.existsSync(artifact.path)) {
      throw new GantryError(
        'NOT_FOUND',
        `No verified upload ${input.filename} with checksum sha256:${checksum}; verify it first`,
      );
    }
    const target = await this.chooseTarget(gw, input.target_partition);
    const label = input.version ?? artifact.label;
    const payloadSize = artifact.manifest.payloads.find((p) => p.kind === 'rootfs')?.size ?? artifact.size;
    const job = this.createJob(
      gw,
      'deploy',
      target,
      payloadSize,
      {
        source: { kind: 'file', path: artifact.path, name: artifact.name, sha256: artifact.sha256 },
        update: { id: null, version: artifact.manifest.version },
        label,
        allowDowngrade: false,
        resume: null,
        manifest: null,
        sha256: null,
        bytes: null,
      },
      { ...input, requested_by: username },
    );
    return {
      job_id: job.id,
      status: 'deploying' as const,
      image: { name: artifact.name, version: label },
      target_partition: target,
    };
  }

  /**
   * Restore (a snapshot's raw image) and factory reset (the recovery bundle, downgrade allowed):
   * jobs like any other, that install by themselves once the image is verified on the slot.
   */
  startRecoveryJob(
    gw: GatewayRuntime,
    kind: 'restore' | 'factory',
    target: SlotId,
    source: JobArtifact['source'],
    version: string,
    totalBytes: number,
    autoInstall: { rebootAfter: boolean; wipeData: boolean },
    request: unknown,
  ): string {
    const job = this.createJob(
      gw,
      kind,
      target,
      totalBytes,
      {
        source,
        update: { id: null, version },
        label: null,
        allowDowngrade: true,
        resume: null,
        manifest: null,
        sha256: null,
        bytes: null,
        autoInstall,
      },
      request,
    );
    return job.id;
  }

  /** Creates, persists and starts a job; holds the gateway's operation lock until it needs input. */
  private createJob(
    gw: GatewayRuntime,
    kind: JobKind,
    target: SlotId,
    totalBytes: number,
    artifact: JobArtifact,
    request: unknown,
  ): RunningJob {
    const id = jobIdFor(kind);
    const release = gw.beginOperation({ kind, id }, this.deps.clock());
    try {
      this.supersede(gw, target, id);
      const input = {
        jobId: id,
        // The statechart knows three kinds; a factory reset is a restore from the recovery image.
        kind: kind === 'factory' ? ('restore' as const) : kind,
        targetSlot: target,
        updateId: artifact.update.id,
        version: artifact.update.version,
        totalBytes,
        createdAt: this.deps.clock(),
      };
      const job = this.spawn(gw, kind, artifact, { input }, release);
      this.deps.jobs.create({
        id,
        gatewayId: gw.id,
        kind,
        state: 'pending',
        request,
        snapshot: job.actor.getPersistedSnapshot(),
      });
      this.saveArtifact(job);
      this.deps.logs.info(
        gw.id,
        'ota',
        `Job ${id}: ${kind} of ${artifact.update.version} to slot ${target} created`,
      );
      job.actor.send({ type: 'START', at: this.deps.clock() });
      return job;
    } catch (err) {
      release();
      throw err;
    }
  }

  private restore(gw: GatewayRuntime, row: JobRow): void {
    if (!row.snapshot || !row.artifact) throw new Error('no snapshot to resume from');
    const artifact = row.artifact as JobArtifact;
    const state = row.state;
    const holdsLock = state !== 'downloaded';
    const release = holdsLock ? gw.beginOperation({ kind: row.kind, id: row.id }, this.deps.clock()) : null;
    const job = this.spawn(
      gw,
      row.kind as JobKind,
      artifact,
      { snapshot: row.snapshot as JobSnapshot },
      release,
    );
    this.deps.logs.warn(gw.id, 'ota', `Job ${row.id} resumed after restart in state ${state}`);
    job.actor.send({ type: 'RESUME', at: this.deps.clock() });
  }

  private saveArtifact(job: RunningJob): void {
    this.deps.db.update(jobsTable).set({ artifact: job.artifact }).where(eq(jobsTable.id, job.id)).run();
  }

  // ---- the job actor ------------------------------------------------------------------

  private spawn(
    gw: GatewayRuntime,
    kind: JobKind,
    artifact: JobArtifact,
    from: { input: UpdateJobInput } | { snapshot: JobSnapshot },
    release: (() => void) | null,
  ): RunningJob {
    const now = this.deps.clock;
    const job: RunningJob = {
      id: 'input' in from ? from.input.jobId : from.snapshot.context.jobId,
      gatewayId: gw.id,
      kind,
      actor: undefined as unknown as JobActor,
      artifact,
      lastState: 'input' in from ? 'pending' : jobStateName(from.snapshot),
      lastPersistAt: 0,
      lastPublishAt: 0,
      hashedHere: false,
      release,
      stopSafety: null,
    };

    const machine = updateJobMachine.provide({
      actors: {
        transferImage: fromCallback(({ input, sendBack }) => {
          const abort = new AbortController();
          this.transfer(gw, job, input.targetSlot, abort.signal, sendBack).then(
            () => sendBack({ type: 'TRANSFER_DONE', at: now() }),
            (err: unknown) => {
              if (abort.signal.aborted) return;
              const g = findGantryError(err);
              sendBack({
                type: 'TRANSFER_FAILED',
                code: g?.gantryCode ?? 'OTA_DOWNLOAD_FAILED',
                message: (err as Error).message,
                at: now(),
              });
            },
          );
          return () => abort.abort(new Error('transfer stopped'));
        }),
        verifyImage: fromPromise(async ({ input }) => {
          await this.verifyOnSlot(gw, job, input.targetSlot);
          return { at: now() };
        }),
        installImage: fromPromise(async ({ input }) => {
          await this.installOnSlot(gw, job, input.targetSlot, input.install);
          return { at: now() };
        }),
        rebootGateway: fromPromise(async ({ input }) => {
          // Resumed after a restart: if the gateway already came up on the new slot, the reboot happened.
          const env = await gw.device.readBootEnv();
          if (input.resumed && (await gw.device.bootedSlot()) === env.bootSlot) return { at: now() };
          this.deps.ports.assertSafe(gw.id, 'reboot');
          this.deps.logs.info(gw.id, 'ota', `Job ${job.id}: rebooting into the new image`);
          await gw.device.reboot();
          return { at: now() };
        }),
      },
      actions: {
        // A partly written, failed or cancelled target must never look bootable.
        invalidateTarget: (_, params) => {
          if (job.artifact.slotTouched) this.track(this.invalidate(gw, params.targetSlot));
        },
      },
    });
    const inspect = (ev: InspectionEvent) => {
      if (ev.type === '@xstate.snapshot' && ev.actorRef === job.actor) {
        try {
          this.onSnapshot(gw, job, ev.snapshot as JobSnapshot, ev.event.type);
        } catch (err) {
          // Inspection errors would vanish inside XState; a failed persist must be loud.
          this.deps.logs.error(
            gw.id,
            'ota',
            `Job ${job.id}: recording a transition failed: ${(err as Error).message}`,
          );
          console.error('[gantry] job transition', err);
        }
      }
    };
    job.actor =
      'input' in from
        ? createActor(machine, { input: from.input, inspect })
        : createActor(machine, {
            snapshot: prepareForRestore(from.snapshot),
            input: from.snapshot.context,
            inspect,
          });
    // Keep blockedBy current so a job waiting to reboot continues by itself when safety clears.
    job.stopSafety = this.deps.ports.onSafetyChange(gw.id, (blocking) => {
      job.actor.send({ type: 'SAFETY_CHANGED', blocking, at: now() });
    });
    this.running.set(job.id, job);
    job.actor.start();
    return job;
  }

  private onSnapshot(gw: GatewayRuntime, job: RunningJob, snap: JobSnapshot, eventType: string): void {
    const state = jobStateName(snap);
    const at = this.deps.clock();
    const ctx = snap.context;
    if (state !== job.lastState) {
      const from = job.lastState;
      job.lastState = state;
      // Persist first, announce second: a client never sees a state the store does not have.
      this.deps.jobs.save(
        job.id,
        {
          state,
          snapshot: job.actor.getPersistedSnapshot(),
          errorCode: ctx.errorCode,
          errorMessage: ctx.errorMessage,
        },
        {
          from,
          to: state,
          event: eventType,
          context: { bytesDone: ctx.bytesDone, errorCode: ctx.errorCode },
        },
      );
      job.lastPersistAt = at;
      this.announce(gw, job, snap);
      this.onStateEntered(gw, job, state, from, ctx);
      return;
    }
    if (eventType === 'PROGRESS') {
      if (at - job.lastPersistAt >= PROGRESS_PERSIST_MS) {
        this.deps.jobs.save(job.id, { state, snapshot: job.actor.getPersistedSnapshot() });
        this.saveArtifact(job);
        job.lastPersistAt = at;
      }
      if (at - job.lastPublishAt >= PROGRESS_PUBLISH_MS) this.announce(gw, job, snap);
    }
  }

  private announce(gw: GatewayRuntime, job: RunningJob, snap: JobSnapshot): void {
    const view = this.progressView(job.kind, snap);
    job.lastPublishAt = this.deps.clock();
    gw.updateOperation(job.id, { currentOperation: view.current_operation, progress: view.percentage });
    this.deps.bus.publish(gw.id, {
      type: 'update_progress',
      job_id: job.id,
      status: view.status,
      progress: view.percentage,
      current_operation: view.current_operation,
      speed: view.speed,
      eta: view.eta,
      timestamp: isoSeconds(this.deps.clock()),
    });
  }

  private onStateEntered(
    gw: GatewayRuntime,
    job: RunningJob,
    state: string,
    from: string,
    ctx: JobSnapshot['context'],
  ): void {
    const { logs } = this.deps;
    if (state === 'error')
      logs.error(gw.id, 'ota', `Job ${job.id} failed: ${ctx.errorCode}: ${ctx.errorMessage}`);
    else logs.info(gw.id, 'ota', `Job ${job.id}: ${from} → ${state}`);
    if (state === 'downloaded' && job.artifact.autoInstall) {
      // Not from inside the inspection callback: the actor is still processing this event.
      setImmediate(() => this.autoInstall(gw, job));
      return;
    }
    if (state === 'downloaded' || state === 'complete' || state === 'error' || state === 'cancelled') {
      job.release?.();
      job.release = null;
    }
    if (state === 'complete' || state === 'error' || state === 'cancelled') {
      job.stopSafety?.();
      this.deps.ports.operationCompleted(gw.id, job.id);
      this.running.delete(job.id);
    }
  }

  private autoInstall(gw: GatewayRuntime, job: RunningJob): void {
    const auto = job.artifact.autoInstall!;
    const blocking = this.deps.ports.blocking(gw.id);
    job.actor.send({
      type: 'INSTALL',
      at: this.deps.clock(),
      strategy: 'seamless',
      rebootAfter: auto.rebootAfter,
      createSnapshot: false,
      blocking,
    });
    if (jobStateName(job.actor.getSnapshot()) === 'downloaded') {
      // Blocked by safety: the verified image waits; an operator installs it when it is safe.
      this.deps.logs.warn(
        gw.id,
        'recovery',
        `Job ${job.id}: image verified; activation blocked by ${blocking.join(', ')}. Install it with /install when clear`,
      );
      job.release?.();
      job.release = null;
    }
  }

  private async invalidate(gw: GatewayRuntime, slot: SlotId): Promise<void> {
    const booted = await gw.device.bootedSlot();
    if (slot === booted) return;
    const record = (await gw.device.slots())[slot];
    await gw.device.writeSlotRecord(slot, { ...record, state: 'invalid', version: null, sha256: null });
    await this.deps.partitions.dispatch(gw, { type: 'INVALIDATE', slot });
  }

  private source(gw: GatewayRuntime, artifact: JobArtifact): BundleSource {
    const src = artifact.source;
    if (src.kind === 'file') return fileBundleSource(src.path, src.sha256);
    if (src.kind === 'image') throw new Error('a raw image is copied, not parsed as a bundle');
    return {
      description: src.target.path,
      sha256: src.target.sha256,
      open: (offset, signal) => this.deps.ports.feed.open(gw.id, src.target, offset, signal),
    };
  }

  private async transfer(
    gw: GatewayRuntime,
    job: RunningJob,
    slot: SlotId,
    signal: AbortSignal,
    sendBack: (event: { type: 'PROGRESS'; bytesDone: number; speedBps: number; at: number }) => void,
  ): Promise<void> {
    if (job.artifact.source.kind === 'image') {
      await this.copyImage(gw, job, slot, job.artifact.source, signal, sendBack);
      return;
    }
    const booted = await gw.device.bootedSlot();
    const bootedVersion = (await gw.device.slots())[booted].version;
    const result = await transferBundle({
      device: gw.device,
      slot,
      source: this.source(gw, job.artifact),
      trustedKeys: this.deps.ports.trustedKeys(gw.id),
      hardwareModel: gw.row().model,
      currentVersion: this.deps.partitions.versionFloor(gw.id) ?? bootedVersion,
      allowDowngrade: job.artifact.allowDowngrade,
      resume: job.artifact.resume,
      signal,
      policy: this.deps.policy,
      now: this.deps.clock,
      onManifest: async (manifest) => {
        // Signature, hardware and version are verified: only now may the slot be touched.
        await this.deps.partitions.startWrite(gw, slot, false);
        job.artifact = { ...job.artifact, manifest, slotTouched: true };
        this.saveArtifact(job);
      },
      onProgress: (point, speedBps) => {
        job.artifact = { ...job.artifact, resume: point };
        sendBack({ type: 'PROGRESS', bytesDone: point.slotBytes, speedBps, at: this.deps.clock() });
      },
      onRetry: (attempt, reason) => {
        this.deps.logs.warn(
          gw.id,
          'ota',
          `Job ${job.id}: transfer attempt ${attempt} failed (${reason}); resuming`,
        );
      },
    });
    job.hashedHere = true;
    job.artifact = { ...job.artifact, manifest: result.manifest, sha256: result.sha256, bytes: result.bytes };
    this.saveArtifact(job);
  }

  /** A raw image (snapshot) onto the slot, hashed on the way; a retry starts over (it is local). */
  private async copyImage(
    gw: GatewayRuntime,
    job: RunningJob,
    slot: SlotId,
    src: Extract<JobArtifact['source'], { kind: 'image' }>,
    signal: AbortSignal,
    sendBack: (event: { type: 'PROGRESS'; bytesDone: number; speedBps: number; at: number }) => void,
  ): Promise<void> {
    await this.deps.partitions.startWrite(gw, slot, false);
    job.artifact = { ...job.artifact, slotTouched: true };
    this.saveArtifact(job);
    const record = {
      state: 'invalid' as const,
      version: null,
      kernel: null,
      sha256: null,
      imageBytes: 0,
      installedAt: null,
    };
    await gw.device.writeSlotRecord(slot, record);
    const hash = createHash('sha256');
    let bytes = 0;
    let lastAt = this.deps.clock();
    let lastBytes = 0;
    const counter = new Transform({
      transform: (chunk: Buffer, _enc, done) => {
        hash.update(chunk);
        bytes += chunk.length;
        const at = this.deps.clock();
        if (at - lastAt >= 250) {
          sendBack({
            type: 'PROGRESS',
            bytesDone: bytes,
            speedBps: ((bytes - lastBytes) * 1000) / (at - lastAt),
            at,
          });
          lastAt = at;
          lastBytes = bytes;
        }
        done(null, chunk);
      },
    });
    const writer = await gw.device.openSlotWriter(slot, { offset: 0 });
    await pipeline(fs.createReadStream(src.path, { highWaterMark: 1024 * 1024 }), counter, writer, {
      signal,
    });
    const digest = hash.digest('hex');
    if (digest !== src.sha256 || bytes !== src.bytes) {
      throw new GantryError(
        'OTA_RECOVERY_FAILED',
        `The stored image ${path.basename(src.path)} is corrupt (hash mismatch)`,
      );
    }
    sendBack({ type: 'PROGRESS', bytesDone: bytes, speedBps: 0, at: this.deps.clock() });
    job.hashedHere = true;
    job.artifact = { ...job.artifact, sha256: digest, bytes };
    this.saveArtifact(job);
  }

  /**
   * The image was hashed while it streamed; a job resumed after a restart hashes the slot again,
   * since nothing guarantees what happened to it while Gantry was down. Only then is the slot
   * marked bootable.
   */
  private async verifyOnSlot(gw: GatewayRuntime, job: RunningJob, slot: SlotId): Promise<void> {
    const { manifest, sha256, bytes, source } = job.artifact;
    const image =
      manifest ??
      (source.kind === 'image' ? { version: source.version, kernel: source.kernel ?? 'unknown' } : null);
    if (!image || !sha256 || bytes === null) {
      throw new GantryError(
        'OTA_INVALID_IMAGE',
        'Nothing verified to install: the transfer left no manifest',
      );
    }
    if (!job.hashedHere) {
      const hash = createHash('sha256');
      await pipeline(gw.device.openSlotReader(slot, { start: 0, end: bytes - 1 }), hash);
      if (hash.digest('hex') !== sha256) {
        throw new GantryError('OTA_INVALID_IMAGE', `Slot ${slot} does not hold the verified image any more`);
      }
    }
    await gw.device.writeSlotRecord(slot, {
      state: 'bootable',
      version: image.version,
      kernel: image.kernel,
      sha256,
      imageBytes: bytes,
      installedAt: this.deps.clock(),
    });
    await this.deps.partitions.dispatch(gw, { type: 'WRITE_VERIFIED', slot, version: image.version });
  }

  private async installOnSlot(
    gw: GatewayRuntime,
    job: RunningJob,
    slot: SlotId,
    install: { strategy: UpdateStrategy; rebootAfter: boolean; createSnapshot: boolean },
  ): Promise<void> {
    const { manifest: bundleManifest, source } = job.artifact;
    const manifest =
      bundleManifest ??
      (source.kind === 'image'
        ? { version: source.version, kernel: source.kernel, boot_test: undefined }
        : null);
    if (!manifest) throw new GantryError('OTA_INSTALL_FAILED', 'No verified image to install');
    if (install.createSnapshot) {
      // Best practice 1 of the spec: a way back before the gateway is touched.
      const snapshotId = await this.deps.ports.snapshotBeforeInstall(gw, job.id);
      this.deps.logs.info(gw.id, 'ota', `Job ${job.id}: snapshot ${snapshotId} taken before install`);
    }
    let target = slot;
    if (install.strategy === 'in-place') {
      // In-place: the verified image is copied over the running slot, which keeps booting.
      target = await gw.device.bootedSlot();
      await this.deps.partitions.startWrite(gw, target, true);
      const writer = await gw.device.openSlotWriter(target, { offset: 0, allowBooted: true });
      await pipeline(
        gw.device.openSlotReader(slot, { start: 0, end: (job.artifact.bytes ?? 1) - 1 }),
        writer,
      );
      await gw.device.writeSlotRecord(target, {
        ...(await gw.device.slots())[slot],
        installedAt: this.deps.clock(),
      });
      await this.deps.partitions.dispatch(gw, {
        type: 'WRITE_VERIFIED',
        slot: target,
        version: manifest.version,
      });
    }
    if (manifest.boot_test?.fail && 'setSelfTestFails' in gw.device) {
      // Test bundles built to fail their boot: the simulator's health check will fail on this slot.
      await (
        gw.device as unknown as { setSelfTestFails(s: SlotId, f: boolean): Promise<void> }
      ).setSelfTestFails(target, true);
    }
    const hooks = await this.deps.ports.runPostInstallHooks(gw, {
      GANTRY_JOB_ID: job.id,
      GANTRY_SLOT: target,
      GANTRY_VERSION: manifest.version,
    });
    if (!hooks.ok) throw new GantryError('OTA_INSTALL_FAILED', `Post-install hook failed: ${hooks.reason}`);
    if (install.strategy !== 'in-place') {
      await this.deps.partitions.dispatch(gw, { type: 'STAGE', slot: target, at: this.deps.clock() });
    }
    if (job.artifact.autoInstall?.wipeData) {
      // After the recovery image is staged, so a failed write never leaves a wiped, unbootable gateway.
      await this.deps.ports.factoryWipe(gw);
      this.deps.logs.warn(gw.id, 'recovery', `Job ${job.id}: data wiped to factory state`);
    }
    this.deps.logs.info(
      gw.id,
      'ota',
      `Job ${job.id}: ${manifest.version} installed on slot ${target} (${install.strategy})`,
    );
  }

  // ---- operator actions on jobs ------------------------------------------------------

  private job(gw: GatewayRuntime, jobId: string): { row: JobRow; running: RunningJob | undefined } {
    const row = this.deps.jobs.get(jobId);
    if (!row || row.gatewayId !== gw.id || !PIPELINE_KINDS.includes(row.kind)) {
      throw new GantryError('NOT_FOUND', `Job ${jobId} not found`);
    }
    return { row, running: this.running.get(jobId) };
  }

  async install(gw: GatewayRuntime, input: z.output<typeof installInputSchema>, username: string) {
    const { row, running } = this.job(gw, input.job_id);
    if (!running || jobStateName(running.actor.getSnapshot()) !== 'downloaded') {
      throw new GantryError(
        'OTA_INSTALL_FAILED',
        `Job ${input.job_id} is ${row.state}; only a downloaded update can be installed`,
        { state: row.state },
      );
    }
    this.deps.ports.assertSafe(gw.id, 'install');
    const strategy = input.strategy ?? this.deps.settings.get(gw.id).update_strategy;
    const release = gw.beginOperation({ kind: 'install', id: row.id }, this.deps.clock());
    const snap = running.actor.getSnapshot();
    const event = {
      type: 'INSTALL' as const,
      at: this.deps.clock(),
      strategy,
      rebootAfter: input.reboot_after,
      createSnapshot: input.create_snapshot,
      blocking: this.deps.ports.blocking(gw.id),
    };
    if (!snap.can(event)) {
      release();
      throw new GantryError('OTA_UPDATE_BLOCKED', `Install of ${row.id} refused now`, {
        blocking: event.blocking,
      });
    }
    running.release = release;
    running.actor.send(event);
    this.deps.logs.info(gw.id, 'ota', `Job ${row.id}: install (${strategy}) requested by ${username}`);
    const target = snap.context.targetSlot as SlotId;
    const booted = await gw.device.bootedSlot();
    const nextBoot = strategy === 'in-place' ? booted : target;
    return {
      job_id: row.id,
      status: 'installing' as const,
      strategy,
      target_partition: strategy === 'in-place' ? booted : target,
      reboot_after: input.reboot_after,
      next_boot_partition: nextBoot,
    };
  }

  cancel(gw: GatewayRuntime, input: z.output<typeof cancelInputSchema>, username: string) {
    const { row, running } = this.job(gw, input.job_id);
    if (!running) {
      throw new GantryError(
        'VALIDATION_ERROR',
        `Job ${row.id} has already ended (${row.state}); nothing to cancel`,
        { state: row.state },
      );
    }
    const event = { type: 'CANCEL' as const, reason: input.reason, at: this.deps.clock() };
    if (!running.actor.getSnapshot().can(event)) {
      throw new GantryError(
        'OTA_INSTALL_FAILED',
        `Job ${row.id} is installing: past the point of no return, it cannot be cancelled`,
        {
          state: jobStateName(running.actor.getSnapshot()),
        },
      );
    }
    running.actor.send(event);
    this.deps.logs.warn(gw.id, 'ota', `Job ${row.id} cancelled by ${username}: ${input.reason}`);
    const ctx = running.actor.getSnapshot().context;
    return { job_id: row.id, status: 'cancelled' as const, progress_at_cancel: ctx.progressAtCancel ?? 0 };
  }

  // ---- progress -------------------------------------------------------------------

  private progressView(kind: JobKind | string, snap: JobSnapshot) {
    const ctx = snap.context;
    const state = jobStateName(snap);
    const transferring = state === 'downloading' || state === 'pending';
    const status =
      kind === 'deploy' && transferring
        ? 'deploying'
        : (kind === 'restore' || kind === 'factory') && transferring
          ? 'restoring'
          : state;
    const slotName = `partition_${String(ctx.targetSlot).toLowerCase()}`;
    const op: Record<string, string> = {
      pending: 'queued',
      downloading: kind === 'download' ? 'downloading' : `writing_${slotName}`,
      verifying: 'verifying',
      downloaded: 'awaiting_install',
      installing: `flashing_${slotName}`,
      awaiting_reboot: ctx.blockedBy.length ? 'waiting_for_safety' : 'awaiting_reboot',
      rebooting: 'rebooting',
      complete: 'complete',
      error: 'error',
      cancelled: 'cancelled',
    };
    const percentage = jobPercentage(ctx);
    return {
      status,
      current_operation: op[state] ?? state,
      percentage,
      speed: transferring ? formatSpeed(ctx.speedBps) : formatSpeed(0),
      eta: transferring && ctx.etaSeconds !== null ? formatEta(ctx.etaSeconds) : formatEta(0),
    };
  }

  /** Lets another service answer GET /progress for its own job kind. */
  registerProgress(kind: string, provider: (gw: GatewayRuntime, row: JobRow) => ProgressView): void {
    this.progressProviders.set(kind, provider);
  }

  progress(gw: GatewayRuntime, jobId: string): ProgressView {
    const other = this.deps.jobs.get(jobId);
    const provider = other && other.gatewayId === gw.id ? this.progressProviders.get(other.kind) : undefined;
    if (other && provider) return provider(gw, other);
    const { row, running } = this.job(gw, jobId);
    const snap = running ? running.actor.getSnapshot() : (row.snapshot as JobSnapshot | null);
    if (!snap) throw new GantryError('NOT_FOUND', `Job ${jobId} has no state`);
    const ctx = snap.context;
    const view = this.progressView(row.kind, snap);
    const end = row.finishedAt ?? this.deps.clock();
    const started = ctx.startedAt ?? row.createdAt;
    return {
      status: view.status,
      job_id: row.id,
      progress: {
        percentage: view.percentage,
        current_operation: view.current_operation,
        speed: view.speed,
        downloaded: formatBytes(ctx.bytesDone),
        total: formatBytes(ctx.totalBytes),
        eta: view.eta,
      },
      update: { id: ctx.updateId, version: ctx.version },
      elapsed_time: formatHms((end - started) / 1000),
      target_partition: ctx.targetSlot,
      error: ctx.errorCode ? { code: ctx.errorCode as ErrorCode, message: ctx.errorMessage ?? '' } : null,
      blocked_by: ctx.blockedBy,
    };
  }
}
