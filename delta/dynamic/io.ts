import type { Readable, Writable } from 'node:stream';
import { GantryError } from '../../core/errors.js';
import { consumeChunks, writeLent } from '../../core/lending.js';
import type { ReadAt } from './chunker.js';

/**
 * Positional reads over a source that opens byte ranges as streams (a slot: `read(start, end)`,
 * end inclusive). Reads are served from one window of `windowBytes` read ahead, so the mostly
 * ascending reads of chunking and of copying local chunks cost one stream per window, and memory
 * stays at one window.
 */
export function windowedReadAt(
  open: (start: number, end: number) => Readable,
  size: number,
  windowBytes = 1024 * 1024,
): ReadAt {
  let buf = Buffer.alloc(0);
  let window = buf;
  let windowStart = 0;
  return async (into, position) => {
    if (position >= size || into.length === 0) return 0;
    if (position < windowStart || position >= windowStart + window.length) {
      const length = Math.min(Math.max(windowBytes, into.length), size - position);
      if (buf.length < length) buf = Buffer.allocUnsafe(Math.max(windowBytes, length));
      window = buf.subarray(0, 0);
      let filled = 0;
      await consumeChunks(open(position, position + length - 1), (chunk) => {
        if (filled + chunk.length > length) throw new Error(`a range read of ${length} bytes gave more`);
        chunk.copy(buf, filled);
        filled += chunk.length;
        return undefined;
      });
      window = buf.subarray(0, filled);
      windowStart = position;
    }
    return window.copy(into, 0, position - windowStart);
  };
}

/** A sequential writer as the applier's positional one: positions must follow each other. */
export function sequentialWrite(
  output: Writable,
  start: number,
): (data: Uint8Array, position: number) => Promise<void> {
  let next = start;
  return async (data, position) => {
    if (position !== next) {
      throw new GantryError('OTA_INSTALL_FAILED', `a write at ${position} where the slot is at ${next}`);
    }
    next += data.length;
    if (output.destroyed) throw new GantryError('OTA_INSTALL_FAILED', 'the slot writer closed');
    // The applier reuses the buffer once this settles: held until the stream is done with it.
    await writeLent(output, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  };
}
