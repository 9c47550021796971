import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { Payload } from '../../bundle/manifest.js';
import { openFileReadAt } from '../../core/lending.js';
import { createHopPlan } from '../../delta/hop/apply.js';
import { isSourceMismatch } from '../../delta/hop/verify.js';
import { buildHopDelta } from '../../delta/hop/build.js';
import {
  decodeOpHeader,
  HOP_MAGIC,
  HopHeaderSchema,
  OP_HEADER_BYTES,
  OP_KINDS,
  type HopOp,
} from '../../delta/hop/format.js';
import type { DeltaContext, DeltaOutput } from '../../delta/path.js';
import { makeTempDir } from '../helpers/temp.js';
import { pseudoRandom, sha256Of } from './images.js';

/** A "binary": 4-byte addresses into itself; `inserted` bytes of new code move every later address. */
function binary(words: number, insertAt: number, inserted: number): Buffer {
  const out = Buffer.alloc(words * 4 + inserted);
  let at = 0;
  for (let i = 0; i < words; i++) {
    if (i === insertAt) {
      pseudoRandom(5, inserted).copy(out, at);
      at += inserted;
    }
    const target = ((i * 2654435761) >>> 0) % words;
    out.writeUInt32LE(0x400000 + target * 4 + (target >= insertAt ? inserted : 0), at);
    at += 4;
  }
  return out;
}

/** ext4 images whose release 2 recompiled a library: same code, addresses shifted after an insertion. */
function imagePair(dir: string, words = 60_000): { v1: string; v2: string } {
  const images: string[] = [];
  for (const version of [1, 2]) {
    const tree = path.join(dir, `tree${version}`);
    fs.mkdirSync(path.join(tree, 'usr/lib'), { recursive: true });
    const library = binary(words, words / 2, version === 2 ? 200 : 0);
    fs.writeFileSync(path.join(tree, 'usr/lib/libshift.so'), library);
    fs.writeFileSync(path.join(tree, 'usr/lib/data.bin'), pseudoRandom(9, 100_000));
    const image = path.join(dir, `v${version}.img`);
    execFileSync(
      'mkfs.ext4',
      ['-q', '-F', '-b', '4096', '-E', 'root_owner=0:0', '-U', 'clear', '-d', tree, image, '8M'],
      { env: { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000' } },
    );
    images.push(image);
  }
  return { v1: images[0]!, v2: images[1]! };
}

/** The BSDIFF operations of a delta (its body decoded). */
function bsdiffOps(deltaFile: string): HopOp[] {
  const all = fs.readFileSync(deltaFile);
  const len = all.readUInt32BE(HOP_MAGIC.length);
  const start = HOP_MAGIC.length + 4;
  const header = HopHeaderSchema.parse(JSON.parse(all.subarray(start, start + len).toString('utf8')));
  const body = zlib.brotliDecompressSync(all.subarray(start + len));
  const ops: HopOp[] = [];
  for (let at = 0, i = 0; i < header.ops; i++) {
    const op = decodeOpHeader(body.subarray(at, at + OP_HEADER_BYTES));
    at += OP_HEADER_BYTES + op.dataLen;
    if (op.kind === OP_KINDS.BSDIFF) ops.push(op);
  }
  return ops;
}

function context(
  dir: string,
  source: string,
  deltaFile: string,
  payload: Payload,
): { ctx: DeltaContext; out: string } {
  const out = path.join(dir, 'out.img');
  const workDir = path.join(dir, 'work');
  fs.mkdirSync(workDir, { recursive: true });
  const output = (): DeltaOutput => {
    const fd = fs.openSync(out, 'w');
    const w = new Writable({
      write(chunk: Buffer, _enc, cb) {
        fs.writeSync(fd, chunk);
        cb();
      },
      final(cb) {
        fs.closeSync(fd);
        cb();
      },
    }) as DeltaOutput;
    (w as { checkpoint: () => Promise<number> }).checkpoint = async () => 0;
    return w;
  };
  const ctx: DeltaContext = {
    payload,
    source: {
      size: fs.statSync(source).size,
      sha256: sha256Of(source),
      read: (s, e) => fs.createReadStream(source, { start: s, end: e }),
      openReadAt: () => openFileReadAt(source),
      stateDir: null,
    },
    fetch: { open: async () => fs.createReadStream(deltaFile) },
    openOutput: async () => output(),
    readOutput: (s, e) => fs.createReadStream(out, { start: s, end: e }),
    workDir,
    outputStateDir: null,
    signal: new AbortController().signal,
    onProgress: () => undefined,
  };
  return { ctx, out };
}

function headerOf(file: string): { format: string } & Record<string, unknown> {
  const bytes = fs.readFileSync(file);
  const len = bytes.readUInt32BE(HOP_MAGIC.length);
  return JSON.parse(bytes.subarray(HOP_MAGIC.length + 4, HOP_MAGIC.length + 4 + len).toString('utf8')) as {
    format: string;
  } & Record<string, unknown>;
}

describe('hop deltas with BSDIFF operations', () => {
  it('should patch a recompiled library with BSDIFF in a gantry-hop-v2 delta and rebuild the image exactly; a v1 header holding it is refused', async () => {
    const dir = makeTempDir();
    const { v1, v2 } = imagePair(dir);
    const deltaFile = path.join(dir, 'v1-v2.hop');
    const built = await buildHopDelta({ source: v1, target: v2, out: deltaFile });
    expect(built.ops.BSDIFF).toBeGreaterThan(0);
    expect(headerOf(deltaFile).format).toBe('gantry-hop-v2');
    // Nearly every word of the 240 KB library changed; the delta carries little more than the insertion.
    expect(built.size).toBeLessThan(20_000);

    const payload: Payload = {
      name: 'rootfs.img',
      kind: 'rootfs',
      size: built.target.size,
      sha256: built.target.sha256,
    };
    const ref = (file: string) => {
      const bytes = fs.readFileSync(file);
      return {
        source_sha256: built.source.sha256,
        source_version: 'v1.0.0',
        artifact: { target: path.basename(file), size: bytes.length, sha256: sha256Of(file) },
      };
    };
    const before = sha256Of(v1);
    const good = context(path.join(dir, 'good'), v1, deltaFile, payload);
    await createHopPlan(ref(deltaFile)).apply(good.ctx);
    expect(sha256Of(good.out)).toBe(sha256Of(v2));
    expect(sha256Of(v1)).toBe(before);

    // The same delta relabelled gantry-hop-v1 (and published with its new hash): v1 has no BSDIFF.
    const bytes = fs.readFileSync(deltaFile);
    const len = bytes.readUInt32BE(HOP_MAGIC.length);
    const json = bytes.subarray(HOP_MAGIC.length + 4, HOP_MAGIC.length + 4 + len).toString('utf8');
    const relabelled = Buffer.from(json.replace('"gantry-hop-v2"', '"gantry-hop-v1"'), 'utf8');
    expect(relabelled.length).toBe(len);
    const v1File = path.join(dir, 'relabelled.hop');
    fs.writeFileSync(
      v1File,
      Buffer.concat([
        bytes.subarray(0, HOP_MAGIC.length + 4),
        relabelled,
        bytes.subarray(HOP_MAGIC.length + 4 + len),
      ]),
    );
    const bad = context(path.join(dir, 'bad'), v1, v1File, payload);
    await expect(createHopPlan(ref(v1File)).apply(bad.ctx)).rejects.toMatchObject({
      gantryCode: 'OTA_INVALID_IMAGE',
      message: expect.stringContaining('cannot hold a BSDIFF operation') as unknown,
    });
  }, 60_000);

  it('should build, with compat v1, a delta older gateways read: gantry-hop-v1, no BSDIFF, no source digests', async () => {
    const dir = makeTempDir();
    const { v1, v2 } = imagePair(dir);
    const current = await buildHopDelta({ source: v1, target: v2, out: path.join(dir, 'current.hop') });
    const deltaFile = path.join(dir, 'v1-v2.compat.hop');
    const built = await buildHopDelta({ source: v1, target: v2, out: deltaFile, compat: 'v1' });
    expect(built.ops.BSDIFF).toBe(0);
    // Exactly the header fields a gateway from before BSDIFF and source digests accepts (its schema is strict).
    const header = headerOf(deltaFile);
    expect(header.format).toBe('gantry-hop-v1');
    expect(Object.keys(header).sort()).toEqual([
      'body_bytes',
      'codec',
      'format',
      'mode',
      'ops',
      'source',
      'target',
    ]);
    // The price: the recompiled library goes as VCDIFF.
    expect(built.size).toBeGreaterThan(current.size);

    const payload: Payload = {
      name: 'rootfs.img',
      kind: 'rootfs',
      size: built.target.size,
      sha256: built.target.sha256,
    };
    const run = context(path.join(dir, 'apply'), v1, deltaFile, payload);
    await createHopPlan({
      source_sha256: built.source.sha256,
      source_version: 'v1.0.0',
      artifact: { target: 'v1-v2.compat.hop', size: built.size, sha256: built.sha256 },
    }).apply(run.ctx);
    expect(sha256Of(run.out)).toBe(sha256Of(v2));
  }, 60_000);
  it('should decode a BSDIFF longer than 1 MiB in pieces, to the exact image, and refuse it as a source mismatch when its source changed', async () => {
    const dir = makeTempDir();
    const { v1, v2 } = imagePair(dir, 400_000); // a 1.6 MB library
    const deltaFile = path.join(dir, 'v1-v2.hop');
    const built = await buildHopDelta({ source: v1, target: v2, out: deltaFile });
    const long = bsdiffOps(deltaFile).find((op) => op.outLen > 1024 * 1024);
    expect(long, 'a BSDIFF operation over 1 MiB').toBeDefined();
    const payload: Payload = {
      name: 'rootfs.img',
      kind: 'rootfs',
      size: built.target.size,
      sha256: built.target.sha256,
    };
    const ref = {
      source_sha256: built.source.sha256,
      source_version: 'v1.0.0',
      artifact: { target: 'v1-v2.hop', size: fs.statSync(deltaFile).size, sha256: sha256Of(deltaFile) },
    };
    const good = context(path.join(dir, 'good'), v1, deltaFile, payload);
    await createHopPlan(ref).apply(good.ctx);
    expect(sha256Of(good.out)).toBe(sha256Of(v2));

    // The running system changed the old library's bytes the patch reads.
    const fd = fs.openSync(v1, 'r+');
    fs.writeSync(fd, Buffer.from('live write'), 0, 10, long!.srcOffset + Math.floor(long!.srcLen / 2));
    fs.closeSync(fd);
    const changed = context(path.join(dir, 'changed'), v1, deltaFile, payload);
    const failed = await createHopPlan(ref)
      .apply({ ...changed.ctx, source: { ...changed.ctx.source, sha256: built.source.sha256 } })
      .catch((err: unknown) => err);
    expect(isSourceMismatch(failed)).toBe(true);
  });
});
