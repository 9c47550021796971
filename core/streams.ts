import type { EventEmitter } from 'node:events';

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
