import { createHash } from 'node:crypto';

/**
 * Content-defined chunking, FastCDC style (Xia et al., USENIX ATC 2016, "normalized chunking"):
 * a gear rolling hash `h = (h << 1) + GEAR[byte]` cut where its top bits are zero, with a
 * stricter mask before the average size and a looser one after it, so chunk sizes cluster around
 * the average. A boundary depends only on the bytes since the previous one, and the 32-bit hash
 * only on the last 32 bytes, so an insertion or deletion changes the chunks around it and the
 * boundaries after it fall back in step within a chunk or two.
 *
 * The gateway chunks its active slot with these parameters and matches the result against the
 * published index by hash: changing any of them (or the gear table) changes every boundary, so
 * they are frozen under a name that the index carries (CHUNKER_V1).
 */
export interface ChunkerParams {
  /** Name written into the index; a gateway only compares chunks cut by the same chunker. */
  name: string;
  minSize: number;
  avgSize: number;
  maxSize: number;
}

export const CHUNKER_V1: Readonly<ChunkerParams> = Object.freeze({
  name: 'gantry-fastcdc-v1',
  minSize: 4 * 1024,
  avgSize: 16 * 1024,
  maxSize: 64 * 1024,
});

/** The chunkers an index may name; an index naming another one is refused. */
export const CHUNKERS: Readonly<Record<string, Readonly<ChunkerParams>>> = Object.freeze({
  [CHUNKER_V1.name]: CHUNKER_V1,
});

/**
 * The gear table: GEAR[i] is the first four bytes (big-endian) of SHA-256("gantry-gear-v1/" + i).
 * Derived rather than pasted so it can be checked by anyone; the test pins its digest.
 */
export const GEAR: Readonly<Int32Array> = (() => {
  const table = new Int32Array(256);
  for (let i = 0; i < 256; i++) {
    table[i] = createHash('sha256').update(`gantry-gear-v1/${i}`).digest().readInt32BE(0);
  }
  return table;
})();

/** A mask of the `bits` most significant bits of a 32-bit word (they carry the most history). */
function topBits(bits: number): number {
  return (~0 << (32 - bits)) | 0;
}

export interface CutMasks {
  /** Before the average size: two bits more than log2(avg), so early cuts are rare. */
  strict: number;
  /** After it: two bits fewer, so a chunk rarely runs on to the maximum. */
  loose: number;
}

export function checkParams(p: ChunkerParams): CutMasks {
  const bits = Math.log2(p.avgSize);
  if (!Number.isInteger(bits) || bits < 6 || bits > 28) {
    throw new RangeError(
      `chunker ${p.name}: average size ${p.avgSize} is not a power of two in 64 B..256 MiB`,
    );
  }
  if (!(Number.isSafeInteger(p.minSize) && p.minSize > 0 && p.minSize < p.avgSize && p.avgSize < p.maxSize)) {
    throw new RangeError(`chunker ${p.name}: sizes must satisfy 0 < min < avg < max`);
  }
  return { strict: topBits(bits + 2), loose: topBits(bits - 2) };
}

/**
 * Length of the chunk starting at `start` in `data[start, end)`. `end - start` must reach
 * `maxSize` unless the input ends at `end`: the cut is then final (the same whatever follows).
 */
export function cutPoint(
  data: Uint8Array,
  start: number,
  end: number,
  p: ChunkerParams,
  masks: CutMasks,
): number {
  const available = end - start;
  if (available <= p.minSize) return available;
  const limit = start + Math.min(available, p.maxSize);
  const normal = start + Math.min(available, p.avgSize);
  const gear = GEAR;
  const { strict, loose } = masks;
  let h = 0;
  let i = start + p.minSize;
  for (; i < normal; i++) {
    h = ((h << 1) + gear[data[i]!]!) | 0;
    if ((h & strict) === 0) return i + 1 - start;
  }
  for (; i < limit; i++) {
    h = ((h << 1) + gear[data[i]!]!) | 0;
    if ((h & loose) === 0) return i + 1 - start;
  }
  return limit - start;
}

/** Chunk lengths of a whole buffer (tests, small inputs). */
export function chunkLengths(data: Uint8Array, p: ChunkerParams = CHUNKER_V1): number[] {
  const masks = checkParams(p);
  const lengths: number[] = [];
  for (let at = 0; at < data.length;) {
    const n = cutPoint(data, at, data.length, p, masks);
    lengths.push(n);
    at += n;
  }
  return lengths;
}

export interface ImageChunk {
  offset: number;
  length: number;
  /** Raw SHA-256 of the chunk's bytes. */
  sha256: Buffer;
}

/** The bytes of one chunk with where it sits, lent to the caller until it asks for the next. */
export interface ChunkWithData extends ImageChunk {
  data: Buffer;
}

/** Reads `length` bytes at `offset` into `into`; answers how many it read (0 at the end). */
export type ReadAt = (into: Buffer, offset: number) => Promise<number>;

/**
 * Chunks a source read block by block, hashing each chunk. Memory stays at one block plus one
 * maximum chunk whatever the source's size. The yielded `data` is a view into the working buffer,
 * valid until the next iteration.
 */
export async function* chunkSource(
  readAt: ReadAt,
  p: ChunkerParams = CHUNKER_V1,
  blockSize = 4 * 1024 * 1024,
): AsyncGenerator<ChunkWithData> {
  const masks = checkParams(p);
  const buf = Buffer.allocUnsafe(blockSize + p.maxSize);
  let filled = 0; // bytes held in buf
  let bufOffset = 0; // source offset of buf[0]
  let at = 0; // start of the next chunk in buf
  let eof = false;
  for (;;) {
    while (!eof && filled - at < p.maxSize) {
      if (at > 0) {
        buf.copyWithin(0, at, filled);
        filled -= at;
        bufOffset += at;
        at = 0;
      }
      const n = await readAt(buf.subarray(filled), bufOffset + filled);
      if (n === 0) eof = true;
      filled += n;
    }
    if (at === filled) return;
    const length = cutPoint(buf, at, filled, p, masks);
    const data = buf.subarray(at, at + length);
    yield { offset: bufOffset + at, length, sha256: createHash('sha256').update(data).digest(), data };
    at += length;
  }
}
