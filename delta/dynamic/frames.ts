import { decompress } from 'fzstd';

/**
 * The one place the gateway decompresses a chunk's frame. The frame comes off the network and is
 * not covered by a hash of its own (only the chunk it decompresses to is), so the output is
 * bounded by the chunk length the signed index gives: the decoder writes into a buffer of exactly
 * that size (the frame must declare it: the publisher's frames always do) and anything else is
 * refused. Bytes a forged frame decodes past that size are dropped, never allocated; the caller
 * then checks the chunk's SHA-256, which is what proves the bytes right.
 */
const ZSTD_MAGIC = 0xfd2fb528;

export class FrameError extends Error {
  override name = 'FrameError';
}

/** The content size a zstd frame header declares, or null when it declares none. */
export function zstdContentSize(frame: Uint8Array): number | null {
  if (frame.length < 6) throw new FrameError('truncated zstd frame header');
  const view = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  if (view.readUInt32LE(0) !== ZSTD_MAGIC) throw new FrameError('not a zstd frame');
  const descriptor = view[4]!;
  const fcsFlag = descriptor >> 6;
  const singleSegment = (descriptor >> 5) & 1;
  const dictFlag = descriptor & 3;
  if (dictFlag !== 0) throw new FrameError('zstd frame needs a dictionary');
  const fcsBytes = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag]!;
  if (fcsBytes === 0) return null;
  const at = 5 + (singleSegment ? 0 : 1);
  if (view.length < at + fcsBytes) throw new FrameError('truncated zstd frame header');
  switch (fcsBytes) {
    case 1:
      return view[at]!;
    case 2:
      return view.readUInt16LE(at) + 256;
    case 4:
      return view.readUInt32LE(at);
    default:
      return Number(view.readBigUInt64LE(at));
  }
}

/**
 * Decompresses one chunk's frame into exactly `length` bytes, or throws FrameError. With `into`
 * (at least `length` bytes) the chunk is decoded there, in place of a new buffer.
 */
export function decompressFrame(frame: Uint8Array, length: number, into?: Buffer): Buffer {
  const declared = zstdContentSize(frame);
  if (declared === null) throw new FrameError('zstd frame does not declare its content size');
  if (declared !== length) {
    throw new FrameError(`zstd frame declares ${declared} bytes; the index says ${length}`);
  }
  if (into && into.length < length) throw new RangeError(`a ${into.length}-byte buffer for ${length} bytes`);
  // Zeroed: a frame that decodes to fewer bytes must not leave stale bytes in the chunk.
  const out = into ? into.subarray(0, length).fill(0) : Buffer.alloc(length);
  let result: Uint8Array;
  try {
    result = decompress(frame, out);
  } catch (err) {
    throw new FrameError(`zstd frame does not decompress: ${(err as Error).message}`);
  }
  if (result.length !== length) {
    throw new FrameError(`zstd frame decompresses to ${result.length} bytes; the index says ${length}`);
  }
  return out;
}
