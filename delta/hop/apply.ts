import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { decode as decodeVcdiff } from '@ably/vcdiff-decoder';
import { applyBsdiffOp } from './patch.js';
import { createDecompressor } from '../../bundle/compression.js';
import type { DeltaRef } from '../../bundle/manifest.js';
import { GantryError, isGantryError } from '../../core/errors.js';
import { writeFileAtomicSync } from '../../core/fsutil.js';
import { consumeChunks } from '../../core/lending.js';
import type { DeltaContext, DeltaPlan } from '../path.js';
import {
  decodeOpHeader,
  HOP_MAGIC,
  HopHeaderSchema,
  MAX_HEADER_BYTES,
  OP_DIGEST_BYTES,
  OP_HEADER_BYTES,
  OP_KINDS,
  OP_NAMES,
  opReadsSource,
  type HopHeader,
  type HopOp,
} from './format.js';

/** Durability cadence of an apply: fsync the slot, then the journal, after this much output. */
export interface CheckpointCadence {
  bytes: number;
  ops: number;
}
const DEFAULT_CADENCE: CheckpointCadence = { bytes: 32 * 1024 * 1024, ops: 256 };
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

/** The hop path for one published delta: one GET of the delta, then operations applied locally. */
export function createHopPlan(ref: DeltaRef, cadence: Partial<CheckpointCadence> = {}): DeltaPlan {
  const every = { ...DEFAULT_CADENCE, ...cadence };
  return {
    path: 'hop',
    plannedBytes: ref.artifact.size,
    requests: 1,
    apply: (ctx) => applyHop(ref, ctx, every),
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
 * `source_sha256`, checked first, and every operation reading it checks its output); the delta is
 * downloaded to the job's work directory and verified whole (length and SHA-256 signed in the
 * manifest) before its first operation runs; the image is written in order onto the inactive slot,
 * each operation's output verified before the next, and the whole image's hash checked at the end.
 */
async function applyHop(
  ref: DeltaRef,
  ctx: DeltaContext,
  every: CheckpointCadence,
): Promise<{ wireBytes: number }> {
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
  const hash = createHash('sha256');
  if (journal.out > 0) {
    await consumeChunks(ctx.readOutput(0, journal.out - 1), (chunk) => {
      hash.update(chunk);
      return undefined;
    });
  }
  const body = fs.createReadStream(file, { start: bodyStart, highWaterMark: 256 * 1024 });
  const decoded = body.pipe(createDecompressor(header.codec, header.body_bytes));
  body.on('error', (err) => decoded.destroy(err));
  const reader = new ByteReader(decoded);
  const output = await ctx.openOutput(journal.out);
  let out = journal.out;
  let sinceCheckpoint = 0;
  let opsSinceCheckpoint = 0;
  try {
    for (let i = 0; i < header.ops; i++) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      const op = decodeOpHeader(await reader.read(OP_HEADER_BYTES));
      const data = op.dataLen > 0 ? await reader.read(op.dataLen) : null;
      if (i < journal.op) continue; // done before the restart: its bytes are on the slot, hashed above
      const bytes = await runOp(op, data, ctx, header);
      const digest = createHash('sha256').update(bytes).digest().subarray(0, OP_DIGEST_BYTES);
      if (!digest.equals(op.digest)) {
        const readsSource = opReadsSource(op);
        throw invalid(
          `hop operation ${i} (${opName(op)}) produced other bytes than the delta says${readsSource ? ': the active slot does not hold the image its record names' : ''}`,
          readsSource ? { [SOURCE_MISMATCH]: true, op: i } : { op: i },
        );
      }
      if (out + bytes.length > ctx.payload.size) throw invalid('the hop delta writes past the image size');
      hash.update(bytes);
      await write(output, bytes);
      out += bytes.length;
      sinceCheckpoint += bytes.length;
      opsSinceCheckpoint++;
      if (sinceCheckpoint >= every.bytes || opsSinceCheckpoint >= every.ops) {
        await checkpoint(output, ctx, { delta_sha256: ref.artifact.sha256, op: i + 1, out });
        sinceCheckpoint = 0;
        opsSinceCheckpoint = 0;
        ctx.onProgress({ outputBytes: out, wireBytes });
      }
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
  const digest = hash.digest('hex');
  if (out !== ctx.payload.size || digest !== ctx.payload.sha256) {
    throw invalid(`the image built from the hop delta does not match its signed SHA-256`, {
      expected: ctx.payload.sha256,
      actual: digest,
      bytes: out,
    });
  }
  fs.rmSync(journalPath(ctx), { force: true });
  ctx.onProgress({ outputBytes: out, wireBytes });
  return { wireBytes };
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

async function runOp(op: HopOp, data: Buffer | null, ctx: DeltaContext, header: HopHeader): Promise<Buffer> {
  const readSource = async (offset: number, len: number): Promise<Buffer> => {
    if (offset + len > header.source.size) throw invalid('a hop operation reads past the source image');
    if (len === 0) return Buffer.alloc(0);
    return collect(ctx.source.read(offset, offset + len - 1), len);
  };
  switch (op.kind) {
    case OP_KINDS.COPY:
      return readSource(op.srcOffset, op.outLen);
    case OP_KINDS.ZERO:
      return Buffer.alloc(op.outLen);
    case OP_KINDS.NEW:
      return data!;
    case OP_KINDS.PATCH: {
      const source = await readSource(op.srcOffset, op.srcLen);
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
      return applyBsdiffOp(op, data!, await readSource(op.srcOffset, op.srcLen), header);
  }
}

async function collect(stream: Readable, len: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(len);
  let at = 0;
  await consumeChunks(stream, (chunk) => {
    at += chunk.copy(buf, at);
    return undefined;
  });
  if (at !== len) throw invalid(`the active slot gave ${at} of ${len} bytes`, { [SOURCE_MISMATCH]: true });
  return buf;
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
