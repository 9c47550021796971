import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { compressFile, hashFile } from '../../bundle/compression.js';
import type { Compression } from '../../bundle/manifest.js';
import { GantryError } from '../../core/errors.js';
import { bsdiffEncode, bsdiffInPlace, suffixArray } from './bsdiff.js';
import {
  encodeHeader,
  encodeOpHeader,
  HOP_FORMAT,
  HOP_FORMAT_V2,
  MAX_OP_BYTES,
  OP_DIGEST_BYTES,
  OP_KINDS,
  OP_NAMES,
  type HopOp,
  type OpKind,
  type OpName,
} from './format.js';

/**
 * The publisher's side of hop deltas (build host: may run debugfs, xdelta3 and zstd). For each
 * block of the new image, in order: inside a changed file of an ext4 image (each contiguous piece
 * of it), a patch against that file's old version, VCDIFF by xdelta3 (PATCH) or bsdiff (BSDIFF),
 * whichever compresses smaller (bsdiff wins on recompiled binaries, whose shifted addresses VCDIFF
 * carries as new bytes); a zero block is ZERO; a block found in the old image (same place first,
 * else any place, by block hash) is COPY; anything else is NEW, and NEW runs are tried as patches
 * against the old bytes around them. Adjacent operations of a kind merge (COPY when their sources
 * are adjacent too), bounded to keep the gateway's memory flat. The operation stream is then
 * compressed whole.
 */

const BLOCK = 4096;
/** COPY/ZERO/NEW runs are cut at this output size; PATCH reads and writes at most MAX_OP_BYTES. */
const RUN_BYTES = 4 * 1024 * 1024;
/** A patch is kept only when it compresses to at most this share of the new file compressed. */
const PATCH_WORTH = 0.9;
/** Quick brotli settings to compare candidate patches (the body is compressed whole afterwards). */
const ESTIMATE_QUALITY = 5;
/** A bsdiff patch carries about the new file's length: bounded like a NEW operation's data plus slack. */
const MAX_BSDIFF_DATA = MAX_OP_BYTES + 1024 * 1024;
/** NEW runs are cut smaller, and tried as a PATCH against the old bytes this far around them. */
const NEW_RUN_BYTES = 1024 * 1024;
/**
 * The gateway reads (and digests) a PATCH's whole source range: ±2 MiB around each of the fixture's
 * ~1,400 NEW runs was 6 GB of reads and SHA-256 on the gateway for 43 MB of output, more than the
 * full path's work; ±256 KiB keeps what matters (ext4 metadata changes against its own old block).
 */
const NEIGHBOURHOOD = 256 * 1024;
/** A neighbourhood patch is kept when it compresses to at most this share of the new bytes compressed. */
const NEIGHBOUR_PATCH_WORTH = 0.6;
/** NEW runs from this size on are also tried as a bsdiff against their neighbourhood. */
const NEIGHBOUR_BSDIFF_BYTES = 16 * 1024;

const run = promisify(execFile);
/** The delta body's brotli window (log2 bytes), see buildHopDelta. */
const HOP_BODY_BROTLI_WINDOW_BITS = 22;

export interface BuildHopOptions {
  source: string;
  target: string;
  out: string;
  codec?: Compression;
  /** ext4 (file-aware, needs debugfs) when both images are ext4, else blocks. */
  mode?: 'auto' | 'ext4' | 'blocks';
  /**
   * `v1`: a delta the gateways from before BSDIFF read (`gantry-hop-v1`, no BSDIFF operation: their
   * header schema is strict), for fleets that still run them; larger. Default: the current format.
   */
  compat?: 'current' | 'v1';
  tmpDir?: string;
}

export interface BuiltHop {
  size: number;
  sha256: string;
  mode: 'ext4' | 'blocks';
  ops: Record<OpName, number>;
  source: { size: number; sha256: string };
  target: { size: number; sha256: string };
}

interface FileMap {
  size: number;
  blocks: number[];
}

export async function buildHopDelta(opts: BuildHopOptions): Promise<BuiltHop> {
  const codec = opts.codec ?? 'brotli';
  const work = fs.mkdtempSync(path.join(opts.tmpDir ?? os.tmpdir(), 'gantry-hop-'));
  try {
    const source = await hashFile(opts.source);
    const target = await hashFile(opts.target);
    let mode: 'ext4' | 'blocks' = 'blocks';
    let patches = new Map<number, { srcStart: number; srcLen: number; blocks: number }>();
    let volatile: ByteRange[] = [];
    if (opts.mode !== 'blocks' && (await isExt4(opts.source)) && (await isExt4(opts.target))) {
      mode = 'ext4';
      patches = await changedFiles(opts.source, opts.target, work);
      volatile = await mountWrittenRanges(opts.source, work);
    } else if (opts.mode === 'ext4') {
      throw new GantryError('VALIDATION_ERROR', 'ext4 mode asked for, but an image is not ext4');
    }
    const body = path.join(work, 'body');
    const counts = { COPY: 0, ZERO: 0, NEW: 0, PATCH: 0, BSDIFF: 0 };
    const opsCount = await writeBody(
      opts.source,
      opts.target,
      source.size,
      target.size,
      patches,
      volatile,
      body,
      work,
      counts,
      opts.compat !== 'v1',
    );
    const bodyBytes = fs.statSync(body).size;
    const compressed = path.join(work, 'body.c');
    // A 4 MiB window: the gateway's decoder holds a ring buffer of the window's size while it
    // applies. On the fixture's 36.5 MB body, 2,321,045 bytes against 2,318,432 with 16 MiB (+0.1 %)
    // for 12 MiB less resident on the gateway.
    await compressFile(body, compressed, codec, { brotliWindowBits: HOP_BODY_BROTLI_WINDOW_BITS });
    const header = encodeHeader({
      // v1 when it can be (gateways without BSDIFF still apply it), v2 when a BSDIFF is used.
      format: counts.BSDIFF > 0 ? HOP_FORMAT_V2 : HOP_FORMAT,
      mode,
      codec,
      source,
      target,
      ops: opsCount,
      body_bytes: bodyBytes,
    });
    const partial = `${opts.out}.partial`;
    fs.writeFileSync(partial, header);
    fs.appendFileSync(partial, fs.readFileSync(compressed));
    fs.renameSync(partial, opts.out);
    const built = await hashFile(opts.out);
    return { ...built, mode, ops: counts, source, target };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

async function isExt4(image: string): Promise<boolean> {
  const fd = fs.openSync(image, 'r');
  try {
    const sb = Buffer.alloc(2);
    fs.readSync(fd, sb, 0, 2, 1024 + 0x38);
    return sb.readUInt16LE(0) === 0xef53;
  } finally {
    fs.closeSync(fd);
  }
}

/** Bytes [start, end) of an image. */
interface ByteRange {
  start: number;
  end: number;
}

/**
 * The source regions ext4 rewrites when the image is mounted, even read-only (in the block
 * device's view): the superblock (with the boot block, the first 4 KiB) and the journal's
 * superblock. No operation reads them, so a clean mount of the active slot costs no repair; the
 * target's bytes there go as NEW (a few KiB, compressed with the rest).
 */
async function mountWrittenRanges(image: string, work: string): Promise<ByteRange[]> {
  const ranges: ByteRange[] = [{ start: 0, end: BLOCK }];
  const fd = fs.openSync(image, 'r');
  let blockSize: number;
  try {
    blockSize = 1024 << readAt(fd, 1024 + 24, 4).readUInt32LE(0);
  } finally {
    fs.closeSync(fd);
  }
  const journal = perCommand(await debugfs(image, ['blocks <8>'], work))[0] ?? [];
  const first = Number(journal.join(' ').trim().split(/\s+/)[0]);
  if (Number.isSafeInteger(first) && first > 0) {
    const start = Math.floor((first * blockSize) / BLOCK) * BLOCK;
    ranges.push({ start, end: Math.max(start + BLOCK, first * blockSize + blockSize) });
  }
  return ranges;
}

function overlaps(ranges: ByteRange[], start: number, end: number): boolean {
  return ranges.some((r) => r.start < end && start < r.end);
}

/**
 * The largest part of [start, end) that reads no volatile range, keeping the side nearest `at`
 * (where the new bytes sit): a PATCH's neighbourhood must not read what a mount rewrites.
 */
function avoiding(ranges: ByteRange[], start: number, end: number, at: number): ByteRange {
  let lo = start;
  let hi = end;
  for (const r of ranges) {
    if (r.end <= lo || r.start >= hi) continue;
    if (r.end <= at) lo = Math.max(lo, r.end);
    else if (r.start >= at) hi = Math.min(hi, r.start);
    else if (r.start - lo >= hi - r.end) hi = r.start;
    else lo = r.end;
  }
  return { start: lo, end: Math.max(lo, hi) };
}

let commandFiles = 0;

async function debugfs(image: string, commands: string[], work: string): Promise<string> {
  const cmdFile = path.join(work, `debugfs-${commandFiles++}.cmds`);
  fs.writeFileSync(cmdFile, `${commands.join('\n')}\n`);
  const { stdout } = await run('debugfs', ['-f', cmdFile, image], { maxBuffer: 1024 * 1024 * 1024 });
  return stdout;
}

/** Splits debugfs -f output into each command's lines. */
function perCommand(out: string): string[][] {
  const results: string[][] = [];
  for (const line of out.split('\n')) {
    if (line.startsWith('debugfs: ')) results.push([]);
    else if (results.length) results[results.length - 1]!.push(line);
  }
  return results;
}

/** Regular files of an ext4 image: path → size and physical blocks in file order. */
async function fileMap(image: string, work: string): Promise<Map<string, FileMap>> {
  const files = new Map<string, { ino: number; size: number }>();
  let dirs = ['/'];
  while (dirs.length) {
    const out = perCommand(
      await debugfs(
        image,
        dirs.map((d) => `ls -p "${d}"`),
        work,
      ),
    );
    const next: string[] = [];
    out.forEach((lines, i) => {
      const dir = dirs[i]!;
      for (const line of lines) {
        const m = /^\/(\d+)\/(\d+)\/\d+\/\d+\/(.*)\/(\d*)\/$/.exec(line);
        if (!m) continue;
        const [, ino, mode, name, size] = m;
        if (name === '.' || name === '..' || name!.includes('"') || name!.includes('\n')) continue;
        const full = dir === '/' ? `/${name}` : `${dir}/${name}`;
        const type = parseInt(mode!, 8) & 0o170000;
        if (type === 0o040000) next.push(full);
        else if (type === 0o100000) files.set(full, { ino: Number(ino), size: Number(size) });
      }
    });
    dirs = next;
  }
  const entries = [...files.entries()];
  const result = new Map<string, FileMap>();
  const out = perCommand(
    await debugfs(
      image,
      entries.map(([, f]) => `blocks <${f.ino}>`),
      work,
    ),
  );
  entries.forEach(([p, f], i) => {
    const blocks = (out[i] ?? []).join(' ').trim().split(/\s+/).filter(Boolean).map(Number);
    result.set(p, { size: f.size, blocks });
  });
  return result;
}

/**
 * The changed files worth a patch, keyed by the first block of each contiguous run of their blocks
 * in the new image: same path in both images, other bytes, the old version within one operation's
 * bound.
 */
async function changedFiles(
  sourceImage: string,
  targetImage: string,
  work: string,
): Promise<Map<number, { srcStart: number; srcLen: number; blocks: number }>> {
  const [oldFiles, newFiles] = await Promise.all([fileMap(sourceImage, work), fileMap(targetImage, work)]);
  const patches = new Map<number, { srcStart: number; srcLen: number; blocks: number }>();
  const sfd = fs.openSync(sourceImage, 'r');
  const tfd = fs.openSync(targetImage, 'r');
  try {
    for (const [p, nf] of newFiles) {
      const of = oldFiles.get(p);
      // Same content (wherever it sits): the block pass finds it in the old image and COPYs it.
      if (of && of.size === nf.size && fileDigest(sfd, of) === fileDigest(tfd, nf)) newFiles.delete(p);
    }
  } finally {
    fs.closeSync(sfd);
    fs.closeSync(tfd);
  }
  for (const [p, nf] of newFiles) {
    const of = oldFiles.get(p);
    if (!of || nf.blocks.length === 0 || of.blocks.length === 0) continue;
    const lo = Math.min(...of.blocks);
    const hi = Math.max(...of.blocks);
    if ((hi - lo + 1) * BLOCK > MAX_OP_BYTES) continue;
    if (of.size === nf.size && sameBlocks(of.blocks, nf.blocks)) continue;
    // One patch per contiguous run of the new file's blocks (a file written in several extents, or
    // larger than an operation, is patched piece by piece against its whole old version).
    for (let i = 0; i < nf.blocks.length;) {
      let n = 1;
      while (
        i + n < nf.blocks.length &&
        nf.blocks[i + n] === nf.blocks[i]! + n &&
        (n + 1) * BLOCK <= MAX_OP_BYTES
      ) {
        n++;
      }
      patches.set(nf.blocks[i]!, { srcStart: lo * BLOCK, srcLen: (hi - lo + 1) * BLOCK, blocks: n });
      i += n;
    }
  }
  return patches;
}

function sameBlocks(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function fileDigest(fd: number, f: FileMap): string {
  const hash = createHash('sha256');
  let left = f.size;
  for (const b of f.blocks) {
    if (left <= 0) break;
    const len = Math.min(BLOCK, left);
    hash.update(readAt(fd, b * BLOCK, len));
    left -= len;
  }
  return hash.digest('hex');
}

function readAt(fd: number, offset: number, len: number): Buffer {
  const buf = Buffer.alloc(len);
  let at = 0;
  while (at < len) {
    const n = fs.readSync(fd, buf, at, len - at, offset + at);
    if (n === 0) break;
    at += n;
  }
  return at === len ? buf : buf.subarray(0, at);
}

/** An operation's digest of bytes: the first OP_DIGEST_BYTES of their SHA-256. */
function digestOf(bytes: Buffer): Buffer {
  return createHash('sha256').update(bytes).digest().subarray(0, OP_DIGEST_BYTES);
}

function blockKey(b: Buffer): string {
  return createHash('sha256').update(b).digest('base64').slice(0, 22);
}

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i += 8) {
    if (b.readBigUInt64LE(i) !== 0n) return false;
  }
  return true;
}

/** Writes the decoded body (operations in order) and returns how many there are. */
async function writeBody(
  sourceImage: string,
  targetImage: string,
  sourceSize: number,
  targetSize: number,
  patches: Map<number, { srcStart: number; srcLen: number; blocks: number }>,
  volatile: ByteRange[],
  body: string,
  work: string,
  counts: Record<OpName, number>,
  /** BSDIFF operations (gantry-hop-v2 readers); off for `compat: 'v1'`. */
  current: boolean,
): Promise<number> {
  const sfd = fs.openSync(sourceImage, 'r');
  const tfd = fs.openSync(targetImage, 'r');
  const out = fs.openSync(body, 'w');
  let ops = 0;
  try {
    // Every whole block of the old image by content (the first place it occurs).
    const index = new Map<string, number>();
    const sourceBlocks = Math.floor(sourceSize / BLOCK);
    for (let i = 0; i < sourceBlocks; i += 1024) {
      const chunk = readAt(sfd, i * BLOCK, Math.min(1024, sourceBlocks - i) * BLOCK);
      for (let j = 0; j * BLOCK < chunk.length; j++) {
        const b = chunk.subarray(j * BLOCK, (j + 1) * BLOCK);
        if (isZero(b) || overlaps(volatile, (i + j) * BLOCK, (i + j + 1) * BLOCK)) continue;
        const key = blockKey(b);
        if (!index.has(key)) index.set(key, i + j);
      }
    }

    // The run being built: COPY (with its next source offset), ZERO or NEW.
    let pending: { kind: OpKind; srcOffset: number; outOffset: number; parts: Buffer[]; len: number } | null =
      null;
    let outOffset = 0;
    const emit = (op: HopOp, data: Buffer | null): void => {
      fs.writeSync(out, encodeOpHeader(op));
      if (data) fs.writeSync(out, data);
      ops++;
      counts[OP_NAMES[op.kind] as OpName]++;
    };
    const flush = async (): Promise<void> => {
      if (!pending) return;
      const bytes = Buffer.concat(pending.parts, pending.len);
      const digest = createHash('sha256').update(bytes).digest().subarray(0, OP_DIGEST_BYTES);
      const kind = pending.kind;
      if (kind === OP_KINDS.NEW) {
        // New bytes where the old image had something close by (inode tables, bitmaps, directories,
        // a file that moved a little): a VCDIFF against that neighbourhood, when it is much smaller.
        const near = Math.max(0, pending.outOffset - NEIGHBOURHOOD);
        const { start, end } = avoiding(
          volatile,
          near,
          Math.min(sourceSize, pending.outOffset + pending.len + NEIGHBOURHOOD, near + MAX_OP_BYTES),
          pending.outOffset,
        );
        if (end > start) {
          const around = readAt(sfd, start, end - start);
          const vcdiff = await xdelta(around, bytes, work);
          let best = {
            kind: OP_KINDS.PATCH as OpKind,
            srcOffset: start,
            srcLen: end - start,
            source: around,
            data: vcdiff,
          };
          let bestSize = estimate(vcdiff);
          // Larger runs (inode tables whose entries moved, pieces of files the file pass missed):
          // bsdiff against the same neighbourhood, worth its suffix array (~1 s per 4 MiB).
          if (current && bytes.length >= NEIGHBOUR_BSDIFF_BYTES) {
            const bs = bsdiffEncode(around, bytes);
            const size = estimate(bs);
            if (size < bestSize) {
              best = {
                kind: OP_KINDS.BSDIFF,
                srcOffset: start,
                srcLen: end - start,
                source: around,
                data: bs,
              };
              bestSize = size;
            }
          }
          // Metadata rewritten in place (inode tables, bitmaps, directory blocks): the byte-wise
          // difference from the same place of the old image is mostly zeros, which VCDIFF's
          // copy/add instructions carry at several bytes per changed field.
          const inPlaceEnd = pending.outOffset + pending.len;
          if (current && inPlaceEnd <= sourceSize && !overlaps(volatile, pending.outOffset, inPlaceEnd)) {
            const old = readAt(sfd, pending.outOffset, pending.len);
            const inPlace = bsdiffInPlace(old, bytes);
            const size = estimate(inPlace);
            if (size < bestSize) {
              best = {
                kind: OP_KINDS.BSDIFF,
                srcOffset: pending.outOffset,
                srcLen: pending.len,
                source: old,
                data: inPlace,
              };
              bestSize = size;
            }
          }
          if (bestSize <= estimate(bytes) * NEIGHBOUR_PATCH_WORTH) {
            emit(
              {
                kind: best.kind,
                outLen: bytes.length,
                srcOffset: best.srcOffset,
                srcLen: best.srcLen,
                dataLen: best.data.length,
                digest,
              },
              best.data,
            );
            pending = null;
            return;
          }
        }
      }
      emit(
        {
          kind,
          outLen: pending.len,
          srcOffset: kind === OP_KINDS.COPY ? pending.srcOffset : 0,
          srcLen: kind === OP_KINDS.COPY ? pending.len : 0,
          dataLen: kind === OP_KINDS.NEW ? pending.len : 0,
          digest,
        },
        kind === OP_KINDS.NEW ? bytes : null,
      );
      pending = null;
    };
    const add = async (kind: OpKind, srcOffset: number, bytes: Buffer): Promise<void> => {
      const p = pending;
      const continues =
        p !== null &&
        p.kind === kind &&
        p.len + bytes.length <= (kind === OP_KINDS.NEW ? NEW_RUN_BYTES : RUN_BYTES) &&
        (kind !== OP_KINDS.COPY || p.srcOffset + p.len === srcOffset);
      if (!continues) {
        await flush();
        pending = { kind, srcOffset, outOffset, parts: [], len: 0 };
      }
      pending!.parts.push(bytes);
      pending!.len += bytes.length;
      outOffset += bytes.length;
    };

    const targetBlocks = Math.ceil(targetSize / BLOCK);
    let block = 0;
    // The old file of the last patch, with its suffix array once made: a file in several pieces
    // patches each against the same old version.
    let lastOld = null as OldFile | null;
    while (block < targetBlocks) {
      const patch = patches.get(block);
      const srcLen = patch ? Math.min(patch.srcLen, sourceSize - patch.srcStart) : 0;
      if (patch && !overlaps(volatile, patch.srcStart, patch.srcStart + srcLen)) {
        const len = Math.min(patch.blocks * BLOCK, targetSize - block * BLOCK);
        const newBytes = readAt(tfd, block * BLOCK, len);
        if (lastOld?.srcStart !== patch.srcStart || lastOld.srcLen !== srcLen) {
          lastOld = {
            srcStart: patch.srcStart,
            srcLen,
            bytes: readAt(sfd, patch.srcStart, srcLen),
            sa: null,
          };
        }
        const chosen = await filePatch(lastOld, newBytes, work, current);
        if (chosen) {
          await flush();
          emit(
            {
              kind: chosen.kind,
              outLen: newBytes.length,
              srcOffset: patch.srcStart,
              srcLen,
              dataLen: chosen.data.length,
              digest: digestOf(newBytes),
            },
            chosen.data,
          );
          block += patch.blocks;
          outOffset += newBytes.length;
          continue;
        }
      }
      const len = Math.min(BLOCK, targetSize - block * BLOCK);
      const b = readAt(tfd, block * BLOCK, len);
      const offset = block * BLOCK;
      if (isZero(b)) await add(OP_KINDS.ZERO, 0, b);
      else if (
        offset + len <= sourceSize &&
        !overlaps(volatile, offset, offset + len) &&
        readAt(sfd, offset, len).equals(b)
      )
        await add(OP_KINDS.COPY, offset, b);
      else {
        const at = len === BLOCK ? index.get(blockKey(b)) : undefined;
        if (at !== undefined) await add(OP_KINDS.COPY, at * BLOCK, b);
        else await add(OP_KINDS.NEW, 0, b);
      }
      block++;
    }
    await flush();
  } finally {
    fs.closeSync(sfd);
    fs.closeSync(tfd);
    fs.closeSync(out);
  }
  return ops;
}

interface OldFile {
  srcStart: number;
  srcLen: number;
  bytes: Buffer;
  sa: Int32Array | null;
}

function estimate(data: Buffer): number {
  return zlib.brotliCompressSync(data, {
    params: {
      [zlib.constants.BROTLI_PARAM_QUALITY]: ESTIMATE_QUALITY,
      [zlib.constants.BROTLI_PARAM_LGWIN]: 24,
      [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length,
    },
  }).length;
}

/**
 * A changed file's patch against its old version: VCDIFF or bsdiff, the one that compresses smaller,
 * or null when neither is worth it against the new bytes themselves.
 */
async function filePatch(
  old: OldFile,
  target: Buffer,
  work: string,
  bsdiff: boolean,
): Promise<{ kind: typeof OP_KINDS.PATCH | typeof OP_KINDS.BSDIFF; data: Buffer } | null> {
  const vcdiff = await xdelta(old.bytes, target, work);
  const candidates: Array<{
    kind: typeof OP_KINDS.PATCH | typeof OP_KINDS.BSDIFF;
    data: Buffer;
    size: number;
  }> = [{ kind: OP_KINDS.PATCH, data: vcdiff, size: estimate(vcdiff) }];
  if (bsdiff) {
    old.sa ??= suffixArray(old.bytes);
    const bs = bsdiffEncode(old.bytes, target, old.sa);
    if (bs.length <= MAX_BSDIFF_DATA)
      candidates.push({ kind: OP_KINDS.BSDIFF, data: bs, size: estimate(bs) });
  }
  candidates.sort((a, b) => a.size - b.size);
  const best = candidates[0]!;
  return best.size <= estimate(target) * PATCH_WORTH ? { kind: best.kind, data: best.data } : null;
}

/** VCDIFF of `target` against `source`, as @ably/vcdiff-decoder reads it (no app header, checksum or secondary compression; -D -R: gzip-looking inputs are bytes, not to be decompressed). */
async function xdelta(source: Buffer, target: Buffer, work: string): Promise<Buffer> {
  const s = path.join(work, 'x.src');
  const t = path.join(work, 'x.tgt');
  const d = path.join(work, 'x.vcdiff');
  fs.writeFileSync(s, source);
  fs.writeFileSync(t, target);
  await new Promise<void>((resolve, reject) => {
    const child = spawn('xdelta3', ['-e', '-9', '-S', 'none', '-A', '-n', '-D', '-R', '-f', '-s', s, t, d], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', (e) => reject(new GantryError('VALIDATION_ERROR', `cannot run xdelta3: ${e.message}`)));
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new GantryError('VALIDATION_ERROR', `xdelta3 failed: ${err.trim()}`)),
    );
  });
  return fs.readFileSync(d);
}
