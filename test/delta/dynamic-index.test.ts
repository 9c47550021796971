import { describe, expect, it } from 'vitest';
import { isGantryError } from '../../core/errors.js';
import {
  encodeChunkIndex,
  INDEX_FORMAT,
  maxFrameLength,
  parseChunkIndex,
  RECORD_BYTES,
} from '../../delta/dynamic/chunk-index.js';
import { CHUNKER_V1 } from '../../delta/dynamic/chunker.js';
import { decompressFrame, FrameError, zstdContentSize } from '../../delta/dynamic/frames.js';
import { sha256 } from './helpers.js';

const A = sha256(Buffer.from('a'));
const B = sha256(Buffer.from('b'));
const C = sha256(Buffer.from('c'));

function header(image: number, pack: number): Parameters<typeof encodeChunkIndex>[0] {
  return {
    chunker: CHUNKER_V1.name,
    compression: 'zstd',
    image: { size: image, sha256: A },
    pack: { size: pack },
  };
}

/** Builds index bytes without the encoder's own check, to feed the parser what a forger would. */
function rawIndex(head: Record<string, unknown>, records: [number, number, string][]): Buffer {
  const json = Buffer.from(JSON.stringify(head));
  const out = Buffer.alloc(8 + json.length + records.length * RECORD_BYTES);
  out.write('GCIX', 0, 'latin1');
  out.writeUInt32BE(json.length, 4);
  json.copy(out, 8);
  records.forEach(([length, frame, hash], i) => {
    const at = 8 + json.length + i * RECORD_BYTES;
    out.writeUInt32BE(length, at);
    out.writeUInt32BE(frame, at + 4);
    out.write(hash, at + 8, 32, 'hex');
  });
  return out;
}

function refusal(bytes: Buffer): string {
  try {
    parseChunkIndex(bytes);
  } catch (err) {
    if (isGantryError(err) && err.gantryCode === 'OTA_INVALID_IMAGE') return err.message;
    throw err;
  }
  throw new Error('the index was accepted');
}

const goodHead = (image: number, pack: number, chunks: number): Record<string, unknown> => ({
  format: INDEX_FORMAT,
  ...header(image, pack),
  chunks,
});

describe('chunk index (gantry-chunk-index-v1)', () => {
  it('should round-trip chunks, repeats and frame offsets in 40 bytes a chunk', () => {
    const chunks = [
      { length: 8192, sha256: A, frameLength: 100 },
      { length: 5000, sha256: B, frameLength: 70 },
      { length: 8192, sha256: A, frameLength: 0 },
      { length: 300, sha256: C, frameLength: 20 },
    ];
    const bytes = encodeChunkIndex(header(21_684, 190), chunks);
    const index = parseChunkIndex(bytes);
    expect(index.chunks.map((c) => [c.offset, c.length, c.sha256, c.frame])).toEqual([
      [0, 8192, A, 0],
      [8192, 5000, B, 1],
      [13192, 8192, A, 0],
      [21384, 300, C, 2],
    ]);
    expect(index.frames).toEqual([
      { offset: 0, length: 100, chunk: 0 },
      { offset: 100, length: 70, chunk: 1 },
      { offset: 170, length: 20, chunk: 3 },
    ]);
    expect(index.chunker).toBe(CHUNKER_V1);
    expect(bytes.length - bytes.readUInt32BE(4) - 8).toBe(4 * RECORD_BYTES);
  });

  it('should refuse bytes that are not an index, or whose header is not one it knows', () => {
    expect(refusal(Buffer.from('PK\x03\x04 not an index'))).toMatch(/bad magic/);
    const notJson = Buffer.from('GCIX\x00\x00\x00\x03{{{');
    expect(refusal(notJson)).toMatch(/not JSON/);
    const huge = Buffer.from('GCIX\x7f\x00\x00\x00{}');
    expect(refusal(huge)).toMatch(/header length/);
    expect(refusal(rawIndex({ ...goodHead(0, 0, 0), format: 'gantry-chunk-index-v9' }, []))).toMatch(
      /format/,
    );
    expect(refusal(rawIndex({ ...goodHead(0, 0, 0), chunker: 'rabin-v1' }, []))).toMatch(
      /chunker: is not a chunker this gateway knows/,
    );
    expect(refusal(rawIndex({ ...goodHead(0, 0, 0), extra: 1 }, []))).toMatch(/extra/);
  });

  it('should refuse records that do not add up', () => {
    // Record count against the header.
    expect(refusal(rawIndex(goodHead(8192, 10, 2), [[8192, 10, A]]))).toMatch(/chunk records for 2 chunks/);
    // Lengths must cover the image, frames the pack.
    expect(refusal(rawIndex(goodHead(9000, 10, 1), [[8192, 10, A]]))).toMatch(
      /cover 8192 bytes; the image has 9000/,
    );
    expect(refusal(rawIndex(goodHead(8192, 11, 1), [[8192, 10, A]]))).toMatch(
      /frames cover 10 bytes; the pack has 11/,
    );
    // A repeat must name bytes that came before, with a frame.
    expect(refusal(rawIndex(goodHead(8192, 0, 1), [[8192, 0, A]]))).toMatch(/no frame before it/);
    // The same bytes twice in the pack.
    expect(
      refusal(
        rawIndex(goodHead(16384, 20, 2), [
          [8192, 10, A],
          [8192, 10, A],
        ]),
      ),
    ).toMatch(/second frame/);
    // Chunk sizes within the chunker's bounds (only the last may be short).
    expect(
      refusal(
        rawIndex(goodHead(8292, 20, 2), [
          [100, 10, A],
          [8192, 10, B],
        ]),
      ),
    ).toMatch(/chunk 0 has length 100/);
    expect(refusal(rawIndex(goodHead(70_000, 10, 1), [[70_000, 10, A]]))).toMatch(/chunk 0 has length 70000/);
    // A frame no honest compressor makes (a decompression bomb needs room).
    const big = maxFrameLength(CHUNKER_V1.maxSize) + 1;
    expect(refusal(rawIndex(goodHead(8192, big, 1), [[8192, big, A]]))).toMatch(/frame of \d+ bytes exceeds/);
  });
});

describe('chunk frames', () => {
  // `zstd -19 --no-check` of a file holding 'hello gantry hello gantry' (content size 25 in the
  // header); from a pipe the CLI leaves the size out.
  const frame = Buffer.from('KLUv/SAZnQAAaGhlbGxvIGdhbnRyeSABAMDNLw==', 'base64');
  const sizeless = Buffer.from('KLUv/QBonQAAaGhlbGxvIGdhbnRyeSABAMDNLw==', 'base64');

  it('should decompress a frame to exactly the length the index gives', () => {
    expect(zstdContentSize(frame)).toBe(25);
    expect(decompressFrame(frame, 25).toString()).toBe('hello gantry hello gantry');
    expect(zstdContentSize(sizeless)).toBeNull();
  });

  it('should refuse a frame whose size disagrees with the index, or that is not zstd', () => {
    expect(() => decompressFrame(frame, 24)).toThrow(FrameError);
    expect(() => decompressFrame(frame, 26)).toThrow(/declares 25 bytes/);
    expect(() => decompressFrame(Buffer.from('not a zstd frame at all'), 23)).toThrow(/not a zstd frame/);
    const cut = frame.subarray(0, frame.length - 4);
    expect(() => decompressFrame(cut, 25)).toThrow(FrameError);
    // Without a declared size the output could not be bounded before decoding.
    expect(() => decompressFrame(sizeless, 25)).toThrow(/does not declare its content size/);
    // Two frames where one is due decode to more than the chunk.
    expect(() => decompressFrame(Buffer.concat([frame, frame]), 25)).toThrow(FrameError);
  });
});
