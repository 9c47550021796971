import type { KeyObject } from 'node:crypto';
import fs from 'node:fs';
import { sleep } from '../../core/sleep.js';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { signedFrame } from '../../bundle/frame.js';
import { BUNDLE_FORMAT_V1, type Manifest, type Payload } from '../../bundle/manifest.js';
import { DEFAULT_MAX_MANIFEST_BYTES, readBundleHead } from '../../bundle/stream.js';
import { findGantryError, GantryError, isGantryError } from '../../core/errors.js';
import { consumeChunks } from '../../core/lending.js';
import type { ArtifactRef } from '../../delta/artifact.js';
import { choosePath, matchingHop, type DeliveryPath } from '../../delta/choice.js';
import { createHopPlan } from '../../delta/hop/apply.js';
import { isSourceMismatch } from '../../delta/hop/verify.js';
import type { DeltaContext, DeltaSource, DynamicDeltaProvider } from '../../delta/path.js';
import type { SlotId } from '../../device/types.js';
import type { GatewayRuntime } from '../gateways.js';
import type { LogService } from '../logs.js';
import type { FeedTarget } from './catalog.js';
import type { RunningJob, UpdatePorts } from './job-types.js';
import type { PartitionManager } from './partitions.js';

/** How a job's image travels: the path chosen and its bytes on the wire (kept in the job's artifact). */
export interface DeliveryRecord {
  path: DeliveryPath;
  /** Bytes the chosen path expected to receive, the bundle's head included. */
  plannedBytes: number;
  /** Bytes received so far (head, deltas, chunks, bundle), over every attempt. */
  wireBytes: number;
}

/** The bundle's head is read in ranged GETs from this size up (the manifest is usually a few KiB). */
const HEAD_FIRST_BYTES = 16 * 1024;

export interface DeliveryDeps {
  ports: UpdatePorts;
  partitions: PartitionManager;
  logs: LogService;
  clock: () => number;
  /** The dynamic path (delta/dynamic), when this build has it. */
  dynamic: DynamicDeltaProvider | null;
  /** Share of the full download the dynamic path must stay under (0-1). */
  dynamicThreshold: (gatewayId: string) => number;
  /** A gateway's own directory (jobs' work directories and the slots' state live under it). */
  gatewayDir: (gatewayId: string) => string;
  /** Bounded retries of a delta path's network failures (the transfer policy's). */
  retry: { maxAttempts: number; retryDelayMs: number };
}

export type ProgressSink = (p: { bytesDone: number; totalBytes: number; speedBps: number }) => void;

export interface HeadResult {
  manifest: Manifest;
  payload: Payload;
  wireBytes: number;
}

/**
 * Chooses how a feed bundle's image reaches the slot and, for a delta path, delivers it: reads
 * the bundle's signed head (ranged GETs), finds a hop delta from the active slot's image, else
 * asks the dynamic path for a plan, and applies the plan chosen. The full bundle is the caller's
 * (transfer.ts), when this answers null.
 */
export class Delivery {
  constructor(private readonly deps: DeliveryDeps) {}

  workDir(gatewayId: string, jobId: string): string {
    return path.join(this.deps.gatewayDir(gatewayId), 'delta-work', jobId);
  }

  slotStateDir(gatewayId: string, slot: SlotId): string {
    return path.join(this.deps.gatewayDir(gatewayId), 'slot-state', slot);
  }

  /** Removes a job's work directory (journal, downloaded delta): its transfer is over. */
  dropWork(gatewayId: string, jobId: string): void {
    fs.rmSync(this.workDir(gatewayId, jobId), { recursive: true, force: true });
  }

  /**
   * The bundle's head, verified (signature, hardware, rollback), through ranged GETs that stop at
   * the first payload's data: a few KiB on the wire.
   */
  async readHead(
    gw: GatewayRuntime,
    target: FeedTarget,
    check: {
      trustedKeys: KeyObject[];
      hardwareModel: string;
      currentVersion: string | null;
      allowDowngrade: boolean;
    },
    signal: AbortSignal,
  ): Promise<HeadResult> {
    let wire = 0;
    const feed = this.deps.ports.feed;
    const source = Readable.from(
      (async function* () {
        let offset = 0;
        let step = HEAD_FIRST_BYTES;
        while (offset < target.length) {
          const end = Math.min(target.length, offset + step);
          const stream = await feed.open(gw.id, target, offset, signal, undefined, end);
          const chunks: Buffer[] = [];
          await consumeChunks(stream, (chunk) => {
            wire += chunk.length;
            chunks.push(Buffer.from(chunk)); // lent: copied
            return undefined;
          });
          yield Buffer.concat(chunks);
          offset = end;
          step = DEFAULT_MAX_MANIFEST_BYTES + 2048;
        }
      })(),
      { objectMode: false },
    );
    const expectedFrame = signedFrame(target.custom, target.length) ?? undefined;
    const head = await readBundleHead(source, { ...check, signal, expectedFrame });
    const payloads = head.manifest.payloads;
    const payload = payloads[0]!;
    return { manifest: head.manifest, payload, wireBytes: wire };
  }

  /**
   * Delivers the image by a delta path when one is worth it. Resolves with the delivery used (the
   * image verified on the slot) or, when the full bundle should be fetched, with null and the
   * record the caller completes.
   */
  async tryDelta(
    gw: GatewayRuntime,
    job: RunningJob,
    slot: SlotId,
    head: HeadResult,
    fullBytes: number,
    signal: AbortSignal,
    hooks: {
      /** The path is chosen and the slot is about to be written (mark it touched, save the job). */
      onWrite(record: DeliveryRecord): Promise<void>;
      onProgress: ProgressSink;
      onRecord(record: DeliveryRecord): void;
    },
  ): Promise<{ delivered: boolean; record: DeliveryRecord }> {
    const { manifest, payload } = head;
    const previous = job.artifact.delivery ?? null;
    const full: DeliveryRecord = {
      path: 'full',
      plannedBytes: head.wireBytes + fullBytes,
      wireBytes: (previous?.wireBytes ?? 0) + head.wireBytes,
    };
    const hasDeltas = (payload.deltas?.length ?? 0) > 0 || payload.dynamic !== undefined;
    if (
      manifest.format === BUNDLE_FORMAT_V1 ||
      manifest.payloads.length !== 1 ||
      payload.kind !== 'rootfs' ||
      !hasDeltas
    ) {
      return { delivered: false, record: full };
    }
    const device = gw.device;
    const booted = await device.bootedSlot();
    const active = (await device.slots())[booted];
    const source: DeltaSource = {
      size: active.imageBytes,
      sha256: active.state === 'bootable' ? active.sha256 : null,
      read: (start, end) => device.openSlotReader(booted, { start, end }),
      openReadAt: () => device.openSlotReadAt(booted),
      stateDir: this.slotStateDir(gw.id, booted),
    };
    let wire = full.wireBytes;
    const record = (p: DeliveryPath, planned: number): DeliveryRecord => ({
      path: p,
      plannedBytes: head.wireBytes + planned,
      wireBytes: wire,
    });
    const workDir = this.workDir(gw.id, job.id);
    fs.mkdirSync(workDir, { recursive: true });
    const outputStateDir = this.slotStateDir(gw.id, slot);
    let current: DeliveryRecord = full;
    const feed = this.deps.ports.feed;
    const ctx: DeltaContext = {
      payload,
      source,
      fetch: {
        open: async (ref: ArtifactRef, range, sig) => {
          const target: FeedTarget = { path: ref.target, length: ref.size, sha256: ref.sha256, custom: {} };
          const stream = await feed.open(gw.id, target, range?.start ?? 0, sig, undefined, range?.end);
          // Every byte received is on the wire, whatever the path does with it.
          const counted = new Transform({
            transform(chunk: Buffer, _enc, cb) {
              wire += chunk.length;
              cb(null, chunk);
            },
          });
          stream.on('error', (err) => counted.destroy(err));
          counted.on('close', () => {
            if (!stream.destroyed) stream.destroy();
          });
          return stream.pipe(counted);
        },
      },
      openOutput: (offset) => device.openSlotWriter(slot, { offset }),
      readOutput: (start, end) => device.openSlotReader(slot, { start, end }),
      workDir,
      outputStateDir,
      signal,
      onProgress: () => {
        current = { ...current, wireBytes: wire };
        hooks.onProgress({ bytesDone: wire, totalBytes: current.plannedBytes, speedBps: 0 });
        hooks.onRecord(current);
      },
    };
    const hopRef = matchingHop(payload, source.sha256);
    const dynamicRef = payload.dynamic;
    const dynamic = this.deps.dynamic;
    const choice = await choosePath({
      // The bundle's chunks repair what the live active slot changed since its image was installed.
      hop: hopRef ? createHopPlan(hopRef, dynamicRef ?? null) : null,
      fullBytes,
      threshold: this.deps.dynamicThreshold(gw.id),
      planDynamic: dynamic && dynamicRef ? () => dynamic.plan(dynamicRef, ctx) : null,
    });
    this.deps.logs.info(gw.id, 'ota', `Job ${job.id}: ${choice.path} path chosen (${choice.reason})`);
    if (!choice.plan) return { delivered: false, record: { ...full, wireBytes: wire } };
    current = record(choice.path, choice.plannedBytes);
    await hooks.onWrite(current);
    // Invalid before the first byte: a torn write can never be mistaken for a bootable image.
    await device.writeSlotRecord(slot, {
      state: 'invalid',
      version: null,
      kernel: null,
      sha256: null,
      imageBytes: 0,
      installedAt: null,
    });
    if (!previous || previous.path !== choice.path) {
      fs.rmSync(outputStateDir, { recursive: true, force: true });
    }
    fs.mkdirSync(outputStateDir, { recursive: true });
    hooks.onProgress({ bytesDone: wire, totalBytes: current.plannedBytes, speedBps: 0 });
    for (let attempt = 1; ; attempt++) {
      try {
        const applied = await choice.plan.apply(ctx);
        if (applied.summary) this.deps.logs.info(gw.id, 'ota', `Job ${job.id}: ${applied.summary}`);
        break;
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        // The active slot did not hold what its record says (an op's output failed its hash): the
        // delta cannot be used; the full bundle can.
        if (isSourceMismatch(err)) {
          this.deps.logs.warn(
            gw.id,
            'ota',
            `Job ${job.id}: the ${choice.path} delta does not apply to the active slot (${(err as Error).message}); fetching the full bundle`,
          );
          fs.rmSync(workDir, { recursive: true, force: true });
          return { delivered: false, record: { ...full, wireBytes: wire } };
        }
        // A dropped connection: the path goes on from its work directory (the delta's bytes so far,
        // the journal), after the same bounded waits as the full transfer's retries.
        if (
          findGantryError(err)?.gantryCode === 'OTA_DOWNLOAD_FAILED' &&
          attempt < this.deps.retry.maxAttempts
        ) {
          this.deps.logs.warn(
            gw.id,
            'ota',
            `Job ${job.id}: ${choice.path} delta attempt ${attempt} failed (${(err as Error).message}); resuming`,
          );
          await sleep(this.deps.retry.retryDelayMs * attempt, signal);
          continue;
        }
        if (isGantryError(err)) throw err;
        throw new GantryError(
          'OTA_INSTALL_FAILED',
          `applying the ${choice.path} delta failed: ${(err as Error).message}`,
          undefined,
          err,
        );
      }
    }
    current = { ...current, wireBytes: wire };
    hooks.onRecord(current);
    if (dynamic?.remember && dynamicRef) await dynamic.remember(dynamicRef, ctx);
    return { delivered: true, record: current };
  }
}
