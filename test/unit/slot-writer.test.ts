import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { finished } from 'node:stream/promises';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SlotWriter } from '../../device/slot-writer.js';
import { cachedBytes, directIoSupported } from '../helpers/page-cache.js';
import { makeTempDir } from '../helpers/temp.js';

function writeChunk(writer: SlotWriter, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => writer.write(chunk, (err) => (err ? reject(err) : resolve())));
}

async function end(writer: SlotWriter): Promise<void> {
  writer.end();
  await finished(writer);
}

describe('SlotWriter', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });
  const dir = makeTempDir('gantry-slot-writer-');
  const direct = directIoSupported(dir);

  it('should write aligned runs by direct I/O, past the page cache, where the slot allows it', async () => {
    const file = path.join(dir, 'direct.img');
    const image = randomBytes(8 * 1024 * 1024 + 100);
    const writer = new SlotWriter(file, 0, true);
    await writeChunk(writer, image);
    await end(writer);
    // Every whole 4 KiB page of the image; the 100 bytes after them through the page cache.
    expect(writer.directBytes).toBe(direct ? 8 * 1024 * 1024 : 0);
    const cached = cachedBytes(file);
    if (direct && cached !== null) {
      // Only the unaligned tail (100 bytes: one page) went through the page cache; a buffered
      // writer leaves all 8 MiB there.
      expect(cached).toBeLessThanOrEqual(4096);
    }
    // (Read back only now: reading fills the page cache.)
    expect(fs.readFileSync(file).equals(image)).toBe(true);
  });

  it('should write through the page cache when it cannot have aligned memory (an address-space limit)', async () => {
    vi.spyOn(WebAssembly, 'Memory').mockImplementation(() => {
      throw new RangeError('WebAssembly.Memory(): could not allocate memory');
    });
    const file = path.join(dir, 'no-wasm.img');
    const image = randomBytes(3 * 1024 * 1024 + 5);
    const writer = new SlotWriter(file, 0, true);
    await writeChunk(writer, image);
    expect(await writer.checkpoint()).toBe(image.length);
    await end(writer);
    expect(writer.directBytes).toBe(0);
    expect(fs.readFileSync(file).equals(image)).toBe(true);
  });

  it('should write exactly the bytes given, whatever the resume offset, chunking and checkpoints', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 3 * 1024 * 1024 }),
        fc.array(fc.record({ size: fc.integer({ min: 1, max: 700_000 }), checkpoint: fc.boolean() }), {
          minLength: 1,
          maxLength: 12,
        }),
        async (offset, steps) => {
          const file = path.join(dir, 'prop.img');
          // What the slot held before: a resumed write keeps its first `offset` bytes.
          const before = randomBytes(offset + 5000);
          fs.writeFileSync(file, before);
          const writer = new SlotWriter(file, offset, false);
          const parts: Buffer[] = [];
          let written = offset;
          for (const step of steps) {
            const chunk = randomBytes(step.size);
            parts.push(chunk);
            await writeChunk(writer, chunk);
            written += chunk.length;
            if (step.checkpoint) {
              expect(await writer.checkpoint()).toBe(written);
              // Everything reported durable is on the slot now, not in a block.
              const onSlot = fs.readFileSync(file).subarray(offset, written);
              expect(onSlot.equals(Buffer.concat(parts))).toBe(true);
            }
          }
          await end(writer);
          const expected = Buffer.concat([before.subarray(0, offset), ...parts]);
          const back = fs.readFileSync(file);
          expect(back.length).toBe(expected.length);
          expect(back.equals(expected)).toBe(true);
          expect(writer.offset).toBe(expected.length);
        },
      ),
      { numRuns: 25 },
    );
  });

  it('should resume after a crash from the count a checkpoint reported', async () => {
    const file = path.join(dir, 'crash.img');
    const image = randomBytes(3 * 1024 * 1024 + 777);
    const first = new SlotWriter(file, 0, true);
    await writeChunk(first, image.subarray(0, 1_234_567));
    const durable = await first.checkpoint();
    expect(durable).toBe(1_234_567);
    // Bytes after the checkpoint, then the process dies: the writer is torn down mid-stream.
    await writeChunk(first, randomBytes(100_000));
    first.destroy();
    await new Promise((resolve) => first.once('close', resolve));

    const second = new SlotWriter(file, durable, false);
    await writeChunk(second, image.subarray(durable));
    await end(second);
    expect(fs.readFileSync(file).equals(image)).toBe(true);
  });
});
