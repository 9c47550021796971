import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { GantryError } from '../../core/errors.js';
import { consumeChunks } from '../../core/lending.js';
import { youngGenerationSweeper } from '../../core/young-gc.js';
import { maxFrameLength, type ChunkIndex } from './chunk-index.js';
import type { ReadAt } from './chunker.js';
import { decompressFrame, FrameError } from './frames.js';
import type { DynamicPlan, PackRange } from './planner.js';

/** The inactive slot being written. */
export interface TargetSlot {
  /** `data` is lent: the applier reuses its buffer once the returned promise settles. */
  write(data: Uint8Array, position: number): Promise<void>;
  /** Reads back what was written: repeated chunks, and the hash of the prefix on a resume. */
  readAt: ReadAt;
  /** Makes everything written so far durable; called before each checkpoint. */
  sync(): Promise<void>;
}

/** One single-range GET of pack bytes [start, end): a stream of exactly those bytes. */
export type FetchRange = (range: { start: number; end: number }, signal?: AbortSignal) => Promise<Readable>;

/** What a journal keeps: the target holds chunks [0, nextChunk), verified and synced. */
export interface DynamicCheckpoint {
  nextChunk: number;
  /** Pack bytes received so far in this run (a resumed run starts again from 0). */
  wireBytes: number;
}

export interface DynamicProgress {
  /** Target bytes written (including the prefix a resume started from). */
  writtenBytes: number;
  /** Pack bytes received in this run. */
  wireBytes: number;
  requests: number;
}

export interface ApplyDynamicOptions {
  index: ChunkIndex;
  plan: DynamicPlan;
  /** The active slot: read, never written. */
  source: ReadAt;
  target: TargetSlot;
  fetchRange: FetchRange;
  /** Resume point from a journal: chunks before it are in the target already. */
  resumeFrom?: number;
  /** Persist the checkpoint (fsynced journal). Called after each range and every `checkpointBytes`. */
  checkpoint?: (cp: DynamicCheckpoint) => Promise<void>;
  checkpointBytes?: number;
  onProgress?: (p: DynamicProgress) => void;
  signal?: AbortSignal;
}

export interface DynamicResult {
  /** Pack bytes received in this run (ranges plus repairs). */
  wireBytes: number;
  requests: number;
  /** Local chunks that no longer matched the slot's index and were fetched instead. */
  repairedChunks: number;
  /** SHA-256 of the whole target image (checked against the index). */
  sha256: string;
}

export const DEFAULT_CHECKPOINT_BYTES = 64 * 1024 * 1024;
/**
 * Fetched chunks whose bytes appear again later in the image are kept in memory up to this much,
 * so a repeat is written from memory rather than read back from the target slot (whose writer may
 * not have flushed them yet: a read-back first waits for it and fsyncs).
 */
const KEEP_REPEATED_BYTES = 8 * 1024 * 1024;

function chunkRefused(i: number, why: string, details?: Record<string, unknown>): GantryError {
  return new GantryError('OTA_INVALID_IMAGE', `chunk ${i} refused: ${why}`, { chunk: i, ...details });
}

async function readExactly(
  readAt: ReadAt,
  position: number,
  length: number,
  into: Buffer,
): Promise<Buffer | null> {
  const buf = into.subarray(0, length);
  let got = 0;
  while (got < length) {
    const n = await readAt(buf.subarray(got), position + got);
    if (n === 0) return null;
    got += n;
  }
  return buf;
}

function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Sequential reader of one range response: frames are taken in pack order, gap bytes skipped.
 * The body is consumed under the lending contract (core/lending.ts): each chunk the HTTP body
 * lends stays on loan until the frames it holds were copied out, so no buffer is allocated per
 * read. Counts every byte received: that is what crossed the network.
 */
class RangeReader {
  private held: Buffer | null = null;
  private release: (() => void) | null = null;
  private ended = false;
  private failure: unknown = null;
  private wake: (() => void) | null = null;
  private position: number;
  received = 0;

  constructor(
    private readonly body: Readable,
    readonly range: PackRange & { index: number },
  ) {
    this.position = range.start;
    consumeChunks(body, (chunk) => {
      this.received += chunk.length;
      if (chunk.length === 0) return undefined;
      return new Promise<void>((resolve) => {
        this.held = chunk;
        this.release = resolve;
        this.notify();
      });
    }).then(
      () => this.end(null),
      (err: unknown) => this.end(err ?? new Error('the range response failed')),
    );
  }

  private end(failure: unknown): void {
    this.failure = failure;
    this.ended = true;
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  /** The chunk on loan, waiting for the next one; null at the end of the response. */
  private async current(): Promise<Buffer | null> {
    while (this.held === null) {
      if (this.failure !== null) throw this.failure;
      if (this.ended) return null;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    return this.held;
  }

  private advance(n: number): void {
    this.position += n;
    this.held = this.held!.subarray(n);
    if (this.held.length === 0) {
      this.held = null;
      const release = this.release;
      this.release = null;
      release?.();
    }
  }

  /** Copies the `length` bytes at pack offset `offset` (at or after the position) into `out`. */
  async take(offset: number, length: number, out: Buffer): Promise<Buffer> {
    if (offset < this.position || offset + length > this.range.end) {
      throw new Error(`frame at ${offset} is outside the rest of range ${this.position}-${this.range.end}`);
    }
    let filled = 0;
    while (filled < length) {
      const chunk = await this.current();
      if (chunk === null) {
        throw new GantryError(
          'OTA_DOWNLOAD_FAILED',
          `pack range ended at ${this.position} before ${this.range.end}`,
        );
      }
      const skip = Math.min(offset - this.position, chunk.length);
      if (skip > 0) {
        this.advance(skip);
        continue;
      }
      const n = Math.min(length - filled, chunk.length);
      chunk.copy(out, filled, 0, n);
      filled += n;
      this.advance(n);
    }
    return out.subarray(0, length);
  }

  /**
   * Reads the response to its end once the last frame was taken, so a keep-alive connection goes
   * back to the pool for the next GET; a server sending more than the range is refused.
   */
  async finish(): Promise<void> {
    if ((await this.current()) !== null) {
      throw new GantryError(
        'OTA_DOWNLOAD_FAILED',
        `the server sent more than pack range ${this.range.start}-${this.range.end}`,
      );
    }
  }

  close(): void {
    this.body.destroy();
    const release = this.release;
    this.release = null;
    this.held = null;
    release?.();
  }
}

/** Buffers one apply reuses for every chunk: memory stays flat whatever the image size. */
interface Scratch {
  chunk: Buffer;
  frame: Buffer;
}

/**
 * Writes the target image chunk by chunk, in order: local chunks copied from the active slot,
 * fetched ones decompressed from their range responses, repeats read back from the target. Every
 * chunk's SHA-256 is checked against the signed index before it is written; a fetched chunk that
 * fails is refused (OTA_INVALID_IMAGE) with nothing of it written. A local chunk that no longer
 * matches (the slot changed since its index was made) is fetched on its own instead. Memory holds
 * one chunk buffer and one frame buffer, reused, and one response's buffers per range in flight.
 *
 * The next range's GET is sent while the current one is read, so round trips overlap the work.
 * After each range, and every `checkpointBytes` written, the target is synced and `checkpoint`
 * called: a resume (`resumeFrom`) re-fetches at most the frames of one range. The whole image's
 * SHA-256 is computed as it is written (on a resume, the prefix is read back first) and compared
 * with the index's.
 */
export async function applyDynamic(opts: ApplyDynamicOptions): Promise<DynamicResult> {
  const { index, plan, target, signal } = opts;
  const chunks = index.chunks;
  const start = opts.resumeFrom ?? 0;
  if (!Number.isInteger(start) || start < 0 || start > chunks.length) {
    throw new GantryError('VALIDATION_ERROR', `resume point ${start} is outside the ${chunks.length} chunks`);
  }
  if (plan.steps.length !== chunks.length) throw new Error('the plan was made for another index');
  const checkpointBytes = opts.checkpointBytes ?? DEFAULT_CHECKPOINT_BYTES;
  const imageHash = createHash('sha256');
  let writtenBytes = start < chunks.length ? chunks[start]!.offset : index.header.image.size;
  await hashPrefix(target.readAt, writtenBytes, imageHash, signal);

  const stats = { wireBytes: 0, requests: 0, repairedChunks: 0 };
  const scratch: Scratch = {
    chunk: Buffer.alloc(index.chunker.maxSize),
    frame: Buffer.alloc(maxFrameLength(index.chunker.maxSize)),
  };
  // Node's read streams allocate per read (a file's, a socket's without lending): ask V8 for a
  // young-generation collection every few MiB so dead buffers do not pile up (core/young-gc.ts).
  const sweep = youngGenerationSweeper();
  const queue = rangesFrom(opts, start);
  let next = 0; // next entry of `queue` to request
  let current: RangeReader | null = null;
  let ahead: Promise<RangeReader> | null = null;

  const open = (k: number): Promise<RangeReader> => {
    const r = queue[k]!;
    stats.requests++;
    const p = opts
      .fetchRange({ start: r.start, end: r.end }, signal)
      .then((body) => new RangeReader(body, r));
    p.catch(() => undefined); // awaited when its turn comes; until then not an unhandled rejection
    return p;
  };
  const readerFor = async (rangeIndex: number): Promise<RangeReader> => {
    if (current?.range.index === rangeIndex) return current;
    if (current) throw new Error(`range ${current.range.index} left before its last frame`);
    if (ahead === null) ahead = open(next++);
    const reader = await ahead;
    ahead = next < queue.length ? open(next++) : null;
    if (reader.range.index !== rangeIndex) throw new Error(`range ${rangeIndex} requested out of order`);
    current = reader;
    return reader;
  };

  const repeatedFrames = new Set<number>();
  for (let i = start; i < chunks.length; i++) {
    if (plan.steps[i]!.kind === 'repeat') repeatedFrames.add(chunks[i]!.frame);
  }
  const kept = new Map<number, Buffer>();
  let keptBytes = 0;

  const receivedSoFar = (): number => stats.wireBytes + (current?.received ?? 0);
  let sinceCheckpoint = 0;
  const saveCheckpoint = async (nextChunk: number): Promise<void> => {
    sinceCheckpoint = 0;
    if (!opts.checkpoint) return;
    await target.sync();
    await opts.checkpoint({ nextChunk, wireBytes: receivedSoFar() });
  };

  try {
    for (let i = start; i < chunks.length; i++) {
      signal?.throwIfAborted();
      const c = chunks[i]!;
      const step = plan.steps[i]!;
      let data: Buffer | null;
      let rangeDone = false;
      if (step.kind === 'local') {
        data = await readExactly(opts.source, step.sourceOffset, c.length, scratch.chunk);
        if (data === null || sha256Hex(data) !== c.sha256) {
          data = await fetchAlone(opts, i, stats, scratch);
          stats.repairedChunks++;
        }
      } else if (step.kind === 'repeat') {
        const mine = kept.get(c.frame);
        if (mine) {
          data = mine;
        } else {
          // Written earlier by this run: on the slot once the writer has flushed it.
          await target.sync();
          data = await readExactly(target.readAt, step.targetOffset, c.length, scratch.chunk);
        }
        if (data === null || sha256Hex(data) !== c.sha256) {
          throw new GantryError(
            'OTA_INSTALL_FAILED',
            `chunk ${i}: the target slot changed while it was written`,
          );
        }
      } else {
        const reader = await readerFor(step.range);
        const frame = index.frames[c.frame]!;
        const bytes = await reader.take(frame.offset, frame.length, scratch.frame);
        data = decodeChunk(index, i, bytes, scratch.chunk);
        if (repeatedFrames.has(c.frame) && keptBytes + c.length <= KEEP_REPEATED_BYTES) {
          kept.set(c.frame, Buffer.from(data));
          keptBytes += c.length;
        }
        if (frame.offset + frame.length === reader.range.end) {
          await reader.finish();
          stats.wireBytes += reader.received;
          current = null;
          rangeDone = true;
        }
      }
      imageHash.update(data);
      await target.write(data, c.offset);
      sweep(c.length);
      writtenBytes += c.length;
      sinceCheckpoint += c.length;
      opts.onProgress?.({
        writtenBytes,
        wireBytes: receivedSoFar(),
        requests: stats.requests,
      });
      if (rangeDone || sinceCheckpoint >= checkpointBytes) await saveCheckpoint(i + 1);
    }
  } finally {
    const reader = current as RangeReader | null;
    if (reader) {
      stats.wireBytes += reader.received;
      reader.close();
    }
    const pending = ahead as Promise<RangeReader> | null;
    if (pending)
      void pending.then(
        (r) => r.close(),
        () => undefined,
      );
  }
  const sha256 = imageHash.digest('hex');
  if (sha256 !== index.header.image.sha256) {
    throw new GantryError(
      'OTA_INVALID_IMAGE',
      'the written image does not match the SHA-256 the index signed',
      {
        expected: index.header.image.sha256,
        actual: sha256,
      },
    );
  }
  if (opts.checkpoint && sinceCheckpoint > 0) await saveCheckpoint(chunks.length);
  return { ...stats, sha256 };
}

/** Decompresses and checks one fetched chunk; nothing unverified leaves this function. */
function decodeChunk(index: ChunkIndex, i: number, frame: Buffer, into: Buffer): Buffer {
  const c = index.chunks[i]!;
  let data: Buffer;
  try {
    data = decompressFrame(frame, c.length, into);
  } catch (err) {
    if (err instanceof FrameError) throw chunkRefused(i, err.message);
    throw err;
  }
  const actual = sha256Hex(data);
  if (actual !== c.sha256) {
    throw chunkRefused(i, 'its bytes do not match the SHA-256 the index signed', {
      expected: c.sha256,
      actual,
    });
  }
  return data;
}

/** A local chunk that no longer verifies: its frame alone, in one extra GET. */
async function fetchAlone(
  opts: ApplyDynamicOptions,
  i: number,
  stats: { wireBytes: number; requests: number },
  scratch: Scratch,
): Promise<Buffer> {
  const frame = opts.index.frames[opts.index.chunks[i]!.frame]!;
  const range = { start: frame.offset, end: frame.offset + frame.length };
  stats.requests++;
  const reader = new RangeReader(await opts.fetchRange(range, opts.signal), {
    ...range,
    frames: [],
    index: -1,
  });
  try {
    const bytes = await reader.take(frame.offset, frame.length, scratch.frame);
    const data = decodeChunk(opts.index, i, bytes, scratch.chunk);
    await reader.finish();
    return data;
  } finally {
    stats.wireBytes += reader.received;
    reader.close();
  }
}

/**
 * The plan's ranges still needed from chunk `start` on. The first may be cut short at its front:
 * frames of it that chunks before `start` took are in the target already.
 */
function rangesFrom(opts: ApplyDynamicOptions, start: number): (PackRange & { index: number })[] {
  const { index, plan } = opts;
  let first = -1;
  let firstFrame = -1;
  for (let i = start; i < plan.steps.length; i++) {
    const step = plan.steps[i]!;
    if (step.kind === 'fetch') {
      first = step.range;
      firstFrame = index.chunks[i]!.frame;
      break;
    }
  }
  if (first < 0) return [];
  return plan.ranges.slice(first).map((r, k) => {
    if (k > 0) return { ...r, index: first + k };
    const at = r.frames.indexOf(firstFrame);
    return { start: index.frames[firstFrame]!.offset, end: r.end, frames: r.frames.slice(at), index: first };
  });
}

/** Hashes what a previous run wrote, so the whole-image hash covers it without trusting a saved state. */
async function hashPrefix(
  readAt: ReadAt,
  length: number,
  hash: ReturnType<typeof createHash>,
  signal?: AbortSignal,
): Promise<void> {
  const buf = Buffer.allocUnsafe(Math.min(length, 4 * 1024 * 1024));
  for (let at = 0; at < length;) {
    signal?.throwIfAborted();
    const n = await readAt(buf.subarray(0, Math.min(buf.length, length - at)), at);
    if (n === 0)
      throw new GantryError(
        'OTA_INSTALL_FAILED',
        `the target slot ends at ${at}; the journal says ${length}`,
      );
    hash.update(buf.subarray(0, n));
    at += n;
  }
}
