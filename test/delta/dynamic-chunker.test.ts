import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkParams,
  CHUNKER_V1,
  chunkLengths,
  chunkSource,
  GEAR,
  type ChunkerParams,
} from '../../delta/dynamic/chunker.js';
import { bufferReader, seededBytes, sha256 } from './helpers.js';

interface Cut {
  offset: number;
  length: number;
  sha256: string;
}

function cuts(data: Buffer, p: ChunkerParams = CHUNKER_V1): Cut[] {
  const out: Cut[] = [];
  let offset = 0;
  for (const length of chunkLengths(data, p)) {
    out.push({ offset, length, sha256: sha256(data.subarray(offset, offset + length)) });
    offset += length;
  }
  return out;
}

describe('dynamic chunker (FastCDC, gantry-fastcdc-v1)', () => {
  it('should keep the frozen gear table and parameters (a change breaks matching with every published index)', () => {
    const table = Buffer.alloc(256 * 4);
    GEAR.forEach((v, i) => table.writeInt32BE(v, i * 4));
    expect(sha256(table)).toBe('e20583fe5071968d15c234a436e576d62a6454abd562c17bf4b1fc418ef9958f');
    expect({ ...CHUNKER_V1 }).toEqual({
      name: 'gantry-fastcdc-v1',
      minSize: 4096,
      avgSize: 16384,
      maxSize: 65536,
    });
    // The table is what the format says: SHA-256("gantry-gear-v1/" + i), first four bytes.
    expect(GEAR[7]).toBe(createHash('sha256').update('gantry-gear-v1/7').digest().readInt32BE(0));
  });

  it('should cut the same boundaries as when the format was frozen', () => {
    const lengths = chunkLengths(seededBytes('pin', 1 << 20));
    expect(lengths.slice(0, 12)).toEqual([
      17601, 16363, 20679, 17499, 7694, 16611, 16577, 25465, 17698, 13939, 17935, 19083,
    ]);
    expect(lengths).toHaveLength(60);
  });

  it('should cover the input exactly, every chunk within min..max but the last', () => {
    const data = seededBytes('cover', 3 << 20);
    const lengths = chunkLengths(data);
    expect(lengths.reduce((a, b) => a + b, 0)).toBe(data.length);
    for (const n of lengths.slice(0, -1)) {
      expect(n).toBeGreaterThanOrEqual(CHUNKER_V1.minSize);
      expect(n).toBeLessThanOrEqual(CHUNKER_V1.maxSize);
    }
    // Normalized chunking: the mean sits near the average size.
    const mean = data.length / lengths.length;
    expect(mean).toBeGreaterThan(CHUNKER_V1.avgSize * 0.75);
    expect(mean).toBeLessThan(CHUNKER_V1.avgSize * 1.5);
  });

  it('should cut runs of one byte at the maximum size (zero-filled free space)', () => {
    const lengths = chunkLengths(Buffer.alloc(5 * CHUNKER_V1.maxSize + 100));
    expect(lengths).toEqual([...Array<number>(5).fill(CHUNKER_V1.maxSize), 100]);
  });

  it('should cut the same chunks streaming, whatever the read block size', async () => {
    const data = Buffer.concat([
      seededBytes('stream', 700_000),
      Buffer.alloc(300_000),
      seededBytes('tail', 12_345),
    ]);
    const whole = cuts(data);
    for (const block of [1, 4096, 65_536, 1 << 20]) {
      const streamed: Cut[] = [];
      // A reader that answers short reads, as a pipe or a slow device may.
      const short = bufferReader(data);
      const readAt = (into: Buffer, position: number): Promise<number> =>
        short(into.subarray(0, Math.min(into.length, 10_000 + (position % 3))), position);
      for await (const c of chunkSource(readAt, CHUNKER_V1, block)) {
        expect(sha256(c.data)).toBe(c.sha256.toString('hex'));
        streamed.push({ offset: c.offset, length: c.length, sha256: c.sha256.toString('hex') });
      }
      expect(streamed).toEqual(whole);
    }
  });

  it('should refuse parameters that cannot work', () => {
    expect(() => checkParams({ name: 'x', minSize: 1024, avgSize: 3000, maxSize: 9000 })).toThrow(
      /power of two/,
    );
    expect(() => checkParams({ name: 'x', minSize: 9000, avgSize: 8192, maxSize: 65536 })).toThrow(
      /min < avg < max/,
    );
  });

  it('should keep chunks away from an insertion or deletion unchanged (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 31 }),
        fc.integer({ min: 0, max: (1 << 20) - 1 }),
        fc.boolean(),
        fc.integer({ min: 1, max: 8192 }),
        (seed, at, insert, size) => {
          const data = seededBytes(seed, 1 << 20);
          const edited = insert
            ? Buffer.concat([data.subarray(0, at), seededBytes(`${seed}+`, size), data.subarray(at)])
            : Buffer.concat([data.subarray(0, at), data.subarray(Math.min(data.length, at + size))]);
          const before = cuts(data);
          const after = cuts(edited);
          // Every chunk that ends before the edit is cut exactly as before.
          const prefix = before.filter((c) => c.offset + c.length <= at);
          expect(after.slice(0, prefix.length)).toEqual(prefix);
          // Past the edit the boundaries fall back in step: once a boundary lines up again (shifted
          // by the edit), every later chunk is the same; and that happens within a few chunks.
          const shift = edited.length - data.length;
          const old = new Set(before.map((c) => `${c.offset + shift}:${c.sha256}`));
          const firstSame = after.findIndex(
            (c, k) => k >= prefix.length && old.has(`${c.offset}:${c.sha256}`),
          );
          const resynced = firstSame < 0 ? after.length : firstSame;
          for (const c of after.slice(resynced)) expect(old.has(`${c.offset}:${c.sha256}`)).toBe(true);
          expect(resynced - prefix.length).toBeLessThanOrEqual(24);
        },
      ),
      { numRuns: 60 },
    );
  });
});
