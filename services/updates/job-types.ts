import type { KeyObject } from 'node:crypto';
import type { Actor, SnapshotFrom } from 'xstate';
import type { SlotId, UpdateJobKind, UpdateStrategy } from '../../core/vocabulary.js';
import type { updateJobMachine } from '../../machines/update-job.js';
import type { GatewayRuntime } from '../gateways.js';
import type { UpdateJobArtifact } from '../job-records.js';
import type { FeedPort } from './catalog.js';

export type JobActor = Actor<typeof updateJobMachine>;
export type JobSnapshot = SnapshotFrom<typeof updateJobMachine>;
export type JobKind = UpdateJobKind;

/**
 * A job's progress (GET /progress) in numbers and epoch-free durations; api/presenters/progress.ts
 * writes the documented strings ("8.2 MB/s", "452 MB", "00:30", "00:01:05").
 */
export interface JobProgress {
  status: string;
  jobId: string;
  percentage: number;
  currentOperation: string;
  speedBps: number;
  bytesDone: number;
  totalBytes: number;
  etaSeconds: number;
  update: { id: string | null; version: string };
  elapsedMs: number;
  targetSlot: SlotId;
  error: { code: string; message: string } | null;
  blockedBy: string[];
  /**
   * How the image travels (issue 14): the path chosen and the bytes it planned and received on the
   * wire; null before the path is known (and for uploads and restores, which are local).
   */
  delivery?: { path: 'hop' | 'dynamic' | 'full'; plannedBytes: number; wireBytes: number } | null;
}

/**
 * What a job knows beyond its statechart: where its bytes come from and what they proved to be
 * (its row's `artifact`; the shape is checked by the job store, services/job-records.ts).
 */
export type JobArtifact = UpdateJobArtifact;

/** Who answers the questions the pipeline asks of the rest of Gantry (keys, safety, hooks). */
export interface UpdatePorts {
  feed: FeedPort;
  trustedKeys(gatewayId: string): KeyObject[];
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

/** A job's actor and what the service keeps beside it while it runs. */
export interface RunningJob {
  id: string;
  gatewayId: string;
  kind: JobKind;
  actor: JobActor;
  artifact: JobArtifact;
  lastPersistAt: number;
  lastPublishAt: number;
  /** Hashes computed while streaming in this process; after a restart the slot is hashed again. */
  hashedHere: boolean;
  release: (() => void) | null;
  stopSafety: (() => void) | null;
}

/*
 * What the update procedures ask of the service, as plain types the service owns. The routers pass
 * their zod-parsed payloads (api/schemas/updates.ts), which TypeScript checks against these.
 */

export interface CheckRequest {
  force: boolean;
  background: boolean;
}

export interface DownloadRequest {
  update_id: string;
  version?: string | undefined;
  target_partition?: SlotId | undefined;
  background: boolean;
}

export interface DeployRequest {
  filename: string;
  version?: string | undefined;
  target_partition?: SlotId | undefined;
  checksum: string;
}

export interface InstallRequest {
  job_id: string;
  strategy?: UpdateStrategy | undefined;
  reboot_after: boolean;
  create_snapshot: boolean;
}

export interface CancelRequest {
  job_id: string;
  reason: string;
}
