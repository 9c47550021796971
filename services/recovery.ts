import fs from 'node:fs';
import path from 'node:path';
import type { HashedUploadInput } from './updates/uploads.js';
import type { Manifest } from '../bundle/manifest.js';
import { checkInstallable, verifyBundle } from '../bundle/stream.js';
import { fsyncDirSync, readJsonFile, writeFileAtomicSync } from '../core/fsutil.js';
import { GantryError } from '../core/errors.js';
import { LendingFileReader } from '../core/lending.js';
import { otherSlot, type SlotId } from '../device/types.js';
import type { GatewayRegistry, GatewayRuntime } from './gateways.js';
import type { JobStore } from './jobs.js';
import type { LogService } from './logs.js';
import type { SafetyService } from './safety.js';
import type { SnapshotService } from './snapshots.js';
import type { PartitionManager } from './updates/partitions.js';
import type { UpdateService } from './updates/update-service.js';

/** The gateway's recovery image: a signed bundle kept beside its metadata. */
interface RecoveryImage {
  path: string;
  filename: string;
  size: number;
  sha256: string;
  manifest: Manifest;
  uploadedAt: number;
}

export interface RecoveryServiceDeps {
  gateways: GatewayRegistry;
  partitions: PartitionManager;
  updates: UpdateService;
  safety: SafetyService;
  snapshots: SnapshotService;
  jobs: JobStore;
  logs: LogService;
  clock: () => number;
  trustedKeys(gatewayId: string): import('node:crypto').KeyObject[];
}

/** Assumed write throughput for duration estimates (eMMC-class flash). */
const ESTIMATE_BYTES_PER_SECOND = 40 * 1024 * 1024;

/**
 * SECTION 5: rollback to the other slot, restore a snapshot, factory reset from the recovery image,
 * and the recovery image itself. Every path goes through the safety interlock and the gateway's
 * one-operation lock, and never writes the booted slot.
 */
/* What the recovery procedures ask (their zod-parsed payloads, checked against these). */
export interface RollbackRequest {
  action: 'rollback_to_a' | 'rollback_to_b';
  reason: string;
}
export interface RestoreRequest {
  version: string;
  target_partition?: SlotId | undefined;
}
export interface FactoryResetRequest {
  pin: string;
  confirm: true;
  wipe_data: boolean;
  reason: string;
}

export class RecoveryService {
  constructor(private readonly deps: RecoveryServiceDeps) {}

  private recoveryDir(gw: GatewayRuntime): string {
    return path.join(this.deps.gateways.gatewayDir(gw.id), 'recovery');
  }

  recoveryImage(gw: GatewayRuntime): RecoveryImage | null {
    const meta = readJsonFile<RecoveryImage>(path.join(this.recoveryDir(gw), 'recovery.json'));
    return meta && fs.existsSync(meta.path) ? meta : null;
  }

  async rollback(gw: GatewayRuntime, input: RollbackRequest, username: string) {
    const to: SlotId = input.action === 'rollback_to_a' ? 'A' : 'B';
    const [booted, slots] = await Promise.all([gw.device.bootedSlot(), gw.device.slots()]);
    if (to === booted) {
      throw new GantryError('OTA_ROLLBACK_FAILED', `Slot ${to} is already the running slot`, {
        booted_partition: booted,
      });
    }
    if (slots[to].state !== 'bootable') {
      throw new GantryError(
        'OTA_ROLLBACK_FAILED',
        `Slot ${to} holds no verified image (${slots[to].state}); nothing to roll back to`,
        {
          partition: to,
          state: slots[to].state,
        },
      );
    }
    this.deps.safety.assertAllowed(gw.id, 'rollback');
    const release = gw.beginOperation(
      { kind: 'rollback', id: `rollback-${this.deps.clock()}` },
      this.deps.clock(),
    );
    try {
      const event = { type: 'ROLLBACK' as const, to, at: this.deps.clock(), reason: input.reason };
      if (!this.deps.partitions.snapshot(gw.id).can(event)) {
        throw new GantryError(
          'OTA_ROLLBACK_FAILED',
          `Rollback to slot ${to} is not possible in the current slot state`,
        );
      }
      const after = await this.deps.partitions.dispatch(gw, event);
      const env = await gw.device.readBootEnv();
      if (env.bootSlot !== to || after.context.nextBoot !== to) {
        throw new GantryError('OTA_ROLLBACK_FAILED', `The bootloader did not take slot ${to} as next boot`);
      }
      this.deps.logs.warn(
        gw.id,
        'recovery',
        `Rollback to slot ${to} by ${username}: ${input.reason} (takes effect at the next reboot)`,
      );
      return {
        action: input.action,
        status: 'completed' as const,
        from_partition: booted,
        to_partition: to,
        from_version: slots[booted].version,
        to_version: slots[to].version,
        reboot_required: true,
      };
    } finally {
      release();
    }
  }

  async restore(gw: GatewayRuntime, input: RestoreRequest, username: string) {
    const booted = await gw.device.bootedSlot();
    const target = input.target_partition ?? otherSlot(booted);
    if (target === booted) {
      throw new GantryError(
        'OTA_RECOVERY_FAILED',
        `Slot ${target} is the running slot; a restore writes the inactive slot ${otherSlot(booted)}`,
        {
          booted_partition: booted,
        },
      );
    }
    const snapshot = this.deps.snapshots.findByVersion(gw.id, input.version);
    if (!snapshot) {
      throw new GantryError(
        'OTA_RECOVERY_FAILED',
        `No snapshot of version ${input.version}; create one first or pick another version`,
      );
    }
    this.deps.safety.assertAllowed(gw.id, 'restore');
    const jobId = this.deps.updates.startRecoveryJob(
      gw,
      'restore',
      target,
      {
        kind: 'image',
        path: snapshot.imagePath,
        sha256: snapshot.sha256,
        bytes: snapshot.size,
        version: snapshot.version,
        kernel: snapshot.kernel,
      },
      snapshot.version,
      snapshot.size,
      { rebootAfter: false, wipeData: false },
      { ...input, snapshot_id: snapshot.id, requested_by: username },
    );
    this.deps.logs.info(
      gw.id,
      'recovery',
      `Restore of ${snapshot.version} (${snapshot.id}) to slot ${target} started by ${username}`,
    );
    return {
      job_id: jobId,
      status: 'restoring' as const,
      version: snapshot.version,
      target_partition: target,
      snapshot_id: snapshot.id,
      progress_url: `/api/v1/ota/progress?job_id=${jobId}`,
    };
  }

  async factoryReset(gw: GatewayRuntime, input: FactoryResetRequest, username: string) {
    await this.deps.safety.verifyPin(gw.id, input.pin);
    const image = this.recoveryImage(gw);
    if (!image) {
      throw new GantryError(
        'OTA_RECOVERY_FAILED',
        'No recovery image is stored on this gateway; upload one first',
      );
    }
    this.deps.safety.assertAllowed(gw.id, 'factory_reset');
    const booted = await gw.device.bootedSlot();
    const target = otherSlot(booted);
    const payload = image.manifest.payloads.find((p) => p.kind === 'rootfs');
    const jobId = this.deps.updates.startRecoveryJob(
      gw,
      'factory',
      target,
      { kind: 'file', path: image.path, name: image.filename, sha256: image.sha256 },
      image.manifest.version,
      payload?.size ?? image.size,
      { rebootAfter: true, wipeData: input.wipe_data },
      { wipe_data: input.wipe_data, reason: input.reason, requested_by: username },
    );
    this.deps.logs.warn(
      gw.id,
      'recovery',
      `Factory reset started by ${username}${input.wipe_data ? ' (wiping data)' : ''}: ${input.reason}`,
    );
    return {
      status: 'started' as const,
      operation: 'factory_reset' as const,
      estimatedSeconds: 60 + (payload?.size ?? image.size) / ESTIMATE_BYTES_PER_SECOND,
      job_id: jobId,
    };
  }

  /** Verifies an uploaded recovery bundle and makes it the gateway's recovery image (atomically). */
  async storeRecoveryImage(gw: GatewayRuntime, input: HashedUploadInput, incomingDir: string) {
    const file = path.resolve(input.path);
    if (path.dirname(file) !== incomingDir || !file.endsWith('.part') || !fs.existsSync(file)) {
      throw new GantryError('VALIDATION_ERROR', 'Invalid request: path: not an upload of this gateway');
    }
    try {
      const { manifest, sha256 } = await verifyBundle(new LendingFileReader(file), {
        trustedKeys: this.deps.trustedKeys(gw.id),
      });
      if (sha256 !== input.sha256 || fs.statSync(file).size !== input.size) {
        throw new GantryError(
          'VALIDATION_ERROR',
          'Invalid request: size and sha256 must be those of the received upload',
        );
      }
      // A recovery image may be older than what runs (that is its point), but not for other hardware.
      checkInstallable(manifest, {
        hardwareModel: gw.row().model,
        currentVersion: null,
        allowDowngrade: true,
      });
      const dir = this.recoveryDir(gw);
      fs.mkdirSync(dir, { recursive: true });
      // Named by content, never renamed over the previous image: a factory reset may still be
      // reading that one (and resumes from it after a restart), and until recovery.json names the
      // new one a kill must leave the old pair intact (the sweep removes the unnamed file).
      const stored = path.join(dir, `recovery-${sha256}.bundle`);
      fs.renameSync(file, stored);
      fsyncDirSync(dir);
      const meta: RecoveryImage = {
        path: stored,
        filename: input.originalName,
        size: input.size,
        sha256: input.sha256,
        manifest,
        uploadedAt: this.deps.clock(),
      };
      writeFileAtomicSync(path.join(dir, 'recovery.json'), JSON.stringify(meta, null, 2));
      this.removeUnusedImages(gw, stored);
      this.deps.logs.info(
        gw.id,
        'recovery',
        `Recovery image ${input.originalName} (${manifest.version}) stored`,
      );
      return {
        uploaded: true as const,
        filename: input.originalName,
        sizeBytes: input.size,
        version: manifest.version,
        checksum: `sha256:${input.sha256}`,
      };
    } catch (err) {
      fs.rmSync(file, { force: true });
      throw err;
    }
  }

  /** Earlier recovery images, unless a job that has not finished (a factory reset) reads one. */
  private removeUnusedImages(gw: GatewayRuntime, current: string): void {
    const dir = path.dirname(current);
    const reading = new Set(
      this.deps.jobs
        .artifactPaths({ gatewayId: gw.id, unfinished: true })
        .map((named) => path.resolve(named.path)),
    );
    for (const name of fs.readdirSync(dir)) {
      const file = path.join(dir, name);
      if (name.endsWith('.bundle') && file !== current && !reading.has(path.resolve(file))) {
        fs.rmSync(file, { force: true });
      }
    }
  }
}
