import { z } from 'zod';
import { Sha256Schema } from '../artifact.js';

/**
 * The hop delta file (a feed target named in the signed manifest by its length and SHA-256):
 *
 *   MAGIC (8 bytes) | header length (u32 BE) | header (JSON, HopHeader) | body (compressed with
 *   `header.codec`)
 *
 * The body, once decoded, is a sequence of operations, each producing the next bytes of the image
 * (the output is written strictly in order, so a slot is written like a stream):
 *
 *   kind u8 | output length u32 | source offset u48 | source length u32 | data length u32 |
 *   output digest (first 16 bytes of its SHA-256) | [source digest] | data
 *
 * With `header.source_digests` (deltas of publishers before 2026-12-05), a PATCH and a BSDIFF
 * carry a source digest: the first 16 bytes of the SHA-256 of the source bytes they read. The
 * gateway skips them: an operation's output digest is what tells whether the active slot still
 * holds the source bytes it uses; when it does not (a live root rewrites its superblock, journal,
 * /etc, /var), that operation's output is repaired from the bundle's chunks.
 *
 *   COPY   source bytes [offset, offset + output length) of the active slot
 *   ZERO   output length zero bytes
 *   NEW    the data itself
 *   PATCH  VCDIFF (RFC 3284, no secondary compression) of the output against the source bytes
 *          [offset, offset + source length): a changed file against its old version
 *   BSDIFF bsdiff-style patch (delta/hop/bsdiff.ts: approximate copies as byte-wise differences,
 *          plus extra bytes) of the output against the source bytes [offset, offset + source
 *          length): a recompiled binary, whose shifted addresses VCDIFF carries poorly
 *
 * Versions: `gantry-hop-v1` has COPY, ZERO, NEW and PATCH; `gantry-hop-v2` adds BSDIFF (kind 5). The
 * publisher writes v1 when no BSDIFF operation was chosen, so older gateways still apply such a
 * delta; a v2 delta is refused by a v1 gateway at its header (the format literal), before any
 * operation runs, and a BSDIFF operation in a v1 delta is refused here.
 *
 * Every operation reads at most MAX_OP_BYTES of the source and writes at most MAX_OP_BYTES, so the
 * gateway's memory stays flat whatever the image size. The digest lets the gateway verify each
 * operation's output before the next (the delta itself is verified whole before the first; what
 * the digest catches is an active slot that does not hold what its record says).
 */
export const HOP_MAGIC = Buffer.from('GNTRHOP1', 'latin1');
export const HOP_FORMAT = 'gantry-hop-v1';
export const HOP_FORMAT_V2 = 'gantry-hop-v2';
export const MAX_OP_BYTES = 16 * 1024 * 1024;
export const OP_HEADER_BYTES = 1 + 4 + 6 + 4 + 4 + 16;
export const OP_DIGEST_BYTES = 16;
/** Bytes after a PATCH operation's header when the delta carries source digests. */
export const SOURCE_DIGEST_BYTES = 16;
export const MAX_HEADER_BYTES = 64 * 1024;

export const OP_KINDS = { COPY: 1, ZERO: 2, NEW: 3, PATCH: 4, BSDIFF: 5 } as const;
export type OpKind = (typeof OP_KINDS)[keyof typeof OP_KINDS];
export const OP_NAMES = ['', 'COPY', 'ZERO', 'NEW', 'PATCH', 'BSDIFF'] as const;
export type OpName = Exclude<(typeof OP_NAMES)[number], ''>;

/** Whether an operation's output depends on the active slot's bytes. */
export function opReadsSource(op: { kind: OpKind }): boolean {
  return op.kind === OP_KINDS.COPY || op.kind === OP_KINDS.PATCH || op.kind === OP_KINDS.BSDIFF;
}

export const HopHeaderSchema = z.lazy(() =>
  z.strictObject({
    format: z.enum([HOP_FORMAT, HOP_FORMAT_V2]),
    /** How the publisher found the operations: ext4 extent maps, or blocks (any image). */
    mode: z.enum(['ext4', 'blocks']),
    codec: z.enum(['zstd', 'brotli', 'none']),
    source: z.strictObject({ size: z.int().nonnegative(), sha256: Sha256Schema }),
    target: z.strictObject({ size: z.int().nonnegative(), sha256: Sha256Schema }),
    ops: z.int().nonnegative(),
    /**
     * PATCH and BSDIFF operations carry the digest of the source bytes they read (SOURCE_DIGEST_BYTES):
     * written by publishers before 2026-12-05, read past by the gateway.
     */
    source_digests: z.literal(true).optional(),
    /** Bytes of the decoded body. */
    body_bytes: z.int().nonnegative(),
  }),
);
export type HopHeader = z.infer<typeof HopHeaderSchema>;

export interface HopOp {
  kind: OpKind;
  outLen: number;
  srcOffset: number;
  srcLen: number;
  dataLen: number;
  digest: Buffer;
  /** A PATCH's or BSDIFF's source digest (first 16 bytes of the SHA-256 of the bytes it reads), when carried. */
  sourceDigest?: Buffer;
}

/** Whether an operation of this kind carries a source digest in a delta with `source_digests`. */
export function carriesSourceDigest(kind: OpKind): boolean {
  // A COPY's output digest is its source's already; ZERO and NEW read nothing.
  return kind === OP_KINDS.PATCH || kind === OP_KINDS.BSDIFF;
}

export function encodeOpHeader(op: HopOp): Buffer {
  const b = Buffer.alloc(OP_HEADER_BYTES);
  b.writeUInt8(op.kind, 0);
  b.writeUInt32BE(op.outLen, 1);
  b.writeUIntBE(op.srcOffset, 5, 6);
  b.writeUInt32BE(op.srcLen, 11);
  b.writeUInt32BE(op.dataLen, 15);
  op.digest.copy(b, 19, 0, OP_DIGEST_BYTES);
  if (!op.sourceDigest) return b;
  return Buffer.concat([b, op.sourceDigest.subarray(0, SOURCE_DIGEST_BYTES)]);
}

/** Decodes and bounds-checks one operation header (the caller checks source ranges and totals). */
export function decodeOpHeader(b: Buffer): HopOp {
  const kind = b.readUInt8(0);
  if (kind < 1 || kind > 5) throw new Error(`unknown operation kind ${kind}`);
  const op: HopOp = {
    kind: kind as OpKind,
    outLen: b.readUInt32BE(1),
    srcOffset: b.readUIntBE(5, 6),
    srcLen: b.readUInt32BE(11),
    dataLen: b.readUInt32BE(15),
    digest: Buffer.from(b.subarray(19, 19 + OP_DIGEST_BYTES)),
  };
  if (op.outLen > MAX_OP_BYTES || op.srcLen > MAX_OP_BYTES || op.dataLen > MAX_OP_BYTES + 1024 * 1024) {
    throw new Error('an operation exceeds the 16 MiB bound');
  }
  if (op.kind === OP_KINDS.NEW && op.dataLen !== op.outLen)
    throw new Error('NEW data length differs from its output');
  if ((op.kind === OP_KINDS.COPY || op.kind === OP_KINDS.ZERO) && op.dataLen !== 0) {
    throw new Error('COPY/ZERO operations carry no data');
  }
  if (op.kind === OP_KINDS.COPY && op.srcLen !== op.outLen)
    throw new Error('COPY source length differs from its output');
  return op;
}

export function encodeHeader(h: HopHeader): Buffer {
  const json = Buffer.from(JSON.stringify(h), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(json.length, 0);
  return Buffer.concat([HOP_MAGIC, len, json]);
}
