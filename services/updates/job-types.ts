import type { KeyObject } from 'node:crypto';
import type { Actor, SnapshotFrom } from 'xstate';
import type { z } from 'zod';
import type { progressOutputSchema } from '../../api/schemas/updates.js';
import type { Manifest } from '../../bundle/manifest.js';
import type { updateJobMachine } from '../../machines/update-job.js';
import type { GatewayRuntime } from '../gateways.js';
import type { ResumePoint } from '../pipeline/stream-to-slot.js';
import type { FeedPort, FeedTarget } from './catalog.js';

export type JobActor = Actor<typeof updateJobMachine>;
export type JobSnapshot = SnapshotFrom<typeof updateJobMachine>;
export type JobKind = 'download' | 'deploy' | 'restore' | 'factory';
export const PIPELINE_KINDS: readonly string[] = ['download', 'deploy', 'restore', 'factory'];
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
  lastState: string;
  lastPersistAt: number;
  lastPublishAt: number;
  /** Hashes computed while streaming in this process; after a restart the slot is hashed again. */
  hashedHere: boolean;
  release: (() => void) | null;
  stopSafety: (() => void) | null;
}
