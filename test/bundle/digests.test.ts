import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { inlineDigests, threadDigests, type BundleDigests } from '../../bundle/digests.js';
import { bytes } from './helpers.js';

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Feeds `data` split at `cuts`, a payload range begun when the stream reaches its start. */
async function digest(
  make: () => BundleDigests,
  data: Buffer,
  cuts: number[],
  range: { start: number; size: number },
): Promise<{ bundle: string | null; payload: string }> {
  const d = make();
  try {
    const points = [
      0,
      ...new Set([...cuts, range.start].filter((c) => c > 0 && c < data.length)),
      data.length,
    ];
    points.sort((a, b) => a - b);
    for (let i = 0; i + 1 < points.length; i++) {
      if (points[i] === range.start) d.beginPayload(range.start, range.size);
      d.update(data.subarray(points[i], points[i + 1]));
      await d.behind();
    }
    if (range.start === data.length) d.beginPayload(range.start, range.size);
    const payload = await d.payloadDigest();
    return { bundle: await d.bundleDigest(), payload };
  } finally {
    d.close();
  }
}

describe('bundle digests', () => {
  it.each([
    ['on this thread', inlineDigests],
    ['on a worker thread', threadDigests],
  ])(
    'should hash the whole stream and the payload range out of it, however split (%s)',
    async (_name, make) => {
      const data = bytes(300_000, 9);
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.integer({ min: 1, max: data.length - 1 }), { maxLength: 12 }),
          fc.integer({ min: 0, max: data.length }),
          fc.integer({ min: 0, max: 100_000 }),
          async (cuts, start, want) => {
            const size = Math.min(want, data.length - start);
            const got = await digest(make, data, cuts, { start, size });
            expect(got.bundle).toBe(sha256(data));
            expect(got.payload).toBe(sha256(data.subarray(start, start + size)));
          },
        ),
        { numRuns: make === threadDigests ? 15 : 100 },
      );
    },
  );

  it.each([
    ['on this thread', inlineDigests],
    ['on a worker thread', threadDigests],
  ])(
    'should hash only the payload range when made without the whole-bundle hash (%s)',
    async (_name, make) => {
      const data = bytes(200_000, 3);
      const got = await digest(() => make({ whole: false }), data, [70_000, 150_000], {
        start: 1000,
        size: 190_000,
      });
      expect(got.bundle).toBeNull();
      expect(got.payload).toBe(sha256(data.subarray(1000, 191_000)));
    },
  );

  it('should hold the caller back while 8 MiB wait at the thread, and grow its pool only for an oversized chunk', async () => {
    const d = threadDigests();
    try {
      const block = bytes(1024 * 1024, 4);
      let waited = 0;
      const whole = createHash('sha256');
      for (let i = 0; i < 40; i++) {
        d.update(block);
        whole.update(block);
        const behind = d.behind();
        if (behind) {
          waited++;
          await behind;
        }
      }
      expect(waited).toBeGreaterThan(0);
      // A chunk far larger than the blocks, passed without waiting: the pool grows, bytes stay right.
      const big = bytes(20 * 1024 * 1024, 5);
      d.update(big);
      whole.update(big);
      expect(await d.bundleDigest()).toBe(whole.digest('hex'));
    } finally {
      d.close();
    }
  });

  it('should wake every waiter when a block frees, and refuse to answer once closed', async () => {
    const d = threadDigests();
    const block = bytes(1024 * 1024, 6);
    while (!d.behind()) d.update(block);
    // Two waiters at once (never lost: each is woken when a block comes back).
    await Promise.all([d.behind(), d.behind()]);
    d.close();
    await expect(d.bundleDigest()).rejects.toThrow(/closed/);
    await expect(d.behind()).rejects.toThrow(/closed/);
    d.update(block); // after close: ignored, not thrown
  });
});
