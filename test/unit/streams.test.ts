import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { LendingFileReader } from '../../core/file-reader.js';
import { pipeChunks, writeLent } from '../../core/streams.js';
import { makeTempDir } from '../helpers/temp.js';

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

describe('pipeChunks', () => {
  const dir = makeTempDir('gantry-pipe-chunks-');
  const data = randomBytes(200_000);
  const file = path.join(dir, 'image.bin');
  fs.writeFileSync(file, data);

  /** Keeps a copy of each chunk, made only when it calls back a turn later (legal for lent chunks). */
  const slowCopyingSink = (kept: Buffer[], failAfter = Infinity) =>
    new Writable({
      highWaterMark: 1 << 30,
      write(chunk: Buffer, _enc, cb) {
        setImmediate(() => {
          if (kept.length >= failAfter) return cb(new Error('disk full'));
          kept.push(Buffer.from(chunk));
          cb();
        });
      },
    });

  it('should move every byte of a lent file into a sink that copies late, seeing each chunk first', async () => {
    const kept: Buffer[] = [];
    let seen = 0;
    await pipeChunks(new LendingFileReader(file, {}, 16 * 1024), slowCopyingSink(kept), {
      onChunk: (chunk) => (seen += chunk.length),
    });
    expect(Buffer.concat(kept).equals(data)).toBe(true);
    expect(seen).toBe(data.length);
  });

  it("should reject with the sink's failure and stop reading, or with the abort reason", async () => {
    const source = new LendingFileReader(file, {}, 16 * 1024);
    await expect(pipeChunks(source, slowCopyingSink([], 3))).rejects.toThrow('disk full');
    expect(source.destroyed).toBe(true);

    const ac = new AbortController();
    const sink = slowCopyingSink([]);
    const piping = pipeChunks(new LendingFileReader(file, {}, 1024), sink, {
      signal: ac.signal,
      onChunk: () => ac.abort(new Error('operator cancelled')),
    });
    await expect(piping).rejects.toThrow('operator cancelled');
    expect(sink.destroyed).toBe(true);
  });
});
