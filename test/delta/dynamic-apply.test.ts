import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { isGantryError } from '../../core/errors.js';
import {
  applyDynamic,
  type DynamicCheckpoint,
  type FetchRange,
  type TargetSlot,
} from '../../delta/dynamic/applier.js';
import { parseChunkIndex, type ChunkIndex } from '../../delta/dynamic/chunk-index.js';
import {
  localChunksByReading,
  localChunksFromIndex,
  planDynamic,
  type DynamicPlan,
} from '../../delta/dynamic/planner.js';
import { buildDynamicArtifacts } from '../../delta/dynamic/publish.js';
import { makeTempDir } from '../helpers/temp.js';
import { fileReader, seededBytes, seededText, sha256 } from './helpers.js';

/**
 * Two images with what a minor update does to a root filesystem: files unchanged, a file grown
 * by an insertion, one edited in place, one shrunk, a new file present twice (hard to tell from
 * a copy), one replaced, zero-filled free space between them.
 */
function makeImages(dir: string): { v1: string; v2: string } {
  const a = seededText('a', 600_000);
  const b = seededBytes('b', 500_000);
  const c = seededText('c', 500_000);
  const d = seededBytes('d', 400_000);
  const e = seededBytes('e', 300_000);
  const fresh = seededText('new', 200_000);
  const v1 = Buffer.concat([a, b, Buffer.alloc(400_000), c, d, Buffer.alloc(300_000), e]);
  const a2 = Buffer.concat([a.subarray(0, 200_000), seededBytes('ins', 3000), a.subarray(200_000)]);
  seededBytes('edit', 1000).copy(a2, 450_000);
  const c2 = Buffer.concat([c.subarray(0, 100_000), c.subarray(105_000)]);
  const v2 = Buffer.concat([
    a2,
    b,
    Buffer.alloc(400_000),
    c2,
    fresh,
    d,
    fresh,
    Buffer.alloc(300_000),
    seededBytes('e2', 300_000),
  ]);
  fs.writeFileSync(path.join(dir, 'v1.img'), v1);
  fs.writeFileSync(path.join(dir, 'v2.img'), v2);
  return { v1: path.join(dir, 'v1.img'), v2: path.join(dir, 'v2.img') };
}

interface Published {
  indexFile: string;
  packFile: string;
  index: ChunkIndex;
}

async function publish(dir: string, image: string, name: string): Promise<Published> {
  const indexFile = path.join(dir, `${name}.cdx`);
  const packFile = path.join(dir, `${name}.pack`);
  await buildDynamicArtifacts(image, { indexFile, packFile }, { batchChunks: 64, concurrency: 2 });
  return { indexFile, packFile, index: parseChunkIndex(fs.readFileSync(indexFile)) };
}

/** Ranges served from the pack file, each request logged. */
function packFetcher(packFile: string, log: { start: number; end: number }[]): FetchRange {
  return (range) => {
    log.push(range);
    return Promise.resolve(fs.createReadStream(packFile, { start: range.start, end: range.end - 1 }));
  };
}

interface RecordingTarget extends TargetSlot {
  writes: { position: number; length: number }[];
  syncs: number;
  close(): void;
}

/** The inactive slot: a file holding an older image's leftovers (0xEE), written in place. */
function slotFile(file: string, size: number, fill = true): RecordingTarget {
  if (fill) fs.writeFileSync(file, Buffer.alloc(size, 0xee));
  const fd = fs.openSync(file, 'r+');
  const target: RecordingTarget = {
    writes: [],
    syncs: 0,
    write: (data, position) => {
      target.writes.push({ position, length: data.length });
      fs.writeSync(fd, data, 0, data.length, position);
      return Promise.resolve();
    },
    readAt: (into, position) => Promise.resolve(fs.readSync(fd, into, 0, into.length, position)),
    sync: () => {
      target.syncs++;
      fs.fsyncSync(fd);
      return Promise.resolve();
    },
    close: () => fs.closeSync(fd),
  };
  return target;
}

function fileSha(file: string): string {
  return sha256(fs.readFileSync(file));
}

describe('dynamic delta: plan and apply', () => {
  let dir: string;
  let images: { v1: string; v2: string };
  let v1: Published;
  let v2: Published;

  beforeAll(async () => {
    dir = makeTempDir('gantry-dynamic-');
    images = makeImages(dir);
    [v1, v2] = await Promise.all([publish(dir, images.v1, 'v1'), publish(dir, images.v2, 'v2')]);
  });

  async function plan(opts = { gapBytes: 0 }): Promise<DynamicPlan> {
    const src = fileReader(images.v1);
    try {
      return planDynamic(v2.index, await localChunksByReading(src.readAt, v2.index.chunker), opts);
    } finally {
      src.close();
    }
  }

  it('should publish an index whose chunks rebuild the image and a pack of each distinct chunk once', () => {
    const image = fs.readFileSync(images.v2);
    expect(v2.index.header.image).toEqual({ size: image.length, sha256: sha256(image) });
    for (const c of v2.index.chunks) {
      expect(sha256(image.subarray(c.offset, c.offset + c.length))).toBe(c.sha256);
    }
    expect(fs.statSync(v2.packFile).size).toBe(v2.index.header.pack.size);
    expect(new Set(v2.index.chunks.map((c) => c.sha256)).size).toBe(v2.index.frames.length);
    // Zero runs and the twice-present file are stored once.
    expect(v2.index.frames.length).toBeLessThan(v2.index.chunks.length);
  });

  it('should plan from a saved index exactly as from reading the slot', async () => {
    const byReading = await plan();
    expect(planDynamic(v2.index, localChunksFromIndex(v1.index), { gapBytes: 0 })).toEqual(byReading);
    const kinds = new Set(byReading.steps.map((s) => s.kind));
    expect(kinds).toEqual(new Set(['local', 'fetch', 'repeat']));
    // What changed is fetched, what did not is copied: most of the image stays local.
    expect(byReading.localBytes).toBeGreaterThan(v2.index.header.image.size / 2);
    expect(byReading.fetchBytes).toBe(byReading.frameBytes);
    expect(byReading.fetchBytes).toBeLessThan(v2.index.header.pack.size / 2);
  });

  it('should merge ranges across small gaps and hold a request budget', async () => {
    const exact = await plan({ gapBytes: 0 });
    const merged = await plan({ gapBytes: 1 << 20 });
    expect(merged.ranges.length).toBeLessThan(exact.ranges.length);
    expect(merged.fetchBytes).toBeGreaterThan(exact.fetchBytes);
    expect(merged.frameBytes).toBe(exact.frameBytes);
    const capped = planDynamic(v2.index, localChunksFromIndex(v1.index), { gapBytes: 0, maxRequests: 2 });
    expect(capped.ranges).toHaveLength(2);
    const one = planDynamic(v2.index, localChunksFromIndex(v1.index), { gapBytes: 0, maxRequests: 1 });
    expect(one.ranges).toHaveLength(1);
    // Every range is one contiguous span of the pack, starting and ending on a needed frame.
    for (const r of capped.ranges) {
      expect(v2.index.frames[r.frames[0]!]!.offset).toBe(r.start);
      const last = v2.index.frames[r.frames.at(-1)!]!;
      expect(last.offset + last.length).toBe(r.end);
    }
  });

  it('should write the target image, fetching only the planned ranges and leaving the source untouched', async () => {
    const p = await plan({ gapBytes: 16 * 1024 });
    const sourceBefore = fileSha(images.v1);
    const src = fileReader(images.v1);
    const target = slotFile(path.join(dir, 'slot-b'), v2.index.header.image.size);
    const log: { start: number; end: number }[] = [];
    const checkpoints: DynamicCheckpoint[] = [];
    try {
      const result = await applyDynamic({
        index: v2.index,
        plan: p,
        source: src.readAt,
        target,
        fetchRange: packFetcher(v2.packFile, log),
        checkpoint: (cp) => {
          checkpoints.push(cp);
          return Promise.resolve();
        },
      });
      expect(result.sha256).toBe(v2.index.header.image.sha256);
      expect(result.requests).toBe(p.ranges.length);
      expect(result.wireBytes).toBe(p.fetchBytes);
      expect(result.repairedChunks).toBe(0);
    } finally {
      src.close();
      target.close();
    }
    expect(fileSha(path.join(dir, 'slot-b'))).toBe(fileSha(images.v2));
    expect(fileSha(images.v1)).toBe(sourceBefore);
    expect(log).toEqual(p.ranges.map((r) => ({ start: r.start, end: r.end })));
    // A checkpoint after each range, each after a sync, the last at the end.
    expect(checkpoints.length).toBeGreaterThanOrEqual(p.ranges.length);
    expect(target.syncs).toBe(checkpoints.length);
    expect(checkpoints.at(-1)!.nextChunk).toBe(v2.index.chunks.length);
  });

  it('should write a repeated chunk while the slot writer has not flushed its first copy', async () => {
    const p = await plan({ gapBytes: 16 * 1024 });
    // The new file is in v2 twice: its chunks are fetched once, then repeated.
    expect(p.steps.some((step) => step.kind === 'repeat')).toBe(true);
    const file = path.join(dir, 'slot-lazy');
    const inner = slotFile(file, v2.index.header.image.size);
    // A writer that holds its writes until synced (as the slot writer's blocks before they are
    // written out): reading back before a sync sees the slot's old bytes.
    const pending: { data: Buffer; position: number }[] = [];
    const lazy: TargetSlot = {
      write: (data, position) => {
        pending.push({ data: Buffer.from(data), position });
        return Promise.resolve();
      },
      readAt: inner.readAt,
      sync: async () => {
        for (const w of pending.splice(0)) await inner.write(w.data, w.position);
        await inner.sync();
      },
    };
    const src = fileReader(images.v1);
    try {
      const result = await applyDynamic({
        index: v2.index,
        plan: p,
        source: src.readAt,
        target: lazy,
        fetchRange: packFetcher(v2.packFile, []),
      });
      await lazy.sync();
      expect(result.sha256).toBe(v2.index.header.image.sha256);
    } finally {
      src.close();
      inner.close();
    }
    expect(fileSha(file)).toBe(fileSha(images.v2));
  });

  it('should refuse a tampered chunk before writing any of it', async () => {
    const p = await plan({ gapBytes: 0 });
    const tamperedPack = path.join(dir, 'tampered.pack');
    const pack = fs.readFileSync(v2.packFile);
    // Flip a byte in the middle of the second fetched frame.
    const victim = p.steps.map((s, i) => (s.kind === 'fetch' ? i : -1)).filter((i) => i >= 0)[1]!;
    const frame = v2.index.frames[v2.index.chunks[victim]!.frame]!;
    const flip = frame.offset + (frame.length >> 1);
    pack[flip] = pack[flip]! ^ 0x40;
    fs.writeFileSync(tamperedPack, pack);
    const src = fileReader(images.v1);
    const target = slotFile(path.join(dir, 'slot-tampered'), v2.index.header.image.size);
    let error: unknown;
    try {
      await applyDynamic({
        index: v2.index,
        plan: p,
        source: src.readAt,
        target,
        fetchRange: packFetcher(tamperedPack, []),
      });
    } catch (err) {
      error = err;
    } finally {
      src.close();
      target.close();
    }
    expect(isGantryError(error) && error.gantryCode).toBe('OTA_INVALID_IMAGE');
    expect((error as Error).message).toMatch(new RegExp(`^chunk ${victim} refused`));
    const victimOffset = v2.index.chunks[victim]!.offset;
    expect(target.writes.length).toBe(victim);
    expect(target.writes.every((w) => w.position + w.length <= victimOffset)).toBe(true);
    // The slot still holds its old bytes where the refused chunk would have gone.
    const slot = fs.readFileSync(path.join(dir, 'slot-tampered'));
    expect(
      slot.subarray(victimOffset, victimOffset + v2.index.chunks[victim]!.length).every((x) => x === 0xee),
    ).toBe(true);
  });

  it('should resume from its checkpoint after a crash, fetching again at most one range', async () => {
    const p = await plan({ gapBytes: 16 * 1024 });
    expect(p.ranges.length).toBeGreaterThanOrEqual(4);
    const slot = path.join(dir, 'slot-resume');
    const log: { start: number; end: number }[] = [];
    let journal: DynamicCheckpoint | null = null;
    const crashing: FetchRange = (range, signal) => {
      // The connection drops in the middle of the fourth range: the process dies there.
      if (log.length === 3) {
        log.push(range);
        const stream = fs.createReadStream(v2.packFile, { start: range.start, end: range.end - 1 });
        let sent = 0;
        stream.on('data', (chunk) => {
          sent += chunk.length;
          if (sent > (range.end - range.start) / 2) stream.destroy(new Error('connection reset'));
        });
        return Promise.resolve(stream);
      }
      return packFetcher(v2.packFile, log)(range, signal);
    };
    const src = fileReader(images.v1);
    let target = slotFile(slot, v2.index.header.image.size);
    await expect(
      applyDynamic({
        index: v2.index,
        plan: p,
        source: src.readAt,
        target,
        fetchRange: crashing,
        checkpoint: (cp) => {
          journal = cp;
          return Promise.resolve();
        },
      }),
    ).rejects.toThrow(/connection reset/);
    target.close();
    expect(journal).not.toBeNull();
    const resumeFrom = (journal as DynamicCheckpoint | null)!.nextChunk;
    expect(resumeFrom).toBeGreaterThan(0);

    const resumedLog: { start: number; end: number }[] = [];
    target = slotFile(slot, v2.index.header.image.size, false);
    try {
      const result = await applyDynamic({
        index: v2.index,
        plan: p,
        source: src.readAt,
        target,
        fetchRange: packFetcher(v2.packFile, resumedLog),
        resumeFrom,
      });
      expect(result.sha256).toBe(v2.index.header.image.sha256);
      // Only what was not in the target yet: the range that broke, then the rest.
      const firstRun = log.slice(0, 3).reduce((s, r) => s + r.end - r.start, 0);
      const secondRun = resumedLog.reduce((s, r) => s + r.end - r.start, 0);
      const broken = p.ranges[3]!;
      expect(firstRun + secondRun).toBeLessThanOrEqual(p.fetchBytes + (broken.end - broken.start));
      expect(resumedLog.length).toBe(p.ranges.length - 3);
      expect(target.writes[0]!.position).toBe(v2.index.chunks[resumeFrom]!.offset);
    } finally {
      src.close();
      target.close();
    }
    expect(fileSha(slot)).toBe(fileSha(images.v2));
  });

  it('should fetch a chunk the active slot no longer holds as its saved index says', async () => {
    // The saved index says v1; the slot was changed since (a hand edit, a repaired filesystem).
    const modified = path.join(dir, 'v1-modified.img');
    const bytes = fs.readFileSync(images.v1);
    const p = planDynamic(v2.index, localChunksFromIndex(v1.index), { gapBytes: 0 });
    const local = p.steps.map((s, i) => ({ s, i })).filter(({ s }) => s.kind === 'local');
    const victim = local[Math.floor(local.length / 2)]!;
    const at = (victim.s as { sourceOffset: number }).sourceOffset;
    bytes[at + 10] = bytes[at + 10]! ^ 0xff;
    fs.writeFileSync(modified, bytes);
    const src = fileReader(modified);
    const target = slotFile(path.join(dir, 'slot-repair'), v2.index.header.image.size);
    const log: { start: number; end: number }[] = [];
    try {
      const result = await applyDynamic({
        index: v2.index,
        plan: p,
        source: src.readAt,
        target,
        fetchRange: packFetcher(v2.packFile, log),
      });
      expect(result.repairedChunks).toBeGreaterThanOrEqual(1);
      expect(result.requests).toBe(p.ranges.length + result.repairedChunks);
      expect(result.wireBytes).toBeGreaterThan(p.fetchBytes);
    } finally {
      src.close();
      target.close();
    }
    expect(fileSha(path.join(dir, 'slot-repair'))).toBe(fileSha(images.v2));
  });

  it('should stop when cancelled, with nothing written after the cancel', async () => {
    const p = await plan({ gapBytes: 0 });
    const src = fileReader(images.v1);
    const target = slotFile(path.join(dir, 'slot-cancel'), v2.index.header.image.size);
    const controller = new AbortController();
    let progressCalls = 0;
    try {
      await expect(
        applyDynamic({
          index: v2.index,
          plan: p,
          source: src.readAt,
          target,
          fetchRange: packFetcher(v2.packFile, []),
          signal: controller.signal,
          onProgress: () => {
            if (++progressCalls === 5) controller.abort(new Error('cancelled by operator'));
          },
        }),
      ).rejects.toThrow(/cancelled by operator/);
    } finally {
      src.close();
      target.close();
    }
    expect(target.writes).toHaveLength(5);
  });
});
