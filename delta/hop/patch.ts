import { GantryError } from '../../core/errors.js';
import { BsdiffError, bsdiffDecode } from './bsdiff.js';
import { HOP_FORMAT_V2, type HopHeader, type HopOp } from './format.js';

/**
 * The gateway's side of a BSDIFF operation: `source` is the operation's source range of the active
 * slot. Its memory is bounded by the operation (source ≤ 16 MiB, patch, output ≤ 16 MiB). A BSDIFF
 * operation in a `gantry-hop-v1` delta is refused (that format has no such kind). A patch that does
 * not decode against these source bytes is a source mismatch, as for PATCH: the delta's whole
 * hash was verified before the first operation, so the bytes that differ are the slot's.
 */
export function applyBsdiffOp(op: HopOp, data: Buffer, source: Buffer, header: HopHeader): Buffer {
  if (header.format !== HOP_FORMAT_V2) {
    throw new GantryError('OTA_INVALID_IMAGE', `a ${header.format} hop delta cannot hold a BSDIFF operation`);
  }
  try {
    return bsdiffDecode(source, data, op.outLen);
  } catch (err) {
    if (!(err instanceof BsdiffError)) throw err;
    throw new GantryError('OTA_INVALID_IMAGE', `a hop BSDIFF operation does not decode: ${err.message}`, {
      source_mismatch: true,
    });
  }
}
