import { z } from 'zod';
import { GantryError } from '../../core/errors.js';
import { describeIssues } from '../../bundle/manifest.js';
import { Sha256Schema } from '../artifact.js';
import { CHUNKERS, type ChunkerParams } from './chunker.js';

/**
 * The chunk index of one image: its chunks in order (length and SHA-256 of the uncompressed
 * bytes) and where each chunk's compressed frame sits in the pack. It crosses metered links, so it
 * is binary; only a small JSON header is text (zod-parsed):
 *
 *   magic "GCIX" · u32 BE header length · header JSON · chunk records, 40 bytes each:
 *   u32 BE chunk length · u32 BE frame length · 32 bytes SHA-256 of the chunk
 *
 * Offsets are implied: a chunk starts where the previous one ended, and frames sit in the pack in
 * the order of their records. A frame length of 0 marks a chunk whose bytes already appeared
 * earlier in the image (zero runs, duplicate files): the pack holds each distinct chunk once.
 * The index is a feed target whose length and SHA-256 the signed manifest carries; it is parsed
 * only after that check, and parsing still refuses anything inconsistent.
 */
export const INDEX_FORMAT = 'gantry-chunk-index-v1';
export const INDEX_MAGIC = Buffer.from('GCIX', 'latin1');
export const RECORD_BYTES = 40;
/** Compressed frames carry the zstd frame format; nothing else is defined yet. */
export const FRAME_COMPRESSIONS = ['zstd'] as const;
export type FrameCompression = (typeof FRAME_COMPRESSIONS)[number];
/** A zstd frame of incompressible input is a little larger than the input (ZSTD_compressBound). */
export function maxFrameLength(maxChunk: number): number {
  return maxChunk + (maxChunk >> 8) + 1024;
}
const MAX_HEADER_BYTES = 4096;

const byteCount = z.int().nonnegative().max(Number.MAX_SAFE_INTEGER);

export const IndexHeaderSchema = z.lazy(() =>
  z.strictObject({
    format: z.literal(INDEX_FORMAT),
    chunker: z.string().refine((name) => name in CHUNKERS, 'is not a chunker this gateway knows'),
    compression: z.enum(FRAME_COMPRESSIONS),
    image: z.strictObject({ size: byteCount, sha256: Sha256Schema }),
    pack: z.strictObject({ size: byteCount }),
    chunks: z.int().nonnegative(),
  }),
);
export type IndexHeader = z.infer<typeof IndexHeaderSchema>;

/** One chunk of the image, with its frame in the pack. */
export interface IndexedChunk {
  offset: number;
  length: number;
  /** Lowercase hex SHA-256 of the uncompressed chunk. */
  sha256: string;
  /** The distinct chunk this one repeats or introduces (its frame). */
  frame: number;
}

/** One compressed frame of the pack, holding the first chunk with its content. */
export interface PackFrame {
  offset: number;
  length: number;
  /** The first chunk whose bytes it holds. */
  chunk: number;
}

export interface ChunkIndex {
  header: IndexHeader;
  chunker: Readonly<ChunkerParams>;
  chunks: IndexedChunk[];
  frames: PackFrame[];
}

function invalidIndex(message: string, details?: Record<string, unknown>): GantryError {
  return new GantryError('OTA_INVALID_IMAGE', `chunk index refused: ${message}`, details);
}

/** Serialises an index (the publisher's side). */
export function encodeChunkIndex(
  header: Omit<IndexHeader, 'format' | 'chunks'>,
  chunks: { length: number; sha256: string; frameLength: number }[],
): Buffer {
  const json = Buffer.from(JSON.stringify({ format: INDEX_FORMAT, ...header, chunks: chunks.length }));
  const out = Buffer.alloc(INDEX_MAGIC.length + 4 + json.length + chunks.length * RECORD_BYTES);
  INDEX_MAGIC.copy(out, 0);
  out.writeUInt32BE(json.length, 4);
  json.copy(out, 8);
  let at = 8 + json.length;
  for (const c of chunks) {
    out.writeUInt32BE(c.length, at);
    out.writeUInt32BE(c.frameLength, at + 4);
    out.write(c.sha256, at + 8, 32, 'hex');
    at += RECORD_BYTES;
  }
  // Catch a publisher bug here rather than on every gateway.
  parseChunkIndex(out);
  return out;
}

/**
 * Parses and checks an index: header fields, chunk lengths within the chunker's bounds and
 * summing to the image size, frame lengths within the compression bound and summing to the pack
 * size, each distinct chunk having exactly one frame (the first time it appears) and every
 * repeat naming a chunk seen before. Throws OTA_INVALID_IMAGE naming what is wrong.
 */
export function parseChunkIndex(bytes: Buffer): ChunkIndex {
  if (bytes.length < 8 || !bytes.subarray(0, 4).equals(INDEX_MAGIC)) {
    throw invalidIndex('not a Gantry chunk index (bad magic)');
  }
  const headerLength = bytes.readUInt32BE(4);
  if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > bytes.length) {
    throw invalidIndex(`header length ${headerLength} is out of bounds`);
  }
  let json: unknown;
  try {
    json = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  } catch {
    throw invalidIndex('header is not JSON');
  }
  const parsed = IndexHeaderSchema.safeParse(json);
  if (!parsed.success) throw invalidIndex(describeIssues(parsed.error));
  const header = parsed.data;
  const chunker = CHUNKERS[header.chunker]!;
  const tableStart = 8 + headerLength;
  if (bytes.length - tableStart !== header.chunks * RECORD_BYTES) {
    throw invalidIndex(
      `${bytes.length - tableStart} bytes of chunk records for ${header.chunks} chunks of ${RECORD_BYTES}`,
    );
  }

  const chunks: IndexedChunk[] = new Array<IndexedChunk>(header.chunks);
  const frames: PackFrame[] = [];
  const frameOf = new Map<string, number>();
  const frameLimit = maxFrameLength(chunker.maxSize);
  let offset = 0;
  let packOffset = 0;
  for (let i = 0; i < header.chunks; i++) {
    const at = tableStart + i * RECORD_BYTES;
    const length = bytes.readUInt32BE(at);
    const frameLength = bytes.readUInt32BE(at + 4);
    const sha256 = bytes.toString('hex', at + 8, at + RECORD_BYTES);
    const last = i === header.chunks - 1;
    // Only the last chunk may be shorter than the minimum: every other cut is at least min long.
    if (length === 0 || length > chunker.maxSize || (!last && length < chunker.minSize)) {
      throw invalidIndex(`chunk ${i} has length ${length}, outside the ${chunker.name} bounds`);
    }
    let frame = frameOf.get(sha256);
    if (frameLength === 0) {
      if (frame === undefined) throw invalidIndex(`chunk ${i} repeats a chunk that has no frame before it`);
      if (chunks[frames[frame]!.chunk]!.length !== length) {
        throw invalidIndex(`chunk ${i} repeats a chunk of another length`);
      }
    } else {
      if (frame !== undefined) throw invalidIndex(`chunk ${i} has a second frame for the same bytes`);
      if (frameLength > frameLimit) {
        throw invalidIndex(`chunk ${i}'s frame of ${frameLength} bytes exceeds ${frameLimit}`);
      }
      frame = frames.length;
      frames.push({ offset: packOffset, length: frameLength, chunk: i });
      frameOf.set(sha256, frame);
      packOffset += frameLength;
    }
    chunks[i] = { offset, length, sha256, frame };
    offset += length;
  }
  if (offset !== header.image.size) {
    throw invalidIndex(`chunks cover ${offset} bytes; the image has ${header.image.size}`);
  }
  if (packOffset !== header.pack.size) {
    throw invalidIndex(`frames cover ${packOffset} bytes; the pack has ${header.pack.size}`);
  }
  return { header, chunker, chunks, frames };
}
