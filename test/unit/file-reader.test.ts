import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LendingFileReader } from '../../core/file-reader.js';
import { canLendChunks, consumeChunks } from '../../core/streams.js';
import { makeTempDir } from '../helpers/temp.js';

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

describe('LendingFileReader', () => {
  it('should lend a whole file, or a range of it, through one reused buffer', async () => {
    const whole = await lendAll(new LendingFileReader(file, {}, 64 * 1024));
    expect(whole.bytes.equals(data)).toBe(true);
    expect(whole.views.size).toBe(1); // every chunk a view of the same memory

    const range = await lendAll(new LendingFileReader(file, { start: 1000, end: 250_000 }, 64 * 1024));
    expect(range.bytes.equals(data.subarray(1000, 250_001))).toBe(true);
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
