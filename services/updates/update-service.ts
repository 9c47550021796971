import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { createActor, fromCallback, fromPromise } from 'xstate';
import type { EventBus } from '../../core/bus.js';
import type { MachineEventLog } from '../../core/machine-events.js';
import { findGantryError, GantryError, type ErrorCode } from '../../core/errors.js';
import { formatBytes, isoSeconds } from '../../core/format.js';
import { otherSlot, type SlotId } from '../../device/types.js';
import { UPDATE_JOB_KINDS, type UpdateJobKind } from '../../core/job-kinds.js';
import { restoreOptions } from '../../machines/persist.js';
import {
  activationSlot,
  jobPercentage,
  jobStateName,
  updateJobMachine,
  updateJobPersisted,
  type PersistedUpdateJob,
  type UpdateJobInput,
} from '../../machines/update-job.js';
import type { ActorSnapshotStore } from '../actor-snapshots.js';
import type { GatewayRegistry, GatewayRuntime } from '../gateways.js';
import { runJobActor } from '../job-runtime.js';
import type { JobRequest } from '../job-records.js';
import type { JobStore, StoredJob, StoredJobOf } from '../jobs.js';
import type { LogService } from '../logs.js';
import type { SettingsService } from '../settings.js';
import {
  imageBytes,
  publicUpdateId,
  type FeedServer,
  type UpdateCatalog,
  type UpdateListing,
} from './catalog.js';
import type { PartitionManager } from './partitions.js';
import type { ComponentService } from '../components/component-service.js';
import { JobEffects } from './job-effects.js';
import { Delivery } from './delivery.js';
import type { DynamicDeltaProvider } from '../../delta/path.js';
import { UploadStore, type ReceivedUpload, type UploadVerifyInput } from './uploads.js';
import type {
  CancelRequest,
  CheckRequest,
  DeployRequest,
  DownloadRequest,
  InstallRequest,
  JobActor,
  JobArtifact,
  JobKind,
  JobSnapshot,
  JobProgress,
  RunningJob,
  UpdatePorts,
} from './job-types.js';
import { activationOf } from './activation.js';
import { progressView } from './progress-view.js';
import type { TransferPolicy } from './transfer.js';

export interface UpdateServiceDeps {
  bus: EventBus;
  clock: () => number;
  gateways: GatewayRegistry;
  settings: SettingsService;
  logs: LogService;
  jobs: JobStore;
  /** Where the job statecharts' snapshots are kept. */
  actorSnapshots: ActorSnapshotStore;
  catalog: UpdateCatalog;
  partitions: PartitionManager;
  ports: UpdatePorts;
  policy: TransferPolicy;
  /** Events the job statecharts receive, for the development inspector. */
  machineEvents?: MachineEventLog;
  /** Multi-component bundles (issue 15). */
  components: ComponentService;
  /** The dynamic delta path (delta/dynamic), when wired in; without it, no dynamic deliveries. */
  dynamic?: DynamicDeltaProvider | null;
}

const PROGRESS_PUBLISH_MS = 250;
/**
 * A synchronous commit (synchronous=FULL) every few seconds: a resume re-hashes the slot anyway,
 * so persisting progress more often only stalls the event loop (measured: /progress p99).
 */
const PROGRESS_PERSIST_MS = 2000;

function isUpdateJob(job: StoredJob): job is StoredJobOf<UpdateJobKind> {
  return (UPDATE_JOB_KINDS as readonly string[]).includes(job.kind);
}

function jobIdFor(kind: JobKind): string {
  const suffix = randomBytes(4).toString('hex').toUpperCase().slice(0, 5);
  const prefix = { download: 'OTA-JOB', deploy: 'MANUAL-DEPLOY', restore: 'RESTORE', factory: 'FACTORY' }[
    kind
  ];
  return `${prefix}-${suffix}`;
}

/**
 * The update pipeline: feed checks, downloads and manual deployments as persisted job statecharts,
 * installation through the partition statechart, one mutating operation per gateway.
 */
export class UpdateService {
  private readonly running = new Map<string, RunningJob>();
  /** Progress of jobs other services own (snapshots, …), answered by the same /progress route. */
  private readonly progressProviders = new Map<string, (gw: GatewayRuntime, job: StoredJob) => JobProgress>();
  private readonly background = new Set<Promise<unknown>>();
  private stopWatchingPartitions: (() => void) | null = null;

  private readonly effects: JobEffects;
  private readonly delivery: Delivery;
  private readonly uploads: UploadStore;

  constructor(private readonly deps: UpdateServiceDeps) {
    this.delivery = new Delivery({
      ports: deps.ports,
      partitions: deps.partitions,
      logs: deps.logs,
      clock: deps.clock,
      dynamic: deps.dynamic ?? null,
      dynamicThreshold: () => deps.policy.dynamicThreshold,
      gatewayDir: (id) => deps.gateways.gatewayDir(id),
      retry: deps.policy,
    });
    this.effects = new JobEffects({ ...deps, delivery: this.delivery });
    this.uploads = new UploadStore(deps);
  }

  // ---- lifecycle ----------------------------------------------------------------------

  /** Follows the partition statecharts (started first), for jobs that wait on a boot. */
  start(): Promise<void> {
    this.stopWatchingPartitions = this.deps.partitions.onChange((gw) => this.settleActivations(gw));
    return Promise.resolve();
  }

  async stop(): Promise<void> {
    this.stopWatchingPartitions?.();
    this.stopWatchingPartitions = null;
    this.deps.components.stop();
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
      activeSha256: this.activeImages.get(gw.id) ?? null,
    };
  }

  /** The active slot's recorded image hash, as of the last check (what a hop delta must start from). */
  private readonly activeImages = new Map<string, string | null>();

  private async refreshActiveImage(gw: GatewayRuntime): Promise<void> {
    const booted = await gw.device.bootedSlot();
    const slot = (await gw.device.slots())[booted];
    this.activeImages.set(gw.id, slot.state === 'bootable' ? slot.sha256 : null);
  }

  listUpdates(gw: GatewayRuntime): { updates: UpdateListing[]; feed: FeedServer | null } {
    const ctx = this.viewContext(gw);
    const updates = this.deps.catalog.listed(gw.id).map((row) => this.deps.catalog.view(row, ctx));
    return { updates, feed: this.deps.ports.feed.server(gw.id) };
  }

  async checkForUpdates(gw: GatewayRuntime, input: CheckRequest) {
    const feed = this.deps.ports.feed.server(gw.id);
    if (!feed) {
      throw new GantryError(
        'OTA_FEED_NOT_CONFIGURED',
        `No update feed is configured for gateway ${gw.id}: set GANTRY_FEED_URL and GANTRY_FEED_ROOT ` +
          `and restart Gantry, or apply a configuration ZIP with a feed and its trusted_root (POST /ota-configure)`,
      );
    }
    const server = feed.label;
    const now = this.deps.clock();
    const checkId = `check-${isoSeconds(now).slice(0, 10).replace(/-/g, '')}-${randomBytes(2).toString('hex')}`;
    const run = async () => {
      try {
        const targets = await this.deps.ports.feed.refresh(gw.id);
        await this.refreshActiveImage(gw);
        this.deps.catalog.record(gw, targets);
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
      return { checkId, status: 'checking' as const, server, estimatedSeconds: 30, totalAvailable: null };
    }
    await run();
    return {
      checkId,
      status: 'completed' as const,
      server,
      estimatedSeconds: (this.deps.clock() - now) / 1000,
      totalAvailable: this.deps.catalog.listed(gw.id).length,
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

  async startDownload(gw: GatewayRuntime, input: DownloadRequest, username: string) {
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
      jobId: job.id,
      update: { id: updateId, version: row.version, sizeBytes: size },
      targetSlot: target,
    };
  }

  /** Streams a manual upload's body to the gateway's incoming area, verifying it on the way. */
  receiveUpload(gw: GatewayRuntime, source: Readable): Promise<ReceivedUpload> {
    return this.uploads.receive(gw, source, this.deps.ports.trustedKeys(gw.id));
  }

  /** Drops a received upload that will not be verified (the request failed after its body). */
  discardUpload(gw: GatewayRuntime, filePath: string): void {
    this.uploads.discard(gw, filePath);
  }

  verifyUpload(gw: GatewayRuntime, input: UploadVerifyInput) {
    return this.uploads.verify(gw, input, this.deps.ports.trustedKeys(gw.id));
  }

  async deploy(gw: GatewayRuntime, input: DeployRequest, username: string) {
    const artifact = this.uploads.find(gw, input.filename, input.checksum);
    const target = await this.chooseTarget(gw, input.target_partition);
    // A deployment is an operator pushing an image now (not a background download): gated.
    this.deps.ports.assertSafe(gw.id, 'deploy');
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
    request: JobRequest,
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
    request: JobRequest,
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
      const job = this.spawn(gw, kind, { ...artifact, targetSlot: target }, { input }, release);
      this.deps.jobs.transaction(() => {
        this.deps.jobs.create({
          id,
          gatewayId: gw.id,
          kind,
          state: 'pending',
          request,
          artifact: job.artifact,
        });
        this.deps.actorSnapshots.save(updateJobPersisted, id, gw.id, job.actor.getPersistedSnapshot());
      });
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

  /**
   * After a restart (or a kill -9), the `resume` restart policy of update jobs (services/job-restart.ts):
   * the job's statechart is restored from its stored snapshot and continues where it was durable. A
   * job that waited on a boot learns here what the gateway did while Gantry was down (the partition
   * manager, started first, has already handled that boot). Throws when there is nothing trustworthy
   * to resume from; the job is then reported failed.
   */
  resume(stored: StoredJobOf<UpdateJobKind>): void {
    const gw = this.deps.gateways.get(stored.gatewayId);
    if (!gw) throw new GantryError('GATEWAY_NOT_FOUND', `Gateway ${stored.gatewayId} is not configured`);
    if (!stored.artifact)
      throw new GantryError('OTA_INSTALL_FAILED', 'the job recorded nothing to resume from');
    const loaded = this.deps.actorSnapshots.load(updateJobPersisted, stored.id);
    if (loaded.status !== 'found') {
      throw new GantryError(
        'OTA_INSTALL_FAILED',
        loaded.status === 'missing'
          ? 'its statechart snapshot is missing'
          : `its statechart snapshot was refused: ${loaded.reason}`,
      );
    }
    const state = stored.state;
    const holdsLock = state !== 'downloaded';
    const release = holdsLock
      ? gw.beginOperation({ kind: stored.kind, id: stored.id }, this.deps.clock())
      : null;
    let job: RunningJob;
    try {
      job = this.spawn(gw, stored.kind, stored.artifact, { snapshot: loaded.snapshot, state }, release);
    } catch (err) {
      release?.();
      throw err;
    }
    this.deps.logs.warn(gw.id, 'ota', `Job ${stored.id} resumed after restart in state ${state}`);
    job.actor.send({ type: 'RESUME', at: this.deps.clock() });
    this.settleActivation(gw, job);
  }

  // ---- waiting on a boot ---------------------------------------------------------------

  private settleActivations(gw: GatewayRuntime): void {
    for (const job of [...this.running.values()]) if (job.gatewayId === gw.id) this.settleActivation(gw, job);
  }

  /**
   * Tells a job that waits on a boot (installed, blocked before its reboot, or activating) what the
   * A/B statechart says about its new slot. Level-triggered: asked again on every partition change,
   * on entering a waiting state and at start-up, so an outcome reached before the job started to
   * wait (or while Gantry was down) is never missed.
   */
  private settleActivation(gw: GatewayRuntime, job: RunningJob): void {
    if (this.running.get(job.id) !== job) return;
    const snap = job.actor.getSnapshot();
    const state = jobStateName(snap);
    if (state !== 'installed' && state !== 'awaiting_reboot' && state !== 'activating') return;
    const outcome = activationOf(this.deps.partitions.snapshot(gw.id), activationSlot(snap.context));
    const at = this.deps.clock();
    if (outcome.kind === 'trial') job.actor.send({ type: 'TRIAL_STARTED', at });
    else if (outcome.kind === 'committed') job.actor.send({ type: 'COMMITTED', at });
    else if (outcome.kind === 'failed') {
      job.actor.send({ type: 'ACTIVATION_FAILED', message: outcome.message, at });
    }
  }

  // ---- the job actor ------------------------------------------------------------------

  private spawn(
    gw: GatewayRuntime,
    kind: JobKind,
    artifact: JobArtifact,
    from: { input: UpdateJobInput } | { snapshot: PersistedUpdateJob; state: string },
    release: (() => void) | null,
  ): RunningJob {
    const now = this.deps.clock;
    const job: RunningJob = {
      id: 'input' in from ? from.input.jobId : from.snapshot.context.jobId,
      gatewayId: gw.id,
      kind,
      actor: undefined as unknown as JobActor,
      artifact,
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
          this.effects.transfer(gw, job, input.targetSlot, abort.signal, sendBack).then(
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
          await this.effects.verifyOnSlot(gw, job, input.targetSlot);
          return { at: now() };
        }),
        installImage: fromPromise(async ({ input }) => {
          const activated = await this.effects.install(
            gw,
            job,
            input.targetSlot,
            input.install,
            input.resumed,
            (operation) => {
              // Each step of a component sequence: /progress, update_progress and the log say it.
              this.deps.logs.info(gw.id, 'ota', `Job ${job.id}: ${operation}`);
              this.announce(gw, job, job.actor.getSnapshot());
            },
          );
          return { at: now(), activated };
        }),
        rebootGateway: fromPromise(async ({ input }) => {
          // Resumed after a restart: once the new slot is no longer merely staged, the reboot
          // happened (a real reboot ends this process); `activating` reads its outcome.
          const slot = activationSlot(job.actor.getSnapshot().context);
          if (input.resumed && activationOf(this.deps.partitions.snapshot(gw.id), slot).kind !== 'staged') {
            return { at: now() };
          }
          this.deps.ports.assertSafe(gw.id, 'reboot');
          this.deps.logs.info(gw.id, 'ota', `Job ${job.id}: rebooting into the new image`);
          await gw.device.reboot();
          return { at: now() };
        }),
      },
      actions: {
        // A partly written, failed or cancelled target must never look bootable.
        invalidateTarget: (_, params) => {
          if (job.artifact.slotTouched) this.track(this.effects.invalidate(gw, params.targetSlot));
        },
      },
    });
    job.actor = runJobActor(
      (inspect) =>
        'input' in from
          ? createActor(machine, { input: from.input, inspect })
          : createActor(machine, { ...restoreOptions(from.snapshot), inspect }),
      {
        jobs: this.deps.jobs,
        snapshots: this.deps.actorSnapshots,
        machine: updateJobPersisted,
        job: { id: job.id, kind, gatewayId: gw.id },
        state: 'input' in from ? 'pending' : from.state,
        stateOf: jobStateName,
        errorOf: ({ context }) =>
          context.errorCode ? { code: context.errorCode, message: context.errorMessage ?? '' } : null,
        transitionContext: ({ context }) => ({ bytesDone: context.bytesDone, errorCode: context.errorCode }),
        // The resume point goes with the snapshot it belongs to, never ahead of it.
        checkpoint: (_, event) => {
          const at = this.deps.clock();
          if (event.type !== 'PROGRESS' || at - job.lastPersistAt < PROGRESS_PERSIST_MS) return null;
          job.lastPersistAt = at;
          return { artifact: job.artifact };
        },
        announce: (snap, change, event) => {
          if (change) {
            job.lastPersistAt = this.deps.clock();
            this.announce(gw, job, snap);
            this.onStateEntered(gw, job, change.to, change.from, snap.context);
          } else if (
            event.type === 'PROGRESS' &&
            this.deps.clock() - job.lastPublishAt >= PROGRESS_PUBLISH_MS
          ) {
            this.announce(gw, job, snap);
          }
        },
        record: this.deps.machineEvents?.inspector(gw.id, 'updateJob', job.id, (ref) => ref === job.actor),
        onPersistFailed: (err) => {
          this.deps.logs.error(
            gw.id,
            'ota',
            `Job ${job.id}: recording a transition failed: ${(err as Error).message}`,
          );
          console.error('[gantry] job transition', err);
        },
      },
    );
    // Keep blockedBy current so a job waiting to reboot continues by itself when safety clears.
    job.stopSafety = this.deps.ports.onSafetyChange(gw.id, (blocking) => {
      job.actor.send({ type: 'SAFETY_CHANGED', blocking, at: now() });
    });
    this.running.set(job.id, job);
    job.actor.start();
    return job;
  }

  private announce(gw: GatewayRuntime, job: RunningJob, snap: JobSnapshot): void {
    const view = this.viewOf(job.id, job.kind, snap);
    job.lastPublishAt = this.deps.clock();
    gw.updateOperation(job.id, { currentOperation: view.current_operation, progress: view.percentage });
    this.deps.bus.publish(gw.id, {
      type: 'update_progress',
      jobId: job.id,
      status: view.status,
      progress: view.percentage,
      currentOperation: view.current_operation,
      bytesPerSecond: view.speedBps,
      etaSeconds: view.etaSeconds,
      ...(job.artifact.delivery ? { path: job.artifact.delivery.path } : {}),
      at: this.deps.clock(),
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
    if (state === 'installed' || state === 'activating') {
      if (state === 'installed') {
        const slot = activationSlot(ctx);
        logs.info(gw.id, 'ota', `Job ${job.id}: installed; slot ${slot} becomes active at the next reboot`);
      }
      setImmediate(() => this.settleActivation(gw, job));
    }
    if (state === 'downloaded' || state === 'complete' || state === 'error' || state === 'cancelled') {
      job.release?.();
      job.release = null;
    }
    if (state === 'downloaded' || state === 'complete' || state === 'error' || state === 'cancelled') {
      // The transfer is over: a delta's journal and downloaded file have served.
      this.delivery.dropWork(gw.id, job.id);
    }
    if (state === 'complete' || state === 'error' || state === 'cancelled') {
      this.deps.components.cleanup(gw, job.id);
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

  /** The job's progress view; while a component sequence runs, its step names the operation. */
  private viewOf(jobId: string, kind: string, snap: Parameters<typeof progressView>[1]) {
    const view = progressView(kind, snap);
    const operation = this.deps.components.operation(jobId);
    return operation ? { ...view, current_operation: operation } : view;
  }

  // ---- operator actions on jobs ------------------------------------------------------

  private job(
    gw: GatewayRuntime,
    jobId: string,
  ): { row: StoredJobOf<UpdateJobKind>; running: RunningJob | undefined } {
    const row = this.deps.jobs.get(jobId);
    if (!row || row.gatewayId !== gw.id || !isUpdateJob(row)) {
      throw new GantryError('NOT_FOUND', `Job ${jobId} not found`);
    }
    return { row, running: this.running.get(jobId) };
  }

  async install(gw: GatewayRuntime, input: InstallRequest, username: string) {
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

  cancel(gw: GatewayRuntime, input: CancelRequest, username: string) {
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
        `Job ${row.id} is ${jobStateName(running.actor.getSnapshot())}: past the point of no return, it cannot be cancelled`,
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

  /** Lets another service answer GET /progress for its own job kind. */
  registerProgress(kind: string, provider: (gw: GatewayRuntime, job: StoredJob) => JobProgress): void {
    this.progressProviders.set(kind, provider);
  }

  private rowProgress(row: StoredJobOf<UpdateJobKind>, snap: PersistedUpdateJob | null): JobProgress {
    const ctx = snap?.context ?? null;
    const target = ctx?.targetSlot ?? row.artifact?.targetSlot;
    if (!target) throw new GantryError('NOT_FOUND', `Job ${row.id} has no state`);
    return {
      status: row.state,
      jobId: row.id,
      percentage: ctx ? jobPercentage(ctx) : 0,
      currentOperation: row.state,
      speedBps: 0,
      bytesDone: ctx?.bytesDone ?? 0,
      totalBytes: ctx?.totalBytes ?? 0,
      etaSeconds: 0,
      update: {
        id: ctx?.updateId ?? row.artifact?.update.id ?? null,
        version: ctx?.version ?? row.artifact?.update.version ?? 'unknown',
      },
      elapsedMs: (row.finishedAt ?? this.deps.clock()) - (ctx?.startedAt ?? row.createdAt),
      targetSlot: target,
      error: row.errorCode ? { code: row.errorCode, message: row.errorMessage ?? '' } : null,
      blockedBy: [],
      delivery: row.artifact?.delivery ?? null,
    };
  }

  /** A job that no longer runs, as its snapshot left it; null if that is missing or unreadable. */
  private storedSnapshot(jobId: string): PersistedUpdateJob | null {
    const loaded = this.deps.actorSnapshots.load(updateJobPersisted, jobId);
    return loaded.status === 'found' ? loaded.snapshot : null;
  }

  progress(gw: GatewayRuntime, jobId: string): JobProgress {
    const stored = this.deps.jobs.get(jobId);
    const provider =
      stored && stored.gatewayId === gw.id ? this.progressProviders.get(stored.kind) : undefined;
    if (stored && provider) return provider(gw, stored);
    if (!stored || stored.gatewayId !== gw.id || !isUpdateJob(stored)) {
      throw new GantryError('NOT_FOUND', `Job ${jobId} not found`);
    }
    const row = stored;
    const running = this.running.get(jobId);
    const snap = running ? running.actor.getSnapshot() : this.storedSnapshot(row.id);
    // Not running, and its statechart did not get to say how it ended (a restart failed it, or its
    // snapshot is unreadable): the row is what is known.
    if (!running && (!snap || jobStateName(snap) !== row.state)) return this.rowProgress(row, snap);
    if (!snap) throw new GantryError('NOT_FOUND', `Job ${jobId} has no state`);
    const ctx = snap.context;
    const view = this.viewOf(row.id, row.kind, snap);
    // A job waiting for an operator (to install, to reboot) is not "working": its clock stops.
    const waiting =
      view.status === 'downloaded'
        ? ctx.downloadedAt
        : view.status === 'installed'
          ? (ctx.installedAt ?? null)
          : null;
    const end = row.finishedAt ?? waiting ?? this.deps.clock();
    const started = ctx.startedAt ?? row.createdAt;
    return {
      status: view.status,
      jobId: row.id,
      percentage: view.percentage,
      currentOperation: view.current_operation,
      speedBps: view.speedBps,
      bytesDone: ctx.bytesDone,
      totalBytes: ctx.totalBytes,
      etaSeconds: view.etaSeconds,
      update: { id: ctx.updateId, version: ctx.version },
      elapsedMs: end - started,
      targetSlot: ctx.targetSlot,
      error: ctx.errorCode ? { code: ctx.errorCode as ErrorCode, message: ctx.errorMessage ?? '' } : null,
      blockedBy: ctx.blockedBy,
      delivery: (running?.artifact ?? row.artifact)?.delivery ?? null,
    };
  }
}
