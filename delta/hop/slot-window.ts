import { createHash } from 'node:crypto';
import type { FileReadAt } from '../../core/lending.js';
import { OP_DIGEST_BYTES } from './format.js';
import { invalid, SOURCE_MISMATCH } from './verify.js';

/** ZERO and long COPY operations are written in pieces of this size (see writeInPieces). */
export const PIECE_BYTES = 1024 * 1024;
/** What a read of a run of COPYs fetches at least (see SlotWindow.read). */
const READ_AHEAD_BYTES = 4 * 1024 * 1024;

/**
 * A reused buffer holding bytes [start, start + held) of the active slot, as last read. Reused
 * from one operation to the next (each output is hashed and handed to the slot writer, which
 * copies it, before the next operation runs): a new 4-16 MiB buffer per operation left hundreds of
 * MiB to the garbage collector (on the fixture, 4.7 s of GC in 21 s).
 */
export class SlotWindow {
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
export class Scratch {
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
