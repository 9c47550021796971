import type { EventEmitter } from 'node:events';
import type { Writable } from 'node:stream';

/**
 * Resolves on 'drain', or on 'close' so a destroyed stream never leaves the writer hanging. Takes
 * any stream (Node's or the streamx ones tar-stream is built on) that emits those two events.
 */
export function drained(stream: { destroyed: boolean }): Promise<void> {
  const ee = stream as unknown as EventEmitter;
  return new Promise((resolve) => {
    if (stream.destroyed) return resolve();
    const done = (): void => {
      ee.off('drain', done);
      ee.off('close', done);
      resolve();
    };
    ee.on('drain', done);
    ee.on('close', done);
  });
}

/**
 * Takes one chunk. The chunk is only lent: the consumer must copy what it keeps before returning,
 * or return a promise, in which case the chunk stays valid until that promise settles (and no
 * further chunk comes before).
 */
export type ChunkConsumer = (chunk: Buffer) => Promise<void> | undefined;

/**
 * A source that lends its chunks (views of a buffer it reuses) instead of allocating one per read:
 * see feed/http-get.ts. `lend` resolves at the end of the data and rejects on any failure.
 */
export interface ChunkLender {
  canLend(): boolean;
  lend(consume: ChunkConsumer): Promise<void>;
}

/** Is `source` a lender that can still lend (nobody reads it as a stream yet)? */
export function canLendChunks(source: object): source is ChunkLender {
  return typeof (source as Partial<ChunkLender>).lend === 'function' && (source as ChunkLender).canLend();
}

/**
 * Writes a lent chunk (see ChunkConsumer): returns undefined when the stream was done with it at
 * once (copied it, kept nothing), else a promise that settles when the stream let go of it: its
 * write callback ran, or it closed.
 */
export function writeLent(stream: Writable, chunk: Buffer): Promise<void> | undefined {
  let written = false;
  let release: (() => void) | undefined;
  stream.write(chunk, () => {
    written = true;
    release?.();
  });
  if (stream.writableLength === 0) return undefined;
  return new Promise<void>((resolve) => {
    if (written) return resolve();
    const done = (): void => {
      stream.off('close', done);
      resolve();
    };
    release = done;
    stream.on('close', done);
  });
}
