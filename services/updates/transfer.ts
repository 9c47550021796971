import type { KeyObject } from 'node:crypto';
import fs from 'node:fs';
import { sleep } from '../../core/sleep.js';
import type { Manifest, Payload } from '../../bundle/manifest.js';
import { GantryError, findGantryError, type ErrorCode } from '../../core/errors.js';
import { LendingFileReader } from '../../core/lending.js';
import { releaseAfterOperation } from '../../core/young-gc.js';
import type { GatewayDevice, SlotId } from '../../device/types.js';
import { RESTART_DOWNLOAD } from '../../feed/fetch.js';
import { DEFAULT_DYNAMIC_THRESHOLD } from '../../delta/choice.js';
import {
  ResumedHashMismatchError,
  streamImageToSlot,
  type BundleSource,
  type ResumePoint,
  type StreamToSlotOptions,
} from '../pipeline/stream-to-slot.js';

/** Tunables of a transfer; tests shrink them, operators rarely touch them. */
export interface TransferPolicy {
  maxAttempts: number;
  retryDelayMs: number;
  /**
   * Slow retrieval: an attempt that moved fewer than `slowFloorBytesPerSecond` over the last
   * `slowWindowMs` (a sliding window, sampled every second at most) is aborted and retried.
   */
  slowFloorBytesPerSecond: number;
  slowWindowMs: number;
  /**
   * The whole transfer (every attempt and the waits between them) ends within this long, else it
   * fails with OTA_DOWNLOAD_FAILED: the bound against a feed that trickles just above the floor.
   */
  maxTransferMs: number;
  checkpointBytes: number;
  checkpointMs: number;
  /**
   * Bundles from this size on are hashed on a worker thread when the feed signed no frame (two
   * hashes per byte); one hash per byte stays on the main thread (services/pipeline/stream-to-slot.ts).
   */
  threadHashingMinBytes: number;
  /**
   * The dynamic delta path is chosen only when it plans to receive less than this share of the
   * full bundle (delta/choice.ts); GANTRY_DYNAMIC_DELTA_MAX_PERCENT sets it.
   */
  dynamicThreshold: number;
}

export const DEFAULT_TRANSFER_POLICY: TransferPolicy = {
  maxAttempts: 5,
  retryDelayMs: 2000,
  slowFloorBytesPerSecond: 1024,
  slowWindowMs: 60_000,
  // A 1 GiB bundle needs ~150 KB/s on average to make it; GANTRY_DOWNLOAD_TIMEOUT_MINUTES changes it.
  maxTransferMs: 2 * 60 * 60 * 1000,
  checkpointBytes: 64 * 1024 * 1024,
  checkpointMs: 1000,
  // Never by default: on the main thread a hash costs the hash alone; the thread added a copy of
  // every byte into shared blocks, messages and its own memory (a deployed 1 GiB upload: VmHWM
  // 112.6 -> 107 MiB without it, npm run bench -- pipeline). The event loop still turns between
  // 1 MiB chunks (~1.5 ms of hashing each with both hashes).
  threadHashingMinBytes: Infinity,
  dynamicThreshold: DEFAULT_DYNAMIC_THRESHOLD,
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
    super(`slow retrieval: ${bytes} bytes in ${formatDuration(windowMs)}`);
  }
}

class TransferTimeoutError extends Error {
  constructor(readonly limitMs: number) {
    super(`not finished within ${formatDuration(limitMs)}, the time limit of a whole transfer`);
  }
}

function formatDuration(ms: number): string {
  if (ms < 60_000) return `${Math.round(ms / 100) / 10} s`;
  return `${Math.round(ms / 6000) / 10} min`;
}

/**
 * Bytes moved over the last `windowMs`, from counts sampled at a fixed period. Sliding, not one
 * window after another: a first burst stops counting once it is a window old, so it cannot carry
 * a stalled transfer through a whole extra window.
 */
export class SlidingWindow {
  readonly periodMs: number;
  /** The span the counts compare over: `windowMs` rounded up to whole periods. */
  readonly spanMs: number;
  private readonly counts: number[];
  private readonly periods: number;

  constructor(windowMs: number, startBytes = 0) {
    this.periodMs = Math.min(1000, Math.max(1, Math.floor(windowMs / 10)));
    this.periods = Math.max(1, Math.ceil(windowMs / this.periodMs));
    this.spanMs = this.periods * this.periodMs;
    this.counts = [startBytes];
  }

  /**
   * Records the running byte count at one period's tick. Returns the bytes moved over the last
   * span once a whole span has been observed, else null.
   */
  sample(bytes: number): number | null {
    this.counts.push(bytes);
    if (this.counts.length > this.periods + 1) this.counts.shift();
    return this.counts.length === this.periods + 1 ? bytes - this.counts[0]! : null;
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
  /** The other payloads of a multi-component bundle (see StreamToSlotOptions). */
  componentPayloadSink?: StreamToSlotOptions['componentPayloadSink'];
  /** After every fsync: durable payload bytes and the observed speed. */
  onProgress(point: ResumePoint, speedBps: number): void;
  onRetry(attempt: number, reason: string): void;
  /** Payload bytes taken from the bundle so far in this attempt (a resume's slot prefix included). */
  onTaken?(bytes: number): void;
  /** The part already on the slot failed its hash on resume: the transfer starts over from byte 0. */
  onRestart(reason: string): void;
}

export interface TransferResult {
  manifest: Manifest;
  payload: Payload;
  sha256: string;
  bytes: number;
}

/**
 * Moves a bundle onto a slot with bounded retries. Each retry resumes from the last durable
 * checkpoint (HTTP Range for the rest, slot prefix re-hashed); bad bytes fail at once, late bytes
 * (dropped connection, slow retrieval) are retried, then end in OTA_DOWNLOAD_FAILED, as does a
 * transfer still running after `maxTransferMs`. A resumed transfer whose hash fails starts over
 * from byte 0, once: the slot prefix may be what went bad.
 */
export async function transferBundle(req: TransferRequest): Promise<TransferResult> {
  const { policy } = req;
  const deadline = new AbortController();
  const deadlineTimer = setTimeout(
    () => deadline.abort(new TransferTimeoutError(policy.maxTransferMs)),
    policy.maxTransferMs,
  );
  const signal = AbortSignal.any([req.signal, deadline.signal]);
  let resume = req.resume;
  let restarted = false;
  let failures = 0;
  let lastError: unknown;
  try {
    for (;;) {
      if (signal.aborted) throw signal.reason;
      const attemptAbort = new AbortController();
      const onAbort = () => attemptAbort.abort(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      let taken = 0;
      const window = new SlidingWindow(policy.slowWindowMs);
      const floorBytes = (policy.slowFloorBytesPerSecond * window.spanMs) / 1000;
      const watchdog = setInterval(() => {
        const moved = window.sample(taken);
        if (moved !== null && moved < floorBytes) {
          attemptAbort.abort(new SlowRetrievalError(moved, window.spanMs));
        }
      }, window.periodMs);
      let lastAt = req.now();
      let lastBytes = resume?.slotBytes ?? 0;
      // A checkpoint of this attempt may land after it failed: its resume point then must not
      // override the next attempt's (above all not a restart's, which starts from nothing).
      let live = true;
      try {
        return await streamImageToSlot({
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
          checkpointBytes: policy.checkpointBytes,
          checkpointMs: policy.checkpointMs,
          threadHashingMinBytes: policy.threadHashingMinBytes,
          now: req.now,
          onManifest: req.onManifest,
          componentPayloadSink: req.componentPayloadSink,
          onBytes: (bytes) => {
            taken = bytes;
            req.onTaken?.(bytes);
          },
          onDurable: (point) => {
            if (!live) return;
            const at = req.now();
            const speed = at > lastAt ? ((point.slotBytes - lastBytes) * 1000) / (at - lastAt) : 0;
            lastAt = at;
            lastBytes = point.slotBytes;
            resume = point;
            req.onProgress(point, Math.max(0, speed));
          },
        });
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        if (err instanceof ResumedHashMismatchError && !restarted) {
          restarted = true;
          resume = null;
          req.onRestart(err.mismatch.message);
          continue;
        }
        const gantry = findGantryError(err);
        if (gantry && FATAL.includes(gantry.gantryCode)) throw restarted ? afterRestart(gantry) : gantry;
        // The server answered a ranged request whole (the file changed): start over, never stitch.
        if (gantry?.details?.[RESTART_DOWNLOAD] === true) resume = null;
        lastError = attemptAbort.signal.aborted ? attemptAbort.signal.reason : err;
        if (++failures >= policy.maxAttempts) break;
        req.onRetry(failures, messageOf(lastError));
        clearInterval(watchdog); // nothing to watch while waiting
        await sleep(policy.retryDelayMs * failures, signal);
      } finally {
        live = false;
        clearInterval(watchdog);
        signal.removeEventListener('abort', onAbort);
      }
    }
  } catch (err) {
    if (!req.signal.aborted && err instanceof TransferTimeoutError) {
      const last = lastError === undefined ? '' : ` (last failure: ${messageOf(lastError)})`;
      throw new GantryError('OTA_DOWNLOAD_FAILED', `Download failed: ${err.message}${last}`, {
        limit_ms: err.limitMs,
      });
    }
    throw err;
  } finally {
    clearTimeout(deadlineTimer);
    releaseAfterOperation();
  }
  throw new GantryError(
    'OTA_DOWNLOAD_FAILED',
    `Download failed after ${policy.maxAttempts} attempts: ${messageOf(lastError)}`,
  );
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err ?? 'unknown error');
}

/** The failure of the transfer restarted from byte 0 after a resumed one failed its hash. */
function afterRestart(err: GantryError): GantryError {
  return new GantryError(
    err.gantryCode,
    `${err.message} (after the transfer restarted from byte 0)`,
    err.details,
    err,
  );
}
