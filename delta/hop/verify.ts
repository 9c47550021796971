import { createHash } from 'node:crypto';
import { GantryError, isGantryError } from '../../core/errors.js';
import { OP_DIGEST_BYTES, OP_NAMES, opReadsSource, type HopOp } from './format.js';

/**
 * How a hop apply checks what it produces, and the errors it fails with: `OTA_INVALID_IMAGE`, with
 * `details.source_mismatch` when the active slot does not hold the bytes an operation reads (the
 * pipeline then repairs it from chunks or fetches the full bundle).
 */

/** `details.source_mismatch` of the error an operation reading the active slot fails with. */
export const SOURCE_MISMATCH = 'source_mismatch';

/** The active slot did not give the bytes the delta was computed from: the delta cannot be used. */
export function isSourceMismatch(err: unknown): boolean {
  return isGantryError(err) && err.details?.[SOURCE_MISMATCH] === true;
}

export function invalid(message: string, details?: Record<string, unknown>): GantryError {
  return new GantryError('OTA_INVALID_IMAGE', message, details);
}

export function digestOf(bytes: Buffer): Buffer {
  return createHash('sha256').update(bytes).digest().subarray(0, OP_DIGEST_BYTES);
}

/**
 * An operation's output against its digest. For an operation reading the active slot, other
 * bytes mean the slot does not hold the source the delta was made from (a source mismatch).
 */
export function checkOutput(op: HopOp, i: number, bytes: Buffer): void {
  if (digestOf(bytes).equals(op.digest)) return;
  const readsSource = opReadsSource(op);
  throw invalid(
    `hop operation ${i} (${opName(op)}) produced other bytes than the delta says${readsSource ? ': the active slot does not hold the image its record names' : ''}`,
    readsSource ? { [SOURCE_MISMATCH]: true, op: i } : { op: i },
  );
}

export function opName(op: HopOp): string {
  return OP_NAMES[op.kind];
}
