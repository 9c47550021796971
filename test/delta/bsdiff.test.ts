import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  BsdiffError,
  bsdiffDecode,
  bsdiffDecodePieces,
  bsdiffEncode,
  bsdiffInPlace,
  suffixArray,
} from '../../delta/hop/bsdiff.js';

function naiveSuffixArray(data: Buffer): number[] {
  const idx = Array.from({ length: data.length + 1 }, (_, i) => i);
  return idx.sort((a, b) => Buffer.compare(data.subarray(a), data.subarray(b)));
}

function roundTrip(old: Buffer, target: Buffer): Buffer {
  const patch = bsdiffEncode(old, target);
  expect(bsdiffDecode(old, patch, target.length).equals(target)).toBe(true);
  return patch;
}

/** A "binary": 4-byte little-endian addresses into itself, as code and relocation tables hold. */
function binary(base: number, words: number, insertAt: number, inserted: number): Buffer {
  const out = Buffer.alloc(words * 4 + inserted);
  let at = 0;
  for (let i = 0; i < words; i++) {
    if (i === insertAt) at += inserted; // new code: every later address moves by `inserted`
    const target = ((i * 2654435761) >>> 0) % words;
    out.writeUInt32LE(base + target * 4 + (target >= insertAt ? inserted : 0), at);
    at += 4;
  }
  return out;
}

describe('bsdiff encoding of hop BSDIFF operations', () => {
  it('should sort suffixes like a naive sort (SA-IS), on small alphabets where repeats abound', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 1, max: 256 }), (bytes, alphabet) => {
        const data = Buffer.from(bytes.map((b) => b % alphabet));
        expect([...suffixArray(data)]).toEqual(naiveSuffixArray(data));
      }),
      { numRuns: 300 },
    );
  });

  it('should rebuild the new bytes exactly from the old ones: random, empty, identical and edited inputs', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 3000 }),
        fc.array(
          fc.record({
            at: fc.nat(),
            cut: fc.nat({ max: 64 }),
            insert: fc.uint8Array({ maxLength: 64 }),
          }),
          { maxLength: 8 },
        ),
        fc.uint8Array({ maxLength: 500 }),
        (oldBytes, edits, unrelated) => {
          const old = Buffer.from(oldBytes);
          let target = Buffer.from(old);
          for (const e of edits) {
            const at = target.length ? e.at % target.length : 0;
            target = Buffer.concat([target.subarray(0, at), e.insert, target.subarray(at + e.cut)]);
          }
          roundTrip(old, target);
          roundTrip(old, Buffer.from(unrelated));
          roundTrip(Buffer.from(unrelated), target);
        },
      ),
      { numRuns: 200 },
    );
    roundTrip(Buffer.alloc(0), Buffer.alloc(0));
    roundTrip(Buffer.alloc(0), randomBytes(100));
    roundTrip(randomBytes(100), Buffer.alloc(0));
    roundTrip(Buffer.alloc(10_000), Buffer.alloc(12_000));
  });

  it('should give the same bytes decoded into pieces of any size, and fail the same way on a bad patch', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 3000 }),
        fc.uint8Array({ maxLength: 3000 }),
        fc.integer({ min: 1, max: 4000 }),
        (oldBytes, newBytes, pieceBytes) => {
          const old = Buffer.from(oldBytes);
          const patch = bsdiffEncode(old, Buffer.from(newBytes));
          const pieces: Buffer[] = [];
          for (const piece of bsdiffDecodePieces(old, patch, newBytes.length, Buffer.alloc(pieceBytes))) {
            expect(piece.length).toBeLessThanOrEqual(pieceBytes);
            pieces.push(Buffer.from(piece)); // the next piece overwrites this one
          }
          expect(Buffer.concat(pieces).equals(Buffer.from(newBytes))).toBe(true);
          const cut = patch.subarray(0, patch.length - 1);
          expect(() => [...bsdiffDecodePieces(old, cut, newBytes.length, Buffer.alloc(pieceBytes))]).toThrow(
            BsdiffError,
          );
        },
      ),
      { numRuns: 200 },
    );
  });

  it('should rebuild blocks rewritten in place from their byte-wise differences', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 2000 }),
        fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 }))),
        (bytes, edits) => {
          const old = Buffer.from(bytes);
          const target = Buffer.from(old);
          for (const [at, value] of edits) if (target.length) target[at % target.length] = value;
          expect(bsdiffDecode(old, bsdiffInPlace(old, target), target.length).equals(target)).toBe(true);
        },
      ),
    );
    expect(() => bsdiffInPlace(Buffer.alloc(3), Buffer.alloc(4))).toThrow(RangeError);
  });

  it('should carry a binary whose addresses all shifted as mostly-zero differences, not as new bytes', () => {
    const old = binary(0x400000, 20_000, 9_000, 0);
    const target = binary(0x400000, 20_000, 9_000, 96);
    const patch = roundTrip(old, target);
    // Nearly every word differs from its old version, yet the patch is mostly zero differences.
    const zeros = patch.reduce((n, b) => n + (b === 0 ? 1 : 0), 0);
    expect(zeros).toBeGreaterThan(patch.length * 0.6);
  });

  it('should refuse a patch that was tampered with, cut short, or given for another length', () => {
    const old = randomBytes(5000);
    const target = Buffer.concat([old.subarray(0, 2000), randomBytes(50), old.subarray(2100)]);
    const patch = bsdiffEncode(old, target);
    expect(() => bsdiffDecode(old, patch.subarray(0, patch.length - 1), target.length)).toThrow(BsdiffError);
    expect(() => bsdiffDecode(old, patch, target.length + 1)).toThrow(BsdiffError);
    expect(() => bsdiffDecode(old.subarray(0, 100), patch, target.length)).toThrow(BsdiffError);
    // Differences against old bytes that are not there (one control: 10 differences, no extra).
    const outside = Buffer.from([1, 10, 0, 10, 0, 0, ...new Array<number>(10).fill(0)]);
    expect(bsdiffDecode(Buffer.alloc(10, 7), outside, 10).equals(Buffer.alloc(10, 7))).toBe(true);
    expect(() => bsdiffDecode(Buffer.alloc(5), outside, 10)).toThrow('outside the old bytes');
    // A prefix byte shifts every stream: it does not account for its bytes.
    expect(() => bsdiffDecode(old, Buffer.concat([Buffer.from([0x00]), patch]), target.length)).toThrow(
      BsdiffError,
    );
  });
});
