import { createHash } from 'node:crypto';
import type { Writable } from 'node:stream';
import type { BundleDigests } from '../../bundle/digests.js';
import { BsdiffError, bsdiffDecodePieces } from './bsdiff.js';
import { OP_DIGEST_BYTES, OP_KINDS, type HopOp } from './format.js';
import { PIECE_BYTES, type Scratch } from './slot-window.js';
import { invalid, isSourceMismatch, SOURCE_MISMATCH } from './verify.js';

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
export async function writeInPieces(
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
  if (op.kind === OP_KINDS.BSDIFF) return bsdiffInPieces(op, i, data!, scratch, image, output);
  const written = await writeVerified(op, () => copyPieces(op, scratch), image, output);
  if (written === 'changed') {
    throw invalid(`the active slot changed while hop operation ${i} (COPY) was copied from it`, {
      [SOURCE_MISMATCH]: true,
      op: i,
    });
  }
  return written;
}

/** A long COPY's source, read piece by piece into the scratch piece buffer. */
async function* copyPieces(op: HopOp, scratch: Scratch): AsyncGenerator<Buffer> {
  for (let at = 0; at < op.outLen; at += PIECE_BYTES) {
    const piece = scratch.piece.subarray(0, Math.min(PIECE_BYTES, op.outLen - at));
    const got = await scratch.source.read(piece, op.srcOffset + at);
    if (got !== piece.length) {
      throw invalid(`the active slot gave ${got} of ${piece.length} bytes`, { [SOURCE_MISMATCH]: true });
    }
    yield piece;
  }
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
  const written = await writeVerified(
    op,
    () => bsdiffDecodePieces(source, data, op.outLen, scratch.piece),
    image,
    output,
  );
  // The same bytes decoded the same way: only a fault of this process could differ.
  if (written === 'changed')
    throw new Error(`hop operation ${i} (BSDIFF) decoded to other bytes the second time`);
  return written;
}

/**
 * An operation's output, made twice by `pieces` (each piece valid until the next): hashed and
 * checked against its digest first, then hashed again, handed to the image's hash and the slot,
 * and checked again. False when the first pass does not give the digest (nothing written);
 * 'changed' when the second pass does not (its pieces are on the slot).
 */
async function writeVerified(
  op: HopOp,
  pieces: () => AsyncIterable<Buffer> | Iterable<Buffer>,
  image: BundleDigests,
  output: Writable,
): Promise<boolean | 'changed'> {
  if (!(await digestOfPieces(pieces()))?.equals(op.digest)) return false;
  const again = await digestOfPieces(pieces(), async (piece) => {
    await hashImage(image, piece);
    await write(output, piece);
  });
  return again?.equals(op.digest) ? true : 'changed';
}

/**
 * The digest of the pieces, each handed to `each` before the next is made; null when they cannot
 * be made from the slot's bytes (a short read, a patch that does not fit them).
 */
async function digestOfPieces(
  pieces: AsyncIterable<Buffer> | Iterable<Buffer>,
  each?: (piece: Buffer) => Promise<void>,
): Promise<Buffer | null> {
  const hash = createHash('sha256');
  try {
    for await (const piece of pieces) {
      hash.update(piece);
      await each?.(piece);
    }
  } catch (err) {
    if (err instanceof BsdiffError || isSourceMismatch(err)) return null;
    throw err;
  }
  return hash.digest().subarray(0, OP_DIGEST_BYTES);
}

/** Bytes handed to the hashing thread at once (its blocks' size). */
const HASH_PIECE_BYTES = 1024 * 1024;

/** Passes `bytes` to the image's hash in pieces the hashing thread has room for. */
export async function hashImage(image: BundleDigests, bytes: Buffer): Promise<undefined> {
  for (let at = 0; at < bytes.length; at += HASH_PIECE_BYTES) {
    await image.behind();
    image.update(bytes.subarray(at, at + HASH_PIECE_BYTES));
  }
  return undefined;
}

export function write(output: Writable, bytes: Buffer): Promise<void> {
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
