import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import {
  canLendChunks,
  consumeChunks,
  LendingFileReader,
  pipeChunks,
  writeLent,
} from '../../core/lending.js';
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

describe('LendingFileReader', () => {
  const dir = makeTempDir('gantry-file-reader-');
  const data = randomBytes(300_000);
  const file = path.join(dir, 'image.bin');
  fs.writeFileSync(file, data);

  /** Lends the reader to a consumer that keeps every other chunk a while, checking it is intact after. */
  async function lendAll(reader: LendingFileReader): Promise<{ bytes: Buffer; views: Set<ArrayBufferLike> }> {
    const copies: Buffer[] = [];
    const views = new Set<ArrayBufferLike>();
    let n = 0;
    await reader.lend((chunk) => {
      const copy = Buffer.from(chunk);
      copies.push(copy);
      views.add(chunk.buffer);
      if (n++ % 2 === 0) return undefined;
      return new Promise<void>((resolve, reject) =>
        setTimeout(() => (chunk.equals(copy) ? resolve() : reject(new Error('lent chunk overwritten'))), 1),
      );
    });
    return { bytes: Buffer.concat(copies), views };
  }

  it('should lend a whole file, or a range of it, through one reused buffer', async () => {
    const whole = await lendAll(new LendingFileReader(file, {}, 64 * 1024));
    expect(whole.bytes.equals(data)).toBe(true);
    expect(whole.views.size).toBe(1); // every chunk a view of the same memory

    const range = await lendAll(new LendingFileReader(file, { start: 1000, end: 250_000 }, 64 * 1024));
    expect(range.bytes.equals(data.subarray(1000, 250_001))).toBe(true);
  });

  it('should take no larger a buffer than its range for a small range', async () => {
    // Thousands of small reads of a slot (a hop delta's sources) each allocated the whole default.
    const small = await lendAll(new LendingFileReader(file, { start: 100, end: 4195 }));
    expect(small.bytes.equals(data.subarray(100, 4196))).toBe(true);
    expect([...small.views].map((v) => v.byteLength)).toEqual([4096]);
  });

  it('should read as an ordinary Readable, each chunk its own buffer, and then not lend', async () => {
    const reader = new LendingFileReader(file, { start: 5 }, 64 * 1024);
    const chunks: Buffer[] = [];
    for await (const c of reader) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).equals(data.subarray(5))).toBe(true);
    expect(new Set(chunks.map((c) => c.buffer)).size).toBe(chunks.length);

    const listened = new LendingFileReader(file);
    listened.on('data', () => undefined);
    expect(canLendChunks(listened)).toBe(false);
    listened.destroy();
  });

  it('should be lent by consumeChunks, and fail it on a missing file or a destroy', async () => {
    let total = 0;
    await consumeChunks(new LendingFileReader(file), (chunk) => {
      total += chunk.length;
      return undefined;
    });
    expect(total).toBe(data.length);

    await expect(lendAll(new LendingFileReader(path.join(dir, 'missing.bin')))).rejects.toThrow(/ENOENT/);

    const reader = new LendingFileReader(file, {}, 1024);
    const lending = reader.lend(() => {
      reader.destroy(new Error('cancelled'));
      return undefined;
    });
    await expect(lending).rejects.toThrow('cancelled');
  });
});
