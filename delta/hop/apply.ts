import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { decode as decodeVcdiff } from '@ably/vcdiff-decoder';
import { BsdiffError, bsdiffDecodePieces } from './bsdiff.js';
import { applyBsdiffOp } from './patch.js';
import { createDecompressor } from '../../bundle/compression.js';
import { inlineDigests, threadDigests, type BundleDigests } from '../../bundle/digests.js';
import type { DeltaRef, DynamicRef } from '../../bundle/manifest.js';
import { GantryError, isGantryError } from '../../core/errors.js';
import { formatBytes } from '../../core/format.js';
import { writeFileAtomicSync } from '../../core/fsutil.js';
import { consumeChunks, type FileReadAt } from '../../core/lending.js';
import { youngGenerationSweeper } from '../../core/young-gc.js';
import type { DeltaContext, DeltaPlan } from '../path.js';
import {
  carriesSourceDigest,
  decodeOpHeader,
  HOP_FORMAT_V2,
  HOP_MAGIC,
  HopHeaderSchema,
  MAX_HEADER_BYTES,
  OP_DIGEST_BYTES,
  OP_HEADER_BYTES,
  OP_KINDS,
  OP_NAMES,
  opReadsSource,
  SOURCE_DIGEST_BYTES,
  type HopHeader,
  type HopOp,
} from './format.js';
import { ChunkRepair } from './repair.js';

/** Durability cadence of an apply: fsync the slot, then the journal, after this much output. */
export interface CheckpointCadence {
  bytes: number;
  ops: number;
}
/**
 * A checkpoint costs two fsyncs (the slot, the journal) and a resume redoes at most the operations
 * since the last one, locally (the delta is kept): rare checkpoints are cheap to resume from. On the
 * fixture (7,132 operations) one every 256 operations spent 3.6 s of 21 in fsync.
 */
const DEFAULT_CADENCE: CheckpointCadence = { bytes: 64 * 1024 * 1024, ops: 4096 };
/** While the delta downloads, progress is reported every this many bytes. */
const PROGRESS_BYTES = 16 * 1024;

/** `details.source_mismatch` of the error an operation reading the active slot fails with. */
const SOURCE_MISMATCH = 'source_mismatch';

/** The active slot did not give the bytes the delta was computed from: the delta cannot be used. */
export function isSourceMismatch(err: unknown): boolean {
  return isGantryError(err) && err.details?.[SOURCE_MISMATCH] === true;
}

function invalid(message: string, details?: Record<string, unknown>): GantryError {
  return new GantryError('OTA_INVALID_IMAGE', message, details);
}

/**
 * The hop path for one published delta: one GET of the delta, then operations applied locally.
 * With the bundle's dynamic artifacts (`repair`), an operation whose source bytes the active slot
 * no longer holds is rebuilt from chunks instead of failing the delta.
 */
export function createHopPlan(
  ref: DeltaRef,
  repair: DynamicRef | null = null,
  cadence: Partial<CheckpointCadence> = {},
): DeltaPlan {
  const every = { ...DEFAULT_CADENCE, ...cadence };
  return {
    path: 'hop',
    plannedBytes: ref.artifact.size,
    requests: 1,
    apply: (ctx) => applyHop(ref, repair, ctx, every),
  };
}

/**
 * What survives a kill: the operations done and the image bytes they wrote, fsynced after the slot
 * was. The running SHA-256 of the image is not kept (Node cannot serialize a hash state): a resume
 * re-hashes the slot's prefix instead, ~1 s per 500 MB, once per restart, and never trusts bytes it
 * did not read back.
 */
interface HopJournal {
  delta_sha256: string;
  op: number;
  out: number;
}

function journalPath(ctx: DeltaContext): string {
  return path.join(ctx.workDir, 'hop.journal.json');
}

function readJournal(ctx: DeltaContext, deltaSha256: string): HopJournal {
  try {
    const j = JSON.parse(fs.readFileSync(journalPath(ctx), 'utf8')) as HopJournal;
    if (
      j.delta_sha256 === deltaSha256 &&
      Number.isSafeInteger(j.op) &&
      Number.isSafeInteger(j.out) &&
      j.op >= 0 &&
      j.out >= 0
    ) {
      return j;
    }
  } catch {
    // No journal (a first attempt) or an unreadable one: start from the first operation.
  }
  return { delta_sha256: deltaSha256, op: 0, out: 0 };
}

/**
 * Applies a hop delta: the source must be the delta's (the active slot's recorded hash equals
 * `source_sha256`, checked first); the delta is downloaded to the job's work directory and
 * verified whole (length and SHA-256 signed in the manifest) before its first operation runs; the
 * image is written in order onto the inactive slot, each operation's output verified before the
 * next, and the whole image's hash checked at the end.
 *
 * The active slot is a running root: its bytes drift from its record (a mount rewrites the
 * superblock and journal, the system writes /etc and /var). An operation reading source bytes
 * that are not the ones the delta was made from (its source digest, or a COPY's output digest,
 * differs) is repaired from chunks (delta/hop/repair.ts) when the bundle has dynamic artifacts;
 * without them it fails as a source mismatch and the pipeline falls back to the full bundle.
 */
async function applyHop(
  ref: DeltaRef,
  repairRef: DynamicRef | null,
  ctx: DeltaContext,
  every: CheckpointCadence,
): Promise<{ wireBytes: number; summary?: string }> {
  if (ctx.source.sha256 !== ref.source_sha256) {
    throw invalid(
      `the hop delta is from ${ref.source_version} (${ref.source_sha256.slice(0, 12)}…), not from the active slot's image`,
      { [SOURCE_MISMATCH]: true },
    );
  }
  const { file, wireBytes } = await downloadDelta(ref, ctx);
  const { header, bodyStart } = readHeader(file);
  if (header.source.sha256 !== ref.source_sha256 || header.source.size !== ctx.source.size) {
    throw invalid('the hop delta names another source image than its manifest entry');
  }
  if (header.target.sha256 !== ctx.payload.sha256 || header.target.size !== ctx.payload.size) {
    throw invalid('the hop delta builds another image than the payload it is listed for');
  }
  const journal = readJournal(ctx, ref.artifact.sha256);
  // The image's SHA-256 on the hashing thread (the other core) for a real image: the main thread
  // already hashes every operation's output. On the fixture this took ~0.5 s off a ~4 s apply.
  const image = (ctx.payload.size >= THREAD_HASHING_MIN_BYTES ? threadDigests : inlineDigests)({
    whole: false,
  });
  image.beginPayload(0, ctx.payload.size);
  let source: FileReadAt | null = null;
  try {
    source = await ctx.source.openReadAt();
    const delta = { header, bodyStart, file, wireBytes };
    return await applyOps(ref, repairRef, ctx, every, delta, journal, image, source);
  } finally {
    image.close();
    await source?.close();
  }
}

async function applyOps(
  ref: DeltaRef,
  repairRef: DynamicRef | null,
  ctx: DeltaContext,
  every: CheckpointCadence,
  delta: { header: HopHeader; bodyStart: number; file: string; wireBytes: number },
  journal: HopJournal,
  image: BundleDigests,
  source: FileReadAt,
): Promise<{ wireBytes: number; summary?: string }> {
  const { header, bodyStart, file, wireBytes } = delta;
  if (journal.out > 0) {
    await consumeChunks(ctx.readOutput(0, journal.out - 1), (chunk) => hashImage(image, chunk));
  }
  const body = fs.createReadStream(file, { start: bodyStart, highWaterMark: 256 * 1024 });
  // 256 KiB decoded chunks: the body is read in operations of up to 16 MiB, and 16 KiB chunks cost
  // a round trip each (the fixture's 37 MB body: 0.25-0.47 s of reading, 0.16-0.18 s with these).
  const decoded = body.pipe(createDecompressor(header.codec, header.body_bytes, { chunkBytes: 256 * 1024 }));
  body.on('error', (err) => decoded.destroy(err));
  const reader = new ByteReader(decoded);
  const sourceDigests = header.source_digests === true;
  const repair = repairRef ? new ChunkRepair(repairRef, ctx) : null;
  let repaired = 0;
  const scratch = new Scratch(source, header.source.size);
  // PATCH results and the body's decoded chunks are new buffers: collected young, every few MiB.
  const sweep = youngGenerationSweeper();
  const output = await ctx.openOutput(journal.out);
  let out = journal.out;
  let sinceCheckpoint = 0;
  let opsSinceCheckpoint = 0;
  /** Operation `i` wrote `len` bytes onto the slot: counts them, checkpoints on the cadence. */
  const advance = async (i: number, len: number, dataLen: number): Promise<void> => {
    sweep(len + dataLen);
    out += len;
    sinceCheckpoint += len;
    opsSinceCheckpoint++;
    if (sinceCheckpoint >= every.bytes || opsSinceCheckpoint >= every.ops) {
      await checkpoint(output, ctx, { delta_sha256: ref.artifact.sha256, op: i + 1, out });
      sinceCheckpoint = 0;
      opsSinceCheckpoint = 0;
      ctx.onProgress({ outputBytes: out, wireBytes: wireBytes + (repair?.wireBytes ?? 0) });
    }
  };
  try {
    for (let i = 0; i < header.ops; i++) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      const op = decodeOpHeader(await reader.read(OP_HEADER_BYTES));
      // Deltas from publishers before 2026-12-05 carry a source digest per PATCH and BSDIFF: not
      // needed (see readSource), skipped.
      if (sourceDigests && carriesSourceDigest(op.kind)) await reader.read(SOURCE_DIGEST_BYTES);
      const data = op.dataLen > 0 ? await reader.read(op.dataLen) : null;
      if (i < journal.op) continue; // done before the restart: its bytes are on the slot, hashed above
      if (out + op.outLen > ctx.payload.size) throw invalid('the hop delta writes past the image size');
      if (
        (op.kind === OP_KINDS.ZERO ||
          (op.kind === OP_KINDS.COPY && op.outLen > PIECE_BYTES) ||
          (op.kind === OP_KINDS.BSDIFF && op.outLen > PIECE_BYTES && header.format === HOP_FORMAT_V2)) &&
        (await writeInPieces(op, i, data, scratch, image, output))
      ) {
        await advance(i, op.outLen, 0);
        continue;
      }
      let bytes: Buffer | null = null;
      try {
        bytes = await runOp(op, data, ctx, header, scratch);
        checkOutput(op, i, bytes);
      } catch (err) {
        if (!isSourceMismatch(err) || !repair || !(await repair.available())) throw err;
        // A COPY's bytes are the slot's: most of its chunks may still be right there.
        bytes = await repair.fill(out, op.outLen, op.kind === OP_KINDS.COPY ? bytes : null);
        // Verified chunks that do not give the operation's output: the index and the delta disagree.
        if (!digestOf(bytes).equals(op.digest)) {
          throw invalid(`hop operation ${i} (${opName(op)}): the chunks repairing it give other bytes`, {
            op: i,
          });
        }
        repaired++;
      }
      await hashImage(image, bytes);
      await write(output, bytes);
      await advance(i, bytes.length, data?.length ?? 0);
    }
    await new Promise<void>((resolve, reject) => {
      output.once('error', reject);
      output.end(() => resolve());
    });
  } catch (err) {
    if (!output.destroyed) output.destroy();
    throw err;
  } finally {
    decoded.destroy();
    body.destroy();
  }
  const digest = await image.payloadDigest();
  if (out !== ctx.payload.size || digest !== ctx.payload.sha256) {
    throw invalid(`the image built from the hop delta does not match its signed SHA-256`, {
      expected: ctx.payload.sha256,
      actual: digest,
      bytes: out,
    });
  }
  fs.rmSync(journalPath(ctx), { force: true });
  const total = wireBytes + (repair?.wireBytes ?? 0);
  ctx.onProgress({ outputBytes: out, wireBytes: total });
  return {
    wireBytes: total,
    ...(repaired > 0 || (repair?.wireBytes ?? 0) > 0
      ? {
          summary: `hop delta: ${repaired} of ${header.ops} operations repaired from chunks (${formatBytes(repair!.wireBytes)} in ${repair!.requests} requests)`,
        }
      : {}),
  };
}

function digestOf(bytes: Buffer): Buffer {
  return createHash('sha256').update(bytes).digest().subarray(0, OP_DIGEST_BYTES);
}

/**
 * An operation's output against its digest. For an operation reading the active slot, other
 * bytes mean the slot does not hold the source the delta was made from (a source mismatch).
 */
function checkOutput(op: HopOp, i: number, bytes: Buffer): void {
  if (digestOf(bytes).equals(op.digest)) return;
  const readsSource = opReadsSource(op);
  throw invalid(
    `hop operation ${i} (${opName(op)}) produced other bytes than the delta says${readsSource ? ': the active slot does not hold the image its record names' : ''}`,
    readsSource ? { [SOURCE_MISMATCH]: true, op: i } : { op: i },
  );
}

function opName(op: HopOp): string {
  return OP_NAMES[op.kind];
}

async function checkpoint(
  output: { checkpoint(): Promise<number> },
  ctx: DeltaContext,
  journal: HopJournal,
): Promise<void> {
  // The slot first: the journal must never name bytes the disk may not have.
  await output.checkpoint();
  writeFileAtomicSync(journalPath(ctx), JSON.stringify(journal));
}

/** ZERO and long COPY operations are written in pieces of this size (see writeInPieces). */
const PIECE_BYTES = 1024 * 1024;
/** What a read of a run of COPYs fetches at least (see SlotWindow.read). */
const READ_AHEAD_BYTES = 4 * 1024 * 1024;

/**
 * A reused buffer holding bytes [start, start + held) of the active slot, as last read. Reused
 * from one operation to the next (each output is hashed and handed to the slot writer, which
 * copies it, before the next operation runs): a new 4-16 MiB buffer per operation left hundreds of
 * MiB to the garbage collector (on the fixture, 4.7 s of GC in 21 s).
 */
class SlotWindow {
  private buffer = Buffer.alloc(0);
  private start = 0;
  private held = 0;
  /** Where the last range asked for ended: a range starting there continues a sequential run. */
  private lastEnd = -1;

  constructor(private readonly readAhead: number) {}

  /**
   * Bytes [offset, offset + len) of the active slot, valid until the next read of this window.
   * What the last read holds of the new range is kept, not read again; a range continuing the
   * last one reads at least `readAhead` bytes. The bytes are those read then; every use checks
   * them against a digest either way.
   */
  async read(source: FileReadAt, size: number, offset: number, len: number): Promise<Buffer> {
    const heldEnd = this.start + this.held;
    const sequential = offset === this.lastEnd;
    this.lastEnd = offset + len;
    if (offset >= this.start && offset + len <= heldEnd) {
      return this.buffer.subarray(offset - this.start, offset - this.start + len);
    }
    const want = sequential ? Math.max(len, Math.min(size, offset + this.readAhead) - offset) : len;
    if (this.buffer.length < want) {
      const larger = Buffer.allocUnsafeSlow(want);
      this.buffer.copy(larger, 0, 0, this.held);
      this.buffer = larger;
    }
    let have = 0;
    if (offset >= this.start && offset < heldEnd) {
      have = heldEnd - offset;
      this.buffer.copyWithin(0, offset - this.start, offset - this.start + have);
    }
    this.start = offset;
    this.held = have;
    const got = await source.read(this.buffer.subarray(have, want), offset + have);
    if (got !== want - have) {
      throw invalid(`the active slot gave ${got} of ${want - have} bytes`, { [SOURCE_MISMATCH]: true });
    }
    this.held = want;
    return this.buffer.subarray(0, len);
  }
}

/**
 * The apply's reused buffers. Two windows on the active slot, because its reads come in two
 * patterns: COPYs often follow each other through the image (~80 KiB each on the fixture), where
 * one read of a few MiB serves the next ones, but jump where the new image placed files elsewhere;
 * a PATCH's or BSDIFF's source is the old file, anywhere on the slot (consecutive ones overlap, as
 * each takes the old bytes around its file). Reading ahead at every jump read 6.3 GB of the
 * fixture's 512 MiB image (1,599 reads of 4 MiB, most never used; 12.2 s to apply on files, 6.1
 * s reading ahead only in sequence); one window for both re-read a COPY run after each PATCH.
 */
class Scratch {
  constructor(
    /** The active slot, open for the whole apply. */
    readonly source: FileReadAt,
    /** Its image's size: what operations may read. */
    readonly sourceSize: number,
  ) {}

  readonly runs = new SlotWindow(READ_AHEAD_BYTES);
  readonly files = new SlotWindow(0);
  /** A long COPY's source, one piece at a time (see writeInPieces). */
  readonly piece = Buffer.allocUnsafeSlow(PIECE_BYTES);
  /** PIECE_BYTES zero bytes, never written into. */
  readonly zeros = Buffer.alloc(PIECE_BYTES);
  private readonly zeroDigests = new Map<number, Buffer>();

  /**
   * The digest of `len` zero bytes, computed once per length: ZERO operations write the same
   * lengths again and again (98 MB in 27 operations on the fixture), and those bytes never change.
   */
  zeroDigest(len: number): Buffer {
    let digest = this.zeroDigests.get(len);
    if (!digest) {
      const hash = createHash('sha256');
      for (let at = 0; at < len; at += PIECE_BYTES)
        hash.update(this.zeros.subarray(0, Math.min(PIECE_BYTES, len - at)));
      digest = hash.digest().subarray(0, OP_DIGEST_BYTES);
      this.zeroDigests.set(len, digest);
    }
    return digest;
  }
}

/**
 * A ZERO, or a COPY or BSDIFF longer than PIECE_BYTES, written in pieces instead of as one buffer
 * of up to 16 MiB (a zero buffer and a COPY window of that size stayed allocated for the whole
 * apply, and each long BSDIFF allocated its output).
 * Nothing is written before the operation's output is verified: a COPY's source is read and hashed
 * once, then read again to be written, hashed again, and checked again at its end. False when its
 * source does not hold the bytes (nothing written: the caller reads it whole and repairs it). The
 * active slot changing between the two reads (a live root writing right there, in that instant)
 * fails the apply as a source mismatch: the pipeline then fetches the full bundle.
 */
async function writeInPieces(
  op: HopOp,
  i: number,
  data: Buffer | null,
  scratch: Scratch,
  image: BundleDigests,
  output: Writable,
): Promise<boolean> {
  if (op.kind === OP_KINDS.ZERO) {
    if (!scratch.zeroDigest(op.outLen).equals(op.digest)) {
      throw invalid(`hop operation ${i} (ZERO) produced other bytes than the delta says`, { op: i });
    }
    for (let at = 0; at < op.outLen; at += PIECE_BYTES) {
      const piece = scratch.zeros.subarray(0, Math.min(PIECE_BYTES, op.outLen - at));
      await hashImage(image, piece);
      await write(output, piece);
    }
    return true;
  }
  const copied = async (each?: (piece: Buffer) => Promise<void>): Promise<boolean> => {
    const hash = createHash('sha256');
    for (let at = 0; at < op.outLen; at += PIECE_BYTES) {
      const piece = scratch.piece.subarray(0, Math.min(PIECE_BYTES, op.outLen - at));
      if ((await scratch.source.read(piece, op.srcOffset + at)) !== piece.length) return false;
      hash.update(piece);
      await each?.(piece);
    }
    return hash.digest().subarray(0, OP_DIGEST_BYTES).equals(op.digest);
  };
  if (op.kind === OP_KINDS.BSDIFF) return bsdiffInPieces(op, i, data!, scratch, image, output);
  if (!(await copied())) return false;
  const again = await copied(async (piece) => {
    await hashImage(image, piece);
    await write(output, piece);
  });
  if (!again) {
    throw invalid(`the active slot changed while hop operation ${i} (COPY) was copied from it`, {
      [SOURCE_MISMATCH]: true,
      op: i,
    });
  }
  return true;
}

/**
 * A long BSDIFF (a recompiled binary: 4.7 MB at most on the fixture, 16 MiB allowed) decoded twice
 * into one piece buffer instead of into an output buffer of its own: once to check its digest,
 * then again to be written. Its source bytes are read once (they stay in the files window) and
 * decoding is cheap next to hashing (~20 ms for 5 MB), so nothing is lost but that buffer. False
 * when the patch does not give its output from these source bytes (nothing written: the caller
 * decodes it whole and repairs it).
 */
async function bsdiffInPieces(
  op: HopOp,
  i: number,
  data: Buffer,
  scratch: Scratch,
  image: BundleDigests,
  output: Writable,
): Promise<boolean> {
  if (op.srcOffset + op.srcLen > scratch.sourceSize) return false;
  let source: Buffer;
  try {
    source = await scratch.files.read(scratch.source, scratch.sourceSize, op.srcOffset, op.srcLen);
  } catch (err) {
    if (isSourceMismatch(err)) return false;
    throw err;
  }
  const decoded = async (each?: (piece: Buffer) => Promise<void>): Promise<boolean> => {
    const hash = createHash('sha256');
    try {
      for (const piece of bsdiffDecodePieces(source, data, op.outLen, scratch.piece)) {
        hash.update(piece);
        await each?.(piece);
      }
    } catch (err) {
      if (err instanceof BsdiffError) return false;
      throw err;
    }
    return hash.digest().subarray(0, OP_DIGEST_BYTES).equals(op.digest);
  };
  if (!(await decoded())) return false;
  const again = await decoded(async (piece) => {
    await hashImage(image, piece);
    await write(output, piece);
  });
  // The same bytes decoded the same way: only a fault of this process could differ.
  if (!again) throw new Error(`hop operation ${i} (BSDIFF) decoded to other bytes the second time`);
  return true;
}

/** Bytes handed to the hashing thread at once (its blocks' size). */
const HASH_PIECE_BYTES = 1024 * 1024;
/** From this image size on, its hash runs on a thread (as a full download's, services/updates/transfer.ts). */
const THREAD_HASHING_MIN_BYTES = 16 * 1024 * 1024;

/** Passes `bytes` to the image's hash in pieces the hashing thread has room for. */
async function hashImage(image: BundleDigests, bytes: Buffer): Promise<undefined> {
  for (let at = 0; at < bytes.length; at += HASH_PIECE_BYTES) {
    await image.behind();
    image.update(bytes.subarray(at, at + HASH_PIECE_BYTES));
  }
  return undefined;
}

async function runOp(
  op: HopOp,
  data: Buffer | null,
  ctx: DeltaContext,
  header: HopHeader,
  scratch: Scratch,
): Promise<Buffer> {
  const readSource = async (window: SlotWindow, offset: number, len: number): Promise<Buffer> => {
    if (offset + len > header.source.size) throw invalid('a hop operation reads past the source image');
    if (len === 0) return Buffer.alloc(0);
    // Not hashed before use: a patch decodes the same way whatever the source bytes are (its
    // instructions, addresses and lengths come from the verified delta; the source only gives the
    // bytes copied), and its output is checked against its digest before it is written. Source
    // bytes that changed where the patch reads them give a mismatch there, repaired from chunks;
    // bytes that changed in the old bytes around a file that the patch does not use cost nothing.
    // Hashing each PATCH's source first hashed 602 MB on the fixture (1,429 PATCHes reading their
    // old file and the 256 KiB around it) for 9.7 MB of output: ~0.35 s of a 2.5 s apply.
    return window.read(scratch.source, ctx.source.size, offset, len);
  };
  switch (op.kind) {
    case OP_KINDS.COPY:
      return readSource(scratch.runs, op.srcOffset, op.outLen);
    case OP_KINDS.ZERO:
      return Buffer.alloc(op.outLen); // written in pieces (writeInPieces) before it gets here
    case OP_KINDS.NEW:
      return data!;
    case OP_KINDS.PATCH: {
      const source = await readSource(scratch.files, op.srcOffset, op.srcLen);
      let result: Uint8Array;
      try {
        result = decodeVcdiff(data!, source);
      } catch (err) {
        // A VCDIFF that does not decode against these source bytes: the source is not the one.
        throw invalid(`a hop PATCH operation does not decode: ${(err as Error).message}`, {
          [SOURCE_MISMATCH]: true,
        });
      }
      if (result.length !== op.outLen) {
        throw invalid('a hop PATCH operation produced another length than it says', {
          [SOURCE_MISMATCH]: true,
        });
      }
      return Buffer.from(result.buffer, result.byteOffset, result.length);
    }
    case OP_KINDS.BSDIFF:
      return applyBsdiffOp(op, data!, await readSource(scratch.files, op.srcOffset, op.srcLen), header);
  }
}

function write(output: Writable, bytes: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    output.once('error', onError);
    output.write(bytes, (err) => {
      output.off('error', onError);
      if (err) reject(err);
      else resolve();
    });
  });
}

/** Exactly-n-bytes reads over a stream (the decoded delta body). */
class ByteReader {
  private readonly iterator: AsyncIterator<Buffer>;
  private pending: Buffer[] = [];
  private buffered = 0;

  constructor(stream: Readable) {
    this.iterator = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  async read(n: number): Promise<Buffer> {
    while (this.buffered < n) {
      const next = await this.iterator.next();
      if (next.done) throw invalid('the hop delta ends in the middle of an operation');
      this.pending.push(next.value);
      this.buffered += next.value.length;
    }
    const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.buffered);
    const result = all.subarray(0, n);
    const rest = all.subarray(n);
    this.pending = rest.length ? [rest] : [];
    this.buffered = rest.length;
    return result;
  }
}

function readHeader(file: string): { header: HopHeader; bodyStart: number } {
  const fd = fs.openSync(file, 'r');
  try {
    const head = Buffer.alloc(HOP_MAGIC.length + 4);
    fs.readSync(fd, head, 0, head.length, 0);
    if (!head.subarray(0, HOP_MAGIC.length).equals(HOP_MAGIC)) throw invalid('not a hop delta (bad magic)');
    const len = head.readUInt32BE(HOP_MAGIC.length);
    if (len > MAX_HEADER_BYTES) throw invalid('hop delta header too large');
    const json = Buffer.alloc(len);
    fs.readSync(fd, json, 0, len, head.length);
    let parsed: unknown;
    try {
      parsed = JSON.parse(json.toString('utf8'));
    } catch {
      throw invalid('hop delta header is not JSON');
    }
    const header = HopHeaderSchema.safeParse(parsed);
    if (!header.success) throw invalid(`hop delta header is invalid: ${header.error.message}`);
    return { header: header.data, bodyStart: head.length + len };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The delta into the work directory, verified against the length and SHA-256 the manifest signed
 * before any operation runs (a tampered delta never writes a byte). An interrupted download goes on
 * from what the file holds with one ranged GET; the whole file is hashed again at the end either way.
 */
async function downloadDelta(ref: DeltaRef, ctx: DeltaContext): Promise<{ file: string; wireBytes: number }> {
  const { artifact } = ref;
  const file = path.join(ctx.workDir, `${artifact.sha256}.hop`);
  const partial = `${file}.partial`;
  let wireBytes = 0;
  if (!fs.existsSync(file)) {
    let have = fs.existsSync(partial) ? fs.statSync(partial).size : 0;
    if (have > artifact.size) {
      fs.rmSync(partial);
      have = 0;
    }
    if (have < artifact.size) {
      const stream = await ctx.fetch.open(
        artifact,
        have > 0 ? { start: have, end: artifact.size } : null,
        ctx.signal,
      );
      const fd = fs.openSync(partial, have > 0 ? 'r+' : 'w');
      try {
        let at = have;
        let reported = 0;
        await consumeChunks(stream, (chunk) => {
          fs.writeSync(fd, chunk, 0, chunk.length, at);
          at += chunk.length;
          wireBytes += chunk.length;
          if (wireBytes - reported >= PROGRESS_BYTES) {
            reported = wireBytes;
            ctx.onProgress({ outputBytes: 0, wireBytes });
          }
          return undefined;
        });
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
    const got = await hashFileOf(partial);
    if (got.size !== artifact.size || got.sha256 !== artifact.sha256) {
      fs.rmSync(partial, { force: true });
      throw invalid(`hop delta ${artifact.target} does not match its signed length and SHA-256`, {
        expected: artifact.sha256,
        actual: got.sha256,
      });
    }
    fs.renameSync(partial, file);
  } else {
    const got = await hashFileOf(file);
    if (got.size !== artifact.size || got.sha256 !== artifact.sha256) {
      fs.rmSync(file, { force: true });
      throw invalid(`the downloaded hop delta ${artifact.target} changed on disk`);
    }
  }
  ctx.onProgress({ outputBytes: 0, wireBytes });
  return { file, wireBytes };
}

async function hashFileOf(file: string): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  await consumeChunks(fs.createReadStream(file), (chunk) => {
    hash.update(chunk);
    size += chunk.length;
    return undefined;
  });
  return { size, sha256: hash.digest('hex') };
}
