import { createHash } from 'node:crypto';
import type { DynamicRef } from '../../bundle/manifest.js';
import { GantryError, isGantryError } from '../../core/errors.js';
import { consumeChunks } from '../../core/lending.js';
import { parseChunkIndex, type ChunkIndex } from '../dynamic/chunk-index.js';
import { decompressFrame, FrameError } from '../dynamic/frames.js';
import { mergeRanges } from '../dynamic/planner.js';
import { fetchIndex } from '../dynamic/provider.js';
import type { DeltaContext } from '../path.js';

/**
 * Two needed frames this close in the pack share one GET (as the dynamic path's default: a round
 * trip on a slow link is worth more than a few KiB).
 */
const GAP_BYTES = 8 * 1024;

/**
 * Repairs a hop operation whose source bytes the active slot no longer holds (a live root rewrites
 * its superblock, journal, /etc, /var): the operation's output range of the target image is
 * rebuilt from the bundle's dynamic artifacts. The signed chunk index (fetched once, verified
 * against the manifest's length and SHA-256, kept in the job's work directory so a resume does not
 * fetch it again) maps target offsets to chunks; only the frames of the chunks covering that range
 * are fetched, in single-range GETs merged across small gaps, and each chunk is checked against
 * its signed SHA-256 before any of its bytes are used. The caller still checks the operation's
 * output digest, and the whole image's hash at the end.
 */
export class ChunkRepair {
  /** undefined: not loaded yet; null: the bundle's index is not usable (the delta falls back). */
  private index: ChunkIndex | null | undefined;
  /** The chunk that straddles the end of the last repaired range: the next op starts in it. */
  private carried: { chunk: number; data: Buffer } | null = null;
  /** Bytes received for repairs by this run (the index included). */
  wireBytes = 0;
  requests = 0;

  constructor(
    private readonly ref: DynamicRef,
    private readonly ctx: DeltaContext,
  ) {}

  /** Whether repairs are possible: the index verifies and describes the image being built. */
  async available(): Promise<boolean> {
    if (this.index !== undefined) return this.index !== null;
    let index: ChunkIndex | null = null;
    try {
      const fetched = await fetchIndex(this.ref, this.ctx);
      this.wireBytes += fetched.wireBytes;
      if (fetched.wireBytes > 0) this.requests++;
      const parsed = parseChunkIndex(fetched.bytes);
      const { image, pack } = parsed.header;
      if (
        image.size === this.ctx.payload.size &&
        image.sha256 === this.ctx.payload.sha256 &&
        pack.size === this.ref.pack.size
      ) {
        index = parsed;
      }
    } catch (err) {
      // An index that does not verify is not used; a network failure is retried by the pipeline.
      if (!isGantryError(err) || err.gantryCode !== 'OTA_INVALID_IMAGE') throw err;
    }
    this.index = index;
    return index !== null;
  }

  /**
   * Target image bytes [start, start + length), from verified chunks. Call `available()` first.
   * `local`: what the active slot gave for this range (a COPY's source bytes): a chunk lying
   * wholly inside the range whose local bytes match its signed SHA-256 is taken from there, so
   * a long COPY with one changed block fetches the chunks around that block only.
   */
  async fill(start: number, length: number, local: Buffer | null = null): Promise<Buffer> {
    const index = this.index;
    if (!index) throw new Error('chunk repair used without an index');
    const end = start + length;
    if (end > index.header.image.size) {
      throw new GantryError('OTA_INVALID_IMAGE', 'a hop operation writes past the image the index describes');
    }
    const out = Buffer.alloc(length);
    const chunks = index.chunks;
    const wanted: number[] = [];
    for (let i = firstChunkEndingAfter(index, start); i < chunks.length && chunks[i]!.offset < end; i++) {
      const c = chunks[i]!;
      if (local && c.offset >= start && c.offset + c.length <= end) {
        const mine = local.subarray(c.offset - start, c.offset - start + c.length);
        if (createHash('sha256').update(mine).digest('hex') === c.sha256) {
          mine.copy(out, c.offset - start);
          continue;
        }
      }
      wanted.push(i);
    }
    const place = (frame: number, data: Buffer): void => {
      for (const i of wanted) {
        const c = chunks[i]!;
        if (c.frame !== frame) continue;
        const from = Math.max(start, c.offset);
        const to = Math.min(end, c.offset + c.length);
        data.copy(out, from - start, from - c.offset, to - c.offset);
      }
    };
    const carried = this.carried;
    const frames = [...new Set(wanted.map((i) => chunks[i]!.frame))]
      .filter((f) => !(carried && chunks[carried.chunk]!.frame === f))
      .sort((a, b) => a - b);
    if (carried && wanted.some((i) => chunks[i]!.frame === chunks[carried.chunk]!.frame)) {
      place(chunks[carried.chunk]!.frame, carried.data);
    }
    const last = wanted[wanted.length - 1];
    this.carried = null;
    for (const range of mergeRanges(index, frames, { gapBytes: GAP_BYTES })) {
      const bytes = await this.fetchRange(range.start, range.end);
      for (const f of range.frames) {
        const frame = index.frames[f]!;
        const data = verifiedChunk(
          index,
          frame.chunk,
          bytes.subarray(frame.offset - range.start, frame.offset - range.start + frame.length),
        );
        place(f, data);
        if (
          last !== undefined &&
          chunks[last]!.frame === f &&
          chunks[last]!.offset + chunks[last]!.length > end
        ) {
          this.carried = { chunk: last, data };
        }
      }
    }
    return out;
  }

  private async fetchRange(start: number, end: number): Promise<Buffer> {
    this.requests++;
    const body = await this.ctx.fetch.open(this.ref.pack, { start, end }, this.ctx.signal);
    const bytes = Buffer.alloc(end - start);
    let filled = 0;
    await consumeChunks(body, (chunk) => {
      this.wireBytes += chunk.length;
      if (filled + chunk.length > bytes.length) {
        throw new GantryError('OTA_DOWNLOAD_FAILED', `the server sent more than pack range ${start}-${end}`);
      }
      chunk.copy(bytes, filled);
      filled += chunk.length;
      return undefined;
    });
    if (filled !== bytes.length) {
      throw new GantryError('OTA_DOWNLOAD_FAILED', `pack range ${start}-${end} ended after ${filled} bytes`);
    }
    return bytes;
  }
}

/** The first chunk whose bytes reach past `offset` (binary search over the chunks' offsets). */
function firstChunkEndingAfter(index: ChunkIndex, offset: number): number {
  let lo = 0;
  let hi = index.chunks.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const c = index.chunks[mid]!;
    if (c.offset + c.length <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** One frame decompressed and checked against its chunk's signed SHA-256; nothing else is returned. */
function verifiedChunk(index: ChunkIndex, chunk: number, frame: Buffer): Buffer {
  const c = index.chunks[chunk]!;
  let data: Buffer;
  try {
    data = decompressFrame(frame, c.length);
  } catch (err) {
    if (err instanceof FrameError) {
      throw new GantryError('OTA_INVALID_IMAGE', `chunk ${chunk} refused: ${err.message}`, { chunk });
    }
    throw err;
  }
  const actual = createHash('sha256').update(data).digest('hex');
  if (actual !== c.sha256) {
    throw new GantryError(
      'OTA_INVALID_IMAGE',
      `chunk ${chunk} refused: its bytes do not match the SHA-256 the index signed`,
      { chunk, expected: c.sha256, actual },
    );
  }
  return data;
}
