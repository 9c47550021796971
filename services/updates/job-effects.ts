import { createHash } from 'node:crypto';
import path from 'node:path';
import type { UpdateStrategy } from '../../core/vocabulary.js';
import { GantryError } from '../../core/errors.js';
import { consumeChunks, LendingFileReader, pipeChunks } from '../../core/lending.js';
import type { SlotId } from '../../device/types.js';
import type { GatewayRuntime } from '../gateways.js';
import type { JobStore } from '../jobs.js';
import type { LogService } from '../logs.js';
import { signedFrame } from '../../bundle/frame.js';
import type { BundleSource } from '../pipeline/stream-to-slot.js';
import { compressionOf } from '../../bundle/manifest.js';
import { findGantryError } from '../../core/errors.js';
import { activationOf } from './activation.js';
import { deliversByDelta } from './catalog.js';
import type { Delivery, DeliveryRecord } from './delivery.js';
import type { JobArtifact, RunningJob, UpdatePorts } from './job-types.js';
import type { PartitionManager } from './partitions.js';
import type { ComponentService } from '../components/component-service.js';
import { isComponentBundle } from '../components/plan.js';
import { fileBundleSource, transferBundle, type TransferPolicy } from './transfer.js';

type SendBack = (event: {
  type: 'PROGRESS';
  bytesDone: number;
  speedBps: number;
  at: number;
  totalBytes?: number;
}) => void;

/** PROGRESS events from byte counts (a compressed payload, a delta) are sent at most this often. */
const WIRE_PROGRESS_MS = 250;

/**
 * What the job statechart's actors do: move bytes onto a slot (bundle or raw image), verify them,
 * install (stage, in-place copy, hooks, factory wipe) and invalidate a slot that can no longer be
 * trusted. The statechart decides when; this decides how.
 */
/** What the effects use of the update service's dependencies (declared here: no import cycle). */
export interface JobEffectsDeps {
  jobs: Pick<JobStore, 'update'>;
  clock: () => number;
  logs: LogService;
  partitions: PartitionManager;
  ports: UpdatePorts;
  policy: TransferPolicy;
  /** Multi-component bundles: checked before a byte is written, staged, installed in sequence. */
  components: ComponentService;
  delivery: Delivery;
}

export class JobEffects {
  constructor(private readonly deps: JobEffectsDeps) {}

  saveArtifact(job: RunningJob): void {
    this.deps.jobs.update(job, { artifact: job.artifact });
  }

  async invalidate(gw: GatewayRuntime, slot: SlotId): Promise<void> {
    const booted = await gw.device.bootedSlot();
    if (slot === booted) return;
    const record = (await gw.device.slots())[slot];
    await gw.device.writeSlotRecord(slot, { ...record, state: 'invalid', version: null, sha256: null });
    await this.deps.partitions.dispatch(gw, { type: 'INVALIDATE', slot });
  }

  source(gw: GatewayRuntime, artifact: JobArtifact): BundleSource {
    const src = artifact.source;
    if (src.kind === 'file') return fileBundleSource(src.path, src.sha256);
    if (src.kind === 'image') throw new Error('a raw image is copied, not parsed as a bundle');
    // One validator for every request of this download: a file replaced on the server midway is
    // answered whole and the transfer starts over, never stitched (If-Range, feed/fetch.ts).
    const validator = { value: null as string | null };
    return {
      description: src.target.path,
      sha256: src.target.sha256,
      length: src.target.length,
      frame: signedFrame(src.target.custom, src.target.length) ?? undefined,
      open: (offset, signal) => this.deps.ports.feed.open(gw.id, src.target, offset, signal, validator),
    };
  }

  async transfer(
    gw: GatewayRuntime,
    job: RunningJob,
    slot: SlotId,
    signal: AbortSignal,
    sendBack: SendBack,
  ): Promise<void> {
    if (job.artifact.source.kind === 'image') {
      await this.copyImage(gw, job, slot, job.artifact.source, signal, sendBack);
      return;
    }
    const booted = await gw.device.bootedSlot();
    const bootedVersion = (await gw.device.slots())[booted].version;
    const check = {
      trustedKeys: this.deps.ports.trustedKeys(gw.id),
      hardwareModel: gw.row().model,
      currentVersion: this.deps.partitions.versionFloor(gw.id) ?? bootedVersion,
      allowDowngrade: job.artifact.allowDowngrade,
    };
    const src = job.artifact.source;
    let record: DeliveryRecord | null = null;
    let lastWireAt = 0;
    const wireProgress = (bytesDone: number, totalBytes: number, force = false): void => {
      const at = this.deps.clock();
      if (!force && at - lastWireAt < WIRE_PROGRESS_MS) return;
      lastWireAt = at;
      sendBack({ type: 'PROGRESS', bytesDone, totalBytes, speedBps: 0, at });
    };
    if (src.kind === 'feed' && deliversByDelta(src.target.custom)) {
      const delivered = await this.tryDelta(gw, job, slot, src.target, check, signal, wireProgress);
      if (delivered === true) return;
      record = delivered;
    }
    // A bundle fetched whole from the feed: its bytes are what crosses the network.
    if (!record && src.kind === 'feed')
      record = { path: 'full', plannedBytes: src.target.length, wireBytes: 0 };
    const wireBefore = record?.wireBytes ?? 0;
    const bundleLength = src.kind === 'feed' ? src.target.length : null;
    let compressed = false;
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
      componentPayloadSink: (payload) => this.deps.components.payloadSink(gw, job.id, payload),
      onManifest: async (manifest, payload) => {
        // A component bundle this gateway cannot install consistently is refused here, before a byte.
        if (isComponentBundle(manifest)) {
          await this.deps.components.checkManifest(gw, manifest, job.artifact.allowDowngrade);
        }
        // Signature, hardware and version are verified: only now may the slot be touched.
        await this.deps.partitions.startWrite(gw, slot, false);
        compressed = compressionOf(payload) !== 'none';
        job.artifact = { ...job.artifact, manifest, slotTouched: true };
        if (record) job.artifact.delivery = record;
        this.saveArtifact(job);
      },
      onTaken: (bytes) => {
        // A compressed payload has no durable points to report (see DecompressingSink): its
        // progress is the bytes received, against what the bundle weighs on the wire.
        if (compressed && bundleLength !== null) {
          wireProgress(wireBefore + bytes, wireBefore + bundleLength);
        }
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
      onRestart: (reason) => {
        // The old resume point names bytes that failed their hash: a crash now must not resume from it.
        job.artifact = { ...job.artifact, resume: null };
        this.saveArtifact(job);
        sendBack({ type: 'PROGRESS', bytesDone: 0, speedBps: 0, at: this.deps.clock() });
        this.deps.logs.warn(
          gw.id,
          'ota',
          `Job ${job.id}: the part already on slot ${slot} failed its hash on resume (${reason}); restarting the transfer from byte 0`,
        );
      },
    });
    job.hashedHere = true;
    job.artifact = { ...job.artifact, manifest: result.manifest, sha256: result.sha256, bytes: result.bytes };
    if (record && bundleLength !== null) {
      job.artifact.delivery = { ...record, wireBytes: record.wireBytes + bundleLength };
    }
    this.saveArtifact(job);
  }

  /**
   * Reads the bundle's signed head and delivers the image by a delta path when one is worth it
   * (true), else says what the full path will cost (its record). A head that cannot be fetched
   * now is no reason to fail: the full transfer, with its retries, reads and verifies it again.
   */
  private async tryDelta(
    gw: GatewayRuntime,
    job: RunningJob,
    slot: SlotId,
    target: Extract<JobArtifact['source'], { kind: 'feed' }>['target'],
    check: Parameters<Delivery['readHead']>[2],
    signal: AbortSignal,
    wireProgress: (bytesDone: number, totalBytes: number, force?: boolean) => void,
  ): Promise<true | DeliveryRecord | null> {
    const delivery = this.deps.delivery;
    let head;
    try {
      head = await delivery.readHead(gw, target, check, signal);
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      const code = findGantryError(err)?.gantryCode;
      if (code === 'OTA_SIGNATURE_FAILED' || code === 'OTA_INVALID_IMAGE') throw err;
      this.deps.logs.warn(
        gw.id,
        'ota',
        `Job ${job.id}: cannot read the bundle's head (${(err as Error).message}); fetching the full bundle`,
      );
      return null;
    }
    const { delivered, record } = await delivery.tryDelta(gw, job, slot, head, target.length, signal, {
      onWrite: async (rec) => {
        await this.deps.partitions.startWrite(gw, slot, false);
        job.artifact = {
          ...job.artifact,
          manifest: head.manifest,
          slotTouched: true,
          resume: null,
          delivery: rec,
        };
        this.saveArtifact(job);
      },
      onProgress: ({ bytesDone, totalBytes }) => wireProgress(bytesDone, totalBytes),
      onRecord: (rec) => {
        job.artifact = { ...job.artifact, delivery: rec };
      },
    });
    if (!delivered) return record;
    wireProgress(record.wireBytes, record.plannedBytes, true);
    job.hashedHere = true;
    job.artifact = {
      ...job.artifact,
      manifest: head.manifest,
      sha256: head.payload.sha256,
      bytes: head.payload.size,
      delivery: record,
    };
    this.saveArtifact(job);
    return true;
  }

  /** A raw image (snapshot) onto the slot, hashed on the way; a retry starts over (it is local). */
  async copyImage(
    gw: GatewayRuntime,
    job: RunningJob,
    slot: SlotId,
    src: Extract<JobArtifact['source'], { kind: 'image' }>,
    signal: AbortSignal,
    sendBack: SendBack,
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
    const onChunk = (chunk: Buffer): void => {
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
    };
    const writer = await gw.device.openSlotWriter(slot, { offset: 0 });
    await pipeChunks(new LendingFileReader(src.path), writer, { signal, onChunk });
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
  async verifyOnSlot(gw: GatewayRuntime, job: RunningJob, slot: SlotId): Promise<void> {
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
      await consumeChunks(gw.device.openSlotReader(slot, { start: 0, end: bytes - 1 }), (chunk) => {
        hash.update(chunk);
        return undefined;
      });
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

  /**
   * Installs the verified image; for a multi-component bundle, runs its component sequence to its
   * end (every component activated and committed, or rolled back by the rule): then true.
   */
  async install(
    gw: GatewayRuntime,
    job: RunningJob,
    slot: SlotId,
    install: { strategy: UpdateStrategy; rebootAfter: boolean; createSnapshot: boolean },
    resumed: boolean,
    onStep: (operation: string) => void,
  ): Promise<boolean> {
    const manifest = job.artifact.manifest;
    if (!manifest || !isComponentBundle(manifest)) {
      await this.installOnSlot(gw, job, slot, install);
      return false;
    }
    if (install.createSnapshot && !resumed) {
      const snapshotId = await this.deps.ports.snapshotBeforeInstall(gw, job.id);
      this.deps.logs.info(gw.id, 'ota', `Job ${job.id}: snapshot ${snapshotId} taken before install`);
    }
    const rootfsSlot = install.strategy === 'in-place' ? await gw.device.bootedSlot() : slot;
    await this.deps.components.install(
      gw,
      {
        jobId: job.id,
        strategy: install.strategy,
        manifest,
        rootfs: {
          slot: rootfsSlot,
          install: () => this.installOnSlot(gw, job, slot, { ...install, createSnapshot: false }),
          invalidate: () => this.invalidate(gw, slot),
        },
        onStep,
      },
      resumed,
    );
    return true;
  }

  async installOnSlot(
    gw: GatewayRuntime,
    job: RunningJob,
    slot: SlotId,
    install: { strategy: UpdateStrategy; rebootAfter: boolean; createSnapshot: boolean },
  ): Promise<void> {
    const { manifest: bundleManifest, source } = job.artifact;
    const manifest =
      bundleManifest ?? (source.kind === 'image' ? { version: source.version, kernel: source.kernel } : null);
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
      await pipeChunks(
        gw.device.openSlotReader(slot, { start: 0, end: (job.artifact.bytes ?? 1) - 1 }),
        writer,
      );
      // The source slot's record, not its SlotInfo (whose `id` names the source slot).
      const { state, version, kernel, sha256, imageBytes } = (await gw.device.slots())[slot];
      await gw.device.writeSlotRecord(target, {
        state,
        version,
        kernel,
        sha256,
        imageBytes,
        installedAt: this.deps.clock(),
      });
      await this.deps.partitions.dispatch(gw, {
        type: 'WRITE_VERIFIED',
        slot: target,
        version: manifest.version,
      });
    }
    const hooks = await this.deps.ports.runPostInstallHooks(gw, {
      GANTRY_JOB_ID: job.id,
      GANTRY_SLOT: target,
      GANTRY_VERSION: manifest.version,
    });
    if (!hooks.ok) throw new GantryError('OTA_INSTALL_FAILED', `Post-install hook failed: ${hooks.reason}`);
    // In-place too: the rewritten running slot is tried like any new slot (U-Boot counts its boots,
    // falls back to the other slot, which holds the same verified image), so the job can tell when
    // the new image really runs.
    const stage = { type: 'STAGE' as const, slot: target, at: this.deps.clock() };
    const partition = this.deps.partitions.snapshot(gw.id);
    // A resumed install may find its slot staged already (Gantry stopped right after staging it).
    if (activationOf(partition, target).kind !== 'staged') {
      if (!partition.can(stage)) {
        throw new GantryError('OTA_INSTALL_FAILED', `Slot ${target} cannot be staged as the next boot now`);
      }
      await this.deps.partitions.dispatch(gw, stage);
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
}
