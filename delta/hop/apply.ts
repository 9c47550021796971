import fs from 'node:fs';
import path from 'node:path';
import { applyBsdiffOp } from './patch.js';
import { createDecompressor } from '../../bundle/compression.js';
import { inlineDigests, threadDigests, type BundleDigests } from '../../bundle/digests.js';
import type { DeltaRef, DynamicRef } from '../../bundle/manifest.js';
import { formatBytes } from '../../core/format.js';
import { writeFileAtomicSync } from '../../core/fsutil.js';
import { consumeChunks, type FileReadAt } from '../../core/lending.js';
import { youngGenerationSweeper } from '../../core/young-gc.js';
import type { DeltaContext, DeltaPlan } from '../path.js';
import {
  carriesSourceDigest,
  decodeOpHeader,
  HOP_FORMAT_V2,
  OP_HEADER_BYTES,
  OP_KINDS,
  SOURCE_DIGEST_BYTES,
  type HopHeader,
  type HopOp,
} from './format.js';
import { ByteReader, downloadDelta, readHeader } from './delta-file.js';
import { hashImage, write, writeInPieces } from './pieces.js';
import { ChunkRepair } from './repair.js';
import { PIECE_BYTES, Scratch, type SlotWindow } from './slot-window.js';
import { checkOutput, digestOf, invalid, isSourceMismatch, opName, SOURCE_MISMATCH } from './verify.js';

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
  const decoded = body.pipe(createDecompressor(header.codec, header.body_bytes));
  body.on('error', (err) => decoded.destroy(err));
  const reader = new ByteReader(decoded);
  const sourceDigests = header.source_digests === true;
  const repair = repairRef ? new ChunkRepair(repairRef, ctx) : null;
  let repaired = 0;
  const scratch = new Scratch(source, header.source.size);
  const { decode: decodeVcdiff } = await import('@ably/vcdiff-decoder');
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
        bytes = await runOp(op, data, ctx, header, scratch, decodeVcdiff);
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

async function checkpoint(
  output: { checkpoint(): Promise<number> },
  ctx: DeltaContext,
  journal: HopJournal,
): Promise<void> {
  // The slot first: the journal must never name bytes the disk may not have.
  await output.checkpoint();
  writeFileAtomicSync(journalPath(ctx), JSON.stringify(journal));
}

/** From this image size on, its hash runs on a thread (as a full download's, services/updates/transfer.ts). */
const THREAD_HASHING_MIN_BYTES = 16 * 1024 * 1024;

async function runOp(
  op: HopOp,
  data: Buffer | null,
  ctx: DeltaContext,
  header: HopHeader,
  scratch: Scratch,
  /**
   * The VCDIFF decoder, imported by the first apply: evaluating it at start-up cost ~25 ms of every
   * Gantry restart (server start-up profile), for a path most starts never take.
   */
  decodeVcdiff: (delta: Uint8Array, source: Uint8Array) => Uint8Array,
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
