import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { Readable, Writable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import type { DeltaRef, Payload } from '../../bundle/manifest.js';
import { createHopPlan } from '../../delta/hop/apply.js';
import { isSourceMismatch } from '../../delta/hop/verify.js';
import { buildHopDelta } from '../../delta/hop/build.js';
import {
  carriesSourceDigest,
  decodeOpHeader,
  encodeHeader,
  encodeOpHeader,
  HOP_MAGIC,
  HopHeaderSchema,
  OP_HEADER_BYTES,
  OP_KINDS,
  SOURCE_DIGEST_BYTES,
  type HopHeader,
} from '../../delta/hop/format.js';
import { createDecompressor } from '../../bundle/compression.js';
import { openFileReadAt } from '../../core/lending.js';
import type { DeltaContext, DeltaOutput } from '../../delta/path.js';
import { makeTempDir } from '../helpers/temp.js';
import { seededBytes } from './helpers.js';
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
      openReadAt: () => openFileReadAt(source),
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

/** A delta's header and decoded body. */
async function decodeDelta(deltaFile: string): Promise<{ header: HopHeader; body: Buffer }> {
  const all = fs.readFileSync(deltaFile);
  const len = all.readUInt32BE(HOP_MAGIC.length);
  const start = HOP_MAGIC.length + 4;
  const header = HopHeaderSchema.parse(JSON.parse(all.subarray(start, start + len).toString('utf8')));
  const decoder = createDecompressor(header.codec, header.body_bytes);
  const body = Buffer.concat(await decoder.end(all.subarray(start + len)).toArray());
  return { header, body };
}

/** The bytes of the source image a delta's operations read (COPY outputs, PATCH and BSDIFF sources). */
async function sourceBytesUsed(deltaFile: string): Promise<number> {
  const { header, body } = await decodeDelta(deltaFile);
  let used = 0;
  for (let at = 0, i = 0; i < header.ops; i++) {
    const op = decodeOpHeader(body.subarray(at, at + OP_HEADER_BYTES));
    at += OP_HEADER_BYTES + (header.source_digests && carriesSourceDigest(op.kind) ? SOURCE_DIGEST_BYTES : 0);
    at += op.dataLen;
    if (op.kind === OP_KINDS.COPY) used += op.outLen;
    else if (op.kind === OP_KINDS.PATCH || op.kind === OP_KINDS.BSDIFF) used += op.srcLen;
  }
  return used;
}

/** One pair of images and their ext4 delta for the whole file (mkfs and the delta take seconds). */
let shared: {
  v1: string;
  v2: string;
  deltaFile: string;
  built: Awaited<ReturnType<typeof buildHopDelta>>;
};

beforeAll(async () => {
  const dir = makeTempDir();
  const { v1, v2 } = buildImagePair(dir);
  const deltaFile = path.join(dir, 'v1-v2.hop');
  const built = await buildHopDelta({ source: v1, target: v2, out: deltaFile });
  shared = { v1, v2, deltaFile, built };
}, 120_000);

/** The shared delta copied into a test's own directory (it may tamper with its copy). */
/** The payload a built delta writes and the manifest's reference to it (as published beside v1-v2.hop). */
function hopRefs(built: Awaited<ReturnType<typeof buildHopDelta>>): { payload: Payload; ref: DeltaRef } {
  return {
    payload: { name: 'rootfs.img', kind: 'rootfs', size: built.target.size, sha256: built.target.sha256 },
    ref: {
      source_sha256: built.source.sha256,
      source_version: 'v1.0.0',
      artifact: { target: 'v1-v2.hop', size: built.size, sha256: built.sha256 },
    },
  };
}

function ownCopy(): { dir: string; v1: string; v2: string; deltaFile: string; built: typeof shared.built } {
  const dir = makeTempDir();
  const deltaFile = path.join(dir, 'v1-v2.hop');
  fs.copyFileSync(shared.deltaFile, deltaFile);
  return { dir, v1: shared.v1, v2: shared.v2, deltaFile, built: shared.built };
}

describe('hop deltas', () => {
  it('should rebuild the new ext4 image exactly from the old one, with file-aware PATCH operations, in a fraction of its size', async () => {
    const { dir, v1, v2, deltaFile, built } = ownCopy();
    expect(built.mode).toBe('ext4');
    expect(built.ops.PATCH + built.ops.BSDIFF).toBeGreaterThan(0);
    expect(built.ops.COPY).toBeGreaterThan(0);
    // The changed files are a few percent of the image; the delta must be far below its size.
    expect(built.size).toBeLessThan(fs.statSync(v2).size / 20);
    // The body's brotli window is 4 MiB (WBITS 22 in the stream's first bits): the gateway's decoder
    // holds that much while it applies, not 16 MiB.
    const file = fs.readFileSync(deltaFile);
    expect(file[HOP_MAGIC.length + 4 + file.readUInt32BE(HOP_MAGIC.length)]! & 0x0f).toBe(
      1 | ((22 - 17) << 1),
    );

    const { payload, ref } = hopRefs(built);
    const { ctx, out, fetched } = context(dir, v1, deltaFile, payload);
    const before = sha256Of(v1);
    await createHopPlan(ref).apply(ctx);
    expect(sha256Of(out)).toBe(sha256Of(v2));
    expect(sha256Of(v1)).toBe(before);
    expect(fetched).toEqual([{ start: 0, end: built.size }]);
  });

  it('should read about the source bytes its operations use from the active slot, not a read-ahead at every jump', async () => {
    // A larger image than the shared pair: read-ahead at every jump costs 4 MiB each there.
    const dir = makeTempDir();
    const { v1, v2 } = buildImagePair(dir, 48);
    const deltaFile = path.join(dir, 'v1-v2.hop');
    const built = await buildHopDelta({ source: v1, target: v2, out: deltaFile });
    const { payload, ref } = hopRefs(built);
    const { ctx, out } = context(dir, v1, deltaFile, payload);
    let read = 0;
    const counted = {
      ...ctx,
      source: {
        ...ctx.source,
        read: (s: number, e: number) => {
          read += e - s + 1;
          return ctx.source.read(s, e);
        },
        openReadAt: async () => {
          const reader = await ctx.source.openReadAt();
          return {
            read: async (into: Buffer, position: number) => {
              const n = await reader.read(into, position);
              read += n;
              return n;
            },
            close: () => reader.close(),
          };
        },
      },
    };
    await createHopPlan(ref).apply(counted);
    expect(sha256Of(out)).toBe(sha256Of(v2));
    const used = await sourceBytesUsed(deltaFile);
    expect(read).toBeGreaterThanOrEqual(used / 2);
    // A run of COPYs one after the other reads ahead (4 MiB); a jump reads what it uses. Reading
    // ahead at every jump read 6.3 GB of the fixture's 512 MiB image.
    expect(read).toBeLessThanOrEqual(used + 4 * 1024 * 1024);
  });

  it('should still apply a delta whose PATCH and BSDIFF operations carry source digests (publishers before 2026-12-05)', async () => {
    const { dir, v1, v2, deltaFile, built } = ownCopy();
    // The same operations re-encoded the way the earlier publisher wrote them: the header flag,
    // and after each PATCH's and BSDIFF's header the first 16 bytes of its source's SHA-256.
    const { header, body } = await decodeDelta(deltaFile);
    const source = fs.readFileSync(v1);
    const parts: Buffer[] = [];
    let withDigest = 0;
    for (let at = 0, i = 0; i < header.ops; i++) {
      const op = decodeOpHeader(body.subarray(at, at + OP_HEADER_BYTES));
      at += OP_HEADER_BYTES;
      if (carriesSourceDigest(op.kind)) {
        const range = source.subarray(op.srcOffset, op.srcOffset + op.srcLen);
        op.sourceDigest = createHash('sha256').update(range).digest().subarray(0, SOURCE_DIGEST_BYTES);
        withDigest++;
      }
      parts.push(encodeOpHeader(op), body.subarray(at, at + op.dataLen));
      at += op.dataLen;
    }
    expect(withDigest).toBeGreaterThan(0);
    const newBody = Buffer.concat(parts);
    const old = path.join(dir, 'old-publisher.hop');
    fs.writeFileSync(
      old,
      Buffer.concat([
        encodeHeader({ ...header, source_digests: true, body_bytes: newBody.length }),
        zlib.brotliCompressSync(newBody),
      ]),
    );
    const { payload } = hopRefs(built);
    const { ctx, out } = context(dir, v1, old, payload);
    const ref: DeltaRef = {
      source_sha256: built.source.sha256,
      source_version: 'v1.0.0',
      artifact: { target: 'old-publisher.hop', size: fs.statSync(old).size, sha256: sha256Of(old) },
    };
    await createHopPlan(ref).apply(ctx);
    expect(sha256Of(out)).toBe(sha256Of(v2));
  });

  it('should apply to a source whose superblock and journal superblock a mount rewrote, without any repair', async () => {
    const { dir, v1, v2, deltaFile, built } = ownCopy();
    // What a mount writes in the block device's view: the superblock's mount time and count and
    // state, the journal superblock's sequence (no repair is possible here: none is passed).
    const mounted = path.join(dir, 'mounted.img');
    fs.copyFileSync(v1, mounted);
    const journalBlock = Number(
      /\d+/.exec(
        execFileSync('debugfs', ['-R', 'blocks <8>', mounted], {
          stdio: ['ignore', 'pipe', 'ignore'],
        }).toString(),
      )![0],
    );
    const fd = fs.openSync(mounted, 'r+');
    fs.writeSync(fd, Buffer.from([0x11, 0x22, 0x33, 0x44]), 0, 4, 1024 + 0x2c); // s_mtime
    fs.writeSync(fd, Buffer.from([0x05, 0x00]), 0, 2, 1024 + 0x34); // s_mnt_count
    fs.writeSync(fd, Buffer.from([0x00, 0x00, 0x00, 0x09]), 0, 4, journalBlock * 4096 + 24); // s_sequence
    fs.closeSync(fd);
    expect(sha256Of(mounted)).not.toBe(built.source.sha256);

    const { payload, ref } = hopRefs(built);
    const { ctx, out } = context(dir, mounted, deltaFile, payload);
    // The slot's record still names the image installed there.
    await createHopPlan(ref).apply({ ...ctx, source: { ...ctx.source, sha256: built.source.sha256 } });
    expect(sha256Of(out)).toBe(sha256Of(v2));
  });

  it('should work on any image in block mode', async () => {
    const dir = makeTempDir();
    const { v1, v2 } = shared;
    const deltaFile = path.join(dir, 'v1-v2.hop');
    const built = await buildHopDelta({
      source: v1,
      target: v2,
      out: deltaFile,
      mode: 'blocks',
      codec: 'brotli',
    });
    expect(built.mode).toBe('blocks');
    expect(built.size).toBeLessThan(fs.statSync(v2).size / 10);
    const { payload, ref } = hopRefs(built);
    const { ctx, out } = context(dir, v1, deltaFile, payload);
    await createHopPlan(ref).apply(ctx);
    expect(sha256Of(out)).toBe(sha256Of(v2));
  });

  it('should resume an interrupted apply from its journal, re-hashing the written prefix, to the exact image', async () => {
    const { dir, v1, v2, deltaFile, built } = ownCopy();
    const { payload, ref } = hopRefs(built);
    // First life: stopped right after its second checkpoint (as a kill would stop it).
    const abort = new AbortController();
    const first = context(dir, v1, deltaFile, payload, abort.signal);
    let checkpoints = 0;
    const journal = path.join(first.ctx.workDir, 'hop.journal.json');
    const onProgress = first.ctx.onProgress;
    const stopping = {
      ...first.ctx,
      onProgress: (p: { outputBytes: number; wireBytes: number }) => {
        onProgress(p);
        if (p.outputBytes > 0 && ++checkpoints === 2) abort.abort(new Error('killed'));
      },
    };
    await expect(createHopPlan(ref, null, { ops: 2 }).apply(stopping)).rejects.toThrow('killed');
    const kept = JSON.parse(fs.readFileSync(journal, 'utf8')) as { op: number; out: number };
    expect(kept.op).toBe(4);
    expect(kept.out).toBeGreaterThan(0);
    // The slot holds the journal's prefix, and garbage past it (a torn write) must not matter.
    fs.appendFileSync(first.out, Buffer.alloc(4096, 0xee));

    const second = context(dir, v1, deltaFile, payload);
    await createHopPlan(ref, null, { ops: 2 }).apply(second.ctx);
    expect(sha256Of(second.out)).toBe(sha256Of(v2));
    // The delta was already whole in the work directory: nothing fetched again.
    expect(second.fetched).toEqual([]);
    expect(fs.existsSync(journal)).toBe(false);
  });

  it('should refuse a delta whose bytes do not match the signed hash before writing anything', async () => {
    const { dir, v1, deltaFile, built } = ownCopy();
    const bytes = fs.readFileSync(deltaFile);
    bytes[bytes.length - 10] = bytes[bytes.length - 10]! ^ 0xff;
    fs.writeFileSync(deltaFile, bytes);
    const { payload, ref } = hopRefs(built);
    const { ctx, out } = context(dir, v1, deltaFile, payload);
    await expect(createHopPlan(ref).apply(ctx)).rejects.toMatchObject({ gantryCode: 'OTA_INVALID_IMAGE' });
    expect(fs.existsSync(out)).toBe(false);
  });

  it('should never apply a delta made from another source image', async () => {
    const { dir, v2, deltaFile, built } = ownCopy();
    const { payload, ref } = hopRefs(built);
    // The "active slot" is v2 itself: not the delta's source.
    const { ctx, out, fetched } = context(dir, v2, deltaFile, payload);
    await expect(createHopPlan(ref).apply(ctx)).rejects.toMatchObject({ gantryCode: 'OTA_INVALID_IMAGE' });
    expect(fetched).toEqual([]);
    expect(fs.existsSync(out)).toBe(false);
  });
});

describe('hop deltas: long COPY and ZERO operations, written in pieces', () => {
  /** 6 MiB of old image; the new one keeps its first 4 MiB, changes 8 KiB, ends in 1.5 MiB of zeros. */
  async function longOpsPair(): Promise<{
    dir: string;
    v1: string;
    v2: string;
    deltaFile: string;
    built: Awaited<ReturnType<typeof buildHopDelta>>;
  }> {
    const dir = makeTempDir();
    const old = seededBytes('long-ops', 6 * 1024 * 1024);
    const next = Buffer.from(old);
    seededBytes('long-ops-change', 8192).copy(next, 4 * 1024 * 1024);
    next.fill(0, next.length - 1536 * 1024);
    const v1 = path.join(dir, 'v1.img');
    const v2 = path.join(dir, 'v2.img');
    fs.writeFileSync(v1, old);
    fs.writeFileSync(v2, next);
    const deltaFile = path.join(dir, 'v1-v2.hop');
    const built = await buildHopDelta({ source: v1, target: v2, out: deltaFile, mode: 'blocks' });
    return { dir, v1, v2, deltaFile, built };
  }

  /** The first operation of `kind` longer than 1 MiB, and where its output starts. */
  async function longOp(
    deltaFile: string,
    kind: number,
  ): Promise<{ outAt: number; srcOffset: number; outLen: number }> {
    const { header, body } = await decodeDelta(deltaFile);
    let outAt = 0;
    for (let at = 0, i = 0; i < header.ops; i++) {
      const op = decodeOpHeader(body.subarray(at, at + OP_HEADER_BYTES));
      at += OP_HEADER_BYTES + op.dataLen;
      if (op.kind === kind && op.outLen > 1024 * 1024)
        return { outAt, srcOffset: op.srcOffset, outLen: op.outLen };
      outAt += op.outLen;
    }
    throw new Error(`no operation of kind ${kind} over 1 MiB`);
  }

  it('should give the exact image', async () => {
    const { dir, v1, v2, deltaFile, built } = await longOpsPair();
    await longOp(deltaFile, OP_KINDS.COPY);
    await longOp(deltaFile, OP_KINDS.ZERO);
    const { payload, ref } = hopRefs(built);
    const { ctx, out } = context(dir, v1, deltaFile, payload);
    await createHopPlan(ref).apply(ctx);
    expect(sha256Of(out)).toBe(sha256Of(v2));
  });

  it('should refuse a long COPY whose source changed as a source mismatch, before writing any of it', async () => {
    const { dir, v1, deltaFile, built } = await longOpsPair();
    const copy = await longOp(deltaFile, OP_KINDS.COPY);
    const fd = fs.openSync(v1, 'r+');
    fs.writeSync(fd, Buffer.from('live write'), 0, 10, copy.srcOffset + copy.outLen - 100_000);
    fs.closeSync(fd);
    const { payload, ref } = hopRefs(built);
    const { ctx, out } = context(dir, v1, deltaFile, payload);
    const failed = await createHopPlan(ref)
      .apply({ ...ctx, source: { ...ctx.source, sha256: built.source.sha256 } })
      .catch((err: unknown) => err);
    expect(isSourceMismatch(failed)).toBe(true);
    expect(fs.statSync(out).size).toBeLessThanOrEqual(copy.outAt);
  });

  it('should fail as a source mismatch when the source changes between the check and the copy of a long COPY', async () => {
    const { dir, v1, deltaFile, built } = await longOpsPair();
    const copy = await longOp(deltaFile, OP_KINDS.COPY);
    const { payload, ref } = hopRefs(built);
    const { ctx, out } = context(dir, v1, deltaFile, payload);
    // The running system writes into the COPY's source right after Gantry read its last piece once.
    const last = copy.srcOffset + copy.outLen - 1;
    let changed = false;
    const racing = {
      ...ctx,
      source: {
        ...ctx.source,
        openReadAt: async () => {
          const reader = await ctx.source.openReadAt();
          return {
            read: async (into: Buffer, position: number) => {
              const n = await reader.read(into, position);
              if (!changed && position <= last && last < position + n) {
                changed = true;
                const fd = fs.openSync(v1, 'r+');
                fs.writeSync(fd, Buffer.from('live'), 0, 4, copy.srcOffset + 10);
                fs.closeSync(fd);
              }
              return n;
            },
            close: () => reader.close(),
          };
        },
      },
    };
    const failed = await createHopPlan(ref)
      .apply(racing)
      .catch((err: unknown) => err);
    expect(changed).toBe(true);
    expect(isSourceMismatch(failed)).toBe(true);
    expect((failed as Error).message).toMatch(/changed while hop operation \d+ \(COPY\) was copied/);
    expect(sha256Of(out)).not.toBe(built.target.sha256);
  });
});
