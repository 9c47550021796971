import type { KeyObject } from 'node:crypto';
import fs from 'node:fs';
import type { Manifest, Payload } from '../../bundle/manifest.js';
import { GantryError, findGantryError, type ErrorCode } from '../../core/errors.js';
import { LendingFileReader } from '../../core/lending.js';
import type { GatewayDevice, SlotId } from '../../device/types.js';
import { RESTART_DOWNLOAD } from '../../feed/fetch.js';
import { streamImageToSlot, type BundleSource, type ResumePoint } from '../pipeline/stream-to-slot.js';

/** Tunables of a transfer; tests shrink them, operators rarely touch them. */
export interface TransferPolicy {
  maxAttempts: number;
  retryDelayMs: number;
  /** Slow retrieval: fewer than `slowFloorBytesPerSecond` over `slowWindowMs` aborts the attempt. */
  slowFloorBytesPerSecond: number;
  slowWindowMs: number;
  checkpointBytes: number;
  checkpointMs: number;
  /** Bundles from this size on are hashed on a worker thread (see bundle/digests.ts). */
  threadHashingMinBytes: number;
}

export const DEFAULT_TRANSFER_POLICY: TransferPolicy = {
  maxAttempts: 5,
  retryDelayMs: 2000,
  slowFloorBytesPerSecond: 1024,
  slowWindowMs: 60_000,
  checkpointBytes: 64 * 1024 * 1024,
  checkpointMs: 1000,
  // Starting the thread costs ~30 ms and ~10 MiB; from 16 MiB on it pays for itself.
  threadHashingMinBytes: 16 * 1024 * 1024,
};

/** A bundle file on local disk (a manual upload, a recovery image). */
export function fileBundleSource(file: string, sha256?: string): BundleSource {
  return {
    description: file,
    sha256,
    // A missing file fails in open(), where a transfer's errors are handled.
    length: fs.statSync(file, { throwIfNoEntry: false })?.size,
    async open(offset) {
      return new LendingFileReader(file, { start: offset });
    },
  };
}

/** Failures a retry cannot fix: the bytes are wrong, not late. */
const FATAL: readonly ErrorCode[] = [
  'OTA_SIGNATURE_FAILED',
  'OTA_INVALID_IMAGE',
  'OTA_INSUFFICIENT_SPACE',
  'OTA_INSTALL_FAILED',
];

class SlowRetrievalError extends Error {
  constructor(bytes: number, windowMs: number) {
    super(`slow retrieval: ${bytes} bytes in ${Math.round(windowMs / 1000)} s`);
  }
}

export interface TransferRequest {
  device: GatewayDevice;
  slot: SlotId;
  source: BundleSource;
  trustedKeys: KeyObject[];
  hardwareModel: string;
  currentVersion: string | null;
  allowDowngrade: boolean;
  allowBooted?: boolean;
  resume: ResumePoint | null;
  signal: AbortSignal;
  policy: TransferPolicy;
  now: () => number;
  /** Manifest verified, before the first payload byte. May throw to refuse the bundle. */
  onManifest(manifest: Manifest, payload: Payload): Promise<void> | void;
  /** After every fsync: durable payload bytes and the observed speed. */
  onProgress(point: ResumePoint, speedBps: number): void;
  onRetry(attempt: number, reason: string): void;
}

export interface TransferResult {
  manifest: Manifest;
  payload: Payload;
  sha256: string;
  bytes: number;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        reject(signal.reason);
      },
      { once: true },
    );
  });

/**
 * Moves a bundle onto a slot with bounded retries. Each retry resumes from the last durable
 * checkpoint (HTTP Range for the rest, slot prefix re-hashed); bad bytes fail at once, late bytes
 * (dropped connection, slow retrieval) are retried, then end in OTA_DOWNLOAD_FAILED.
 */
export async function transferBundle(req: TransferRequest): Promise<TransferResult> {
  let resume = req.resume;
  let lastError: unknown;
  for (let attempt = 1; attempt <= req.policy.maxAttempts; attempt++) {
    if (req.signal.aborted) throw req.signal.reason;
    const attemptAbort = new AbortController();
    const onOuterAbort = () => attemptAbort.abort(req.signal.reason);
    req.signal.addEventListener('abort', onOuterAbort, { once: true });
    // Slow-retrieval watchdog: progress is sampled per window, not per chunk.
    let windowStartBytes = resume?.slotBytes ?? 0;
    let latestBytes = windowStartBytes;
    let lastAt = req.now();
    let lastBytes = windowStartBytes;
    const watchdog = setInterval(() => {
      const moved = latestBytes - windowStartBytes;
      if (moved < (req.policy.slowFloorBytesPerSecond * req.policy.slowWindowMs) / 1000) {
        attemptAbort.abort(new SlowRetrievalError(moved, req.policy.slowWindowMs));
      }
      windowStartBytes = latestBytes;
    }, req.policy.slowWindowMs);
    try {
      const result = await streamImageToSlot({
        device: req.device,
        slot: req.slot,
        source: req.source,
        trustedKeys: req.trustedKeys,
        hardwareModel: req.hardwareModel,
        currentVersion: req.currentVersion,
        allowDowngrade: req.allowDowngrade,
        allowBooted: req.allowBooted,
        resume,
        signal: attemptAbort.signal,
        checkpointBytes: req.policy.checkpointBytes,
        checkpointMs: req.policy.checkpointMs,
        threadHashingMinBytes: req.policy.threadHashingMinBytes,
        now: req.now,
        onManifest: req.onManifest,
        onDurable: (point) => {
          const at = req.now();
          const speed = at > lastAt ? ((point.slotBytes - lastBytes) * 1000) / (at - lastAt) : 0;
          lastAt = at;
          lastBytes = point.slotBytes;
          latestBytes = point.slotBytes;
          resume = point;
          req.onProgress(point, Math.max(0, speed));
        },
      });
      return result;
    } catch (err) {
      if (req.signal.aborted) throw req.signal.reason;
      const gantry = findGantryError(err);
      if (gantry && FATAL.includes(gantry.gantryCode)) throw gantry;
      // The server answered a ranged request whole (the file changed): start over, never stitch.
      if (gantry?.details?.[RESTART_DOWNLOAD] === true) resume = null;
      lastError = attemptAbort.signal.aborted ? attemptAbort.signal.reason : err;
      if (attempt < req.policy.maxAttempts) {
        req.onRetry(attempt, (lastError as Error).message ?? String(lastError));
        await sleep(req.policy.retryDelayMs * attempt, req.signal);
      }
    } finally {
      clearInterval(watchdog);
      req.signal.removeEventListener('abort', onOuterAbort);
    }
  }
  throw new GantryError(
    'OTA_DOWNLOAD_FAILED',
    `Download failed after ${req.policy.maxAttempts} attempts: ${(lastError as Error)?.message ?? 'unknown error'}`,
  );
}
