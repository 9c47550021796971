import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { writeLent } from '../../core/streams.js';

describe('writeLent', () => {
  it('should let go at once of a chunk the stream took synchronously, even past its high-water mark', () => {
    const seen: number[] = [];
    const sink = new Writable({
      highWaterMark: 4,
      write(chunk: Buffer, _enc, cb) {
        seen.push(chunk.length);
        cb();
      },
    });
    expect(writeLent(sink, Buffer.alloc(1024))).toBeUndefined();
    expect(seen).toEqual([1024]);
  });

  it('should hold a chunk until the stream calls back for it', async () => {
    let callback!: () => void;
    const sink = new Writable({
      write(_chunk, _enc, cb) {
        callback = cb;
      },
    });
    let released = false;
    const releasing = writeLent(sink, Buffer.alloc(10));
    expect(releasing).toBeInstanceOf(Promise);
    void releasing!.then(() => (released = true));
    await new Promise((r) => setImmediate(r));
    expect(released).toBe(false);
    callback();
    await releasing;
    expect(released).toBe(true);
  });

  it('should let go of a chunk when the stream is destroyed before calling back', async () => {
    const sink = new Writable({ write() {} });
    sink.on('error', () => undefined);
    const releasing = writeLent(sink, Buffer.alloc(10));
    expect(releasing).toBeInstanceOf(Promise);
    sink.destroy(new Error('slot gone'));
    await expect(releasing).resolves.toBeUndefined();
  });
});
