import fs from 'node:fs';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { Payload } from '../../bundle/manifest.js';
import { createHopPlan } from '../../delta/hop/apply.js';
import { buildHopDelta } from '../../delta/hop/build.js';
import type { DeltaContext, DeltaOutput } from '../../delta/path.js';
import { makeTempDir } from '../helpers/temp.js';
import { buildImagePair, sha256Of } from './images.js';

/** An output file written in order from an offset, like a slot writer (truncates past it). */
function fileOutput(file: string, offset: number): DeltaOutput {
  const fd = fs.openSync(file, fs.existsSync(file) ? 'r+' : 'w');
  fs.ftruncateSync(fd, offset);
  let at = offset;
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      fs.writeSync(fd, chunk, 0, chunk.length, at);
      at += chunk.length;
      cb();
    },
    final(cb) {
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      cb();
    },
  }) as DeltaOutput;
  Object.defineProperty(w, 'offset', { get: () => at });
  (w as { checkpoint: () => Promise<number> }).checkpoint = async () => {
    fs.fsyncSync(fd);
    return at;
  };
  return w;
}

function readRange(file: string, start: number, end: number): Readable {
  return fs.createReadStream(file, { start, end });
}

function context(
  dir: string,
  source: string,
  deltaFile: string,
  payload: Payload,
  signal = new AbortController().signal,
) {
  const out = path.join(dir, 'out.img');
  const workDir = path.join(dir, 'work');
  fs.mkdirSync(workDir, { recursive: true });
  const fetched: { start: number; end: number }[] = [];
  const ctx: DeltaContext = {
    payload,
    source: {
      size: fs.statSync(source).size,
      sha256: sha256Of(source),
      read: (s, e) => readRange(source, s, e),
      stateDir: null,
    },
    fetch: {
      open: async (ref, range) => {
        const size = fs.statSync(deltaFile).size;
        fetched.push({ start: range?.start ?? 0, end: range?.end ?? size });
        return fs.createReadStream(deltaFile, { start: range?.start ?? 0, end: (range?.end ?? size) - 1 });
      },
    },
    openOutput: async (offset) => fileOutput(out, offset),
    readOutput: (s, e) => readRange(out, s, e),
    workDir,
    outputStateDir: null,
    signal,
    onProgress: () => undefined,
  };
  return { ctx, out, fetched };
}

describe('hop deltas', () => {
  it('should rebuild the new ext4 image exactly from the old one, with file-aware PATCH operations, in a fraction of its size', async () => {
    const dir = makeTempDir();
    const { v1, v2 } = buildImagePair(dir);
    const deltaFile = path.join(dir, 'v1-v2.hop');
    const built = await buildHopDelta({ source: v1, target: v2, out: deltaFile, codec: 'zstd' });
    expect(built.mode).toBe('ext4');
    expect(built.ops.PATCH).toBeGreaterThan(0);
    expect(built.ops.COPY).toBeGreaterThan(0);
    // The changed files are a few percent of the image; the delta must be far below its size.
    expect(built.size).toBeLessThan(fs.statSync(v2).size / 20);

    const payload: Payload = {
      name: 'rootfs.img',
      kind: 'rootfs',
      size: built.target.size,
      sha256: built.target.sha256,
    };
    const ref = {
      source_sha256: built.source.sha256,
      source_version: 'v1.0.0',
      artifact: { target: 'v1-v2.hop', size: built.size, sha256: built.sha256 },
    };
    const { ctx, out, fetched } = context(dir, v1, deltaFile, payload);
    const before = sha256Of(v1);
    await createHopPlan(ref).apply(ctx);
    expect(sha256Of(out)).toBe(sha256Of(v2));
    expect(sha256Of(v1)).toBe(before);
    expect(fetched).toEqual([{ start: 0, end: built.size }]);
  });

  it('should work on any image in block mode', async () => {
    const dir = makeTempDir();
    const { v1, v2 } = buildImagePair(dir);
    const deltaFile = path.join(dir, 'v1-v2.hop');
    const built = await buildHopDelta({
      source: v1,
      target: v2,
      out: deltaFile,
      mode: 'blocks',
      codec: 'brotli',
    });
    expect(built.mode).toBe('blocks');
    expect(built.ops.PATCH).toBe(0);
    const payload: Payload = {
      name: 'rootfs.img',
      kind: 'rootfs',
      size: built.target.size,
      sha256: built.target.sha256,
    };
    const ref = {
      source_sha256: built.source.sha256,
      source_version: 'v1.0.0',
      artifact: { target: 'v1-v2.hop', size: built.size, sha256: built.sha256 },
    };
    const { ctx, out } = context(dir, v1, deltaFile, payload);
    await createHopPlan(ref).apply(ctx);
    expect(sha256Of(out)).toBe(sha256Of(v2));
  });

  it('should refuse a delta whose bytes do not match the signed hash before writing anything', async () => {
    const dir = makeTempDir();
    const { v1, v2 } = buildImagePair(dir);
    const deltaFile = path.join(dir, 'v1-v2.hop');
    const built = await buildHopDelta({ source: v1, target: v2, out: deltaFile });
    const bytes = fs.readFileSync(deltaFile);
    bytes[bytes.length - 10] = bytes[bytes.length - 10]! ^ 0xff;
    fs.writeFileSync(deltaFile, bytes);
    const payload: Payload = {
      name: 'rootfs.img',
      kind: 'rootfs',
      size: built.target.size,
      sha256: built.target.sha256,
    };
    const ref = {
      source_sha256: built.source.sha256,
      source_version: 'v1.0.0',
      artifact: { target: 'v1-v2.hop', size: built.size, sha256: built.sha256 },
    };
    const { ctx, out } = context(dir, v1, deltaFile, payload);
    await expect(createHopPlan(ref).apply(ctx)).rejects.toMatchObject({ gantryCode: 'OTA_INVALID_IMAGE' });
    expect(fs.existsSync(out)).toBe(false);
  });

  it('should never apply a delta made from another source image', async () => {
    const dir = makeTempDir();
    const { v1, v2 } = buildImagePair(dir);
    const deltaFile = path.join(dir, 'v1-v2.hop');
    const built = await buildHopDelta({ source: v1, target: v2, out: deltaFile });
    const payload: Payload = {
      name: 'rootfs.img',
      kind: 'rootfs',
      size: built.target.size,
      sha256: built.target.sha256,
    };
    const ref = {
      source_sha256: built.source.sha256,
      source_version: 'v1.0.0',
      artifact: { target: 'v1-v2.hop', size: built.size, sha256: built.sha256 },
    };
    // The "active slot" is v2 itself: not the delta's source.
    const { ctx, out, fetched } = context(dir, v2, deltaFile, payload);
    await expect(createHopPlan(ref).apply(ctx)).rejects.toMatchObject({ gantryCode: 'OTA_INVALID_IMAGE' });
    expect(fetched).toEqual([]);
    expect(fs.existsSync(out)).toBe(false);
  });
});
