import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TarFormatError, TarReader, type TarStep } from '../../bundle/tar-reader.js';
import { bytes, repack } from './helpers.js';

interface Entry {
  name: string;
  data: Buffer;
  type?: 'file' | 'symlink';
}

const pack = (entries: Entry[]): Promise<Buffer> => repack(entries);

/** Reads `archive` split at `cuts`, gathering each entry's data and where it started. */
function read(
  archive: Buffer,
  cuts: number[] = [],
): { entries: (Entry & { offset: number })[]; steps: TarStep['kind'][] } {
  const reader = new TarReader();
  const entries: (Entry & { offset: number })[] = [];
  const steps: TarStep['kind'][] = [];
  let parts: Buffer[] = [];
  const on = (step: TarStep): void => {
    steps.push(step.kind);
    if (step.kind === 'header') {
      entries.push({
        name: step.header.name,
        data: Buffer.alloc(0),
        type: step.header.type as Entry['type'],
        offset: step.header.dataOffset,
      });
      parts = [];
    } else if (step.kind === 'data') parts.push(Buffer.from(step.data));
    else if (step.kind === 'entry-end') entries.at(-1)!.data = Buffer.concat(parts);
  };
  const points = [
    0,
    ...[...new Set(cuts)].filter((c) => c > 0 && c < archive.length).sort((a, b) => a - b),
    archive.length,
  ];
  for (let i = 0; i + 1 < points.length; i++) {
    const chunk = archive.subarray(points[i], points[i + 1]);
    let at = 0;
    while (at < chunk.length || reader.entryComplete) {
      const r = reader.step(chunk, at);
      at = r.next;
      if (r.step) on(r.step);
    }
  }
  const last = reader.finish();
  if (last) on(last);
  return { entries, steps };
}

describe('TarReader', () => {
  const sample: Entry[] = [
    { name: 'manifest.json', data: Buffer.from('{"a":1}') },
    { name: 'manifest.sig', data: bytes(64, 3) },
    { name: 'rootfs.img', data: bytes(70_000, 5) },
    { name: 'empty.bin', data: Buffer.alloc(0) },
    { name: 'aligned.bin', data: bytes(1024, 7) },
  ];

  it('should hand out every entry with its bytes and data offset, however the input is split', async () => {
    const archive = await pack(sample);
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: archive.length - 1 }), { maxLength: 40 }),
        async (cuts) => {
          const { entries, steps } = read(archive, cuts);
          expect(entries.map((e) => e.name)).toEqual(sample.map((e) => e.name));
          entries.forEach((e, i) => {
            expect(e.data.equals(sample[i]!.data)).toBe(true);
            // The offset is where the bytes really are in the archive (a resume asks from there).
            expect(archive.subarray(e.offset, e.offset + e.data.length).equals(e.data)).toBe(true);
          });
          expect(steps.filter((s) => s === 'entry-end')).toHaveLength(sample.length);
          expect(steps.at(-1)).toBe('end');
        },
      ),
      { numRuns: 200 },
    );
  });

  it('should name non-regular entries by type', async () => {
    const { entries } = read(await pack([{ name: 'link', data: Buffer.alloc(0), type: 'symlink' }]));
    expect(entries[0]).toMatchObject({ name: 'link', type: 'symlink' });
  });

  it('should read GNU base-256 sizes (payloads of 8 GiB and more)', async () => {
    const archive = await pack([{ name: 'small.bin', data: bytes(100) }]);
    const header = archive.subarray(0, 512);
    header.fill(0, 124, 136);
    header[124] = 0x80;
    header.writeUIntBE(100, 130, 6);
    // Recompute the checksum over the edited header.
    header.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of header) sum += b;
    header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
    const { entries } = read(archive);
    expect(entries[0]!.data.equals(bytes(100))).toBe(true);
  });

  it('should refuse a corrupted header, bytes after the end marker, and input cut inside an entry or its padding', async () => {
    const archive = await pack(sample);
    const corrupt = Buffer.from(archive);
    corrupt[10] = corrupt[10]! ^ 0xff;
    expect(() => read(corrupt)).toThrow(/invalid tar header checksum/);

    const trailing = Buffer.concat([archive, Buffer.from('rm -rf /')]);
    expect(() => read(trailing)).toThrow(/after the end-of-archive marker/);

    const rootfsStart = read(archive).entries[2]!.offset;
    expect(() => read(archive.subarray(0, rootfsStart + 100))).toThrow(TarFormatError);
    expect(() => read(archive.subarray(0, rootfsStart + 70_000))).toThrow(/unexpected end of data/);
    expect(() => read(archive.subarray(0, 300))).toThrow(/unexpected end of data/);
  });

  it('should accept an archive whose end-of-archive marker is missing after a complete entry', async () => {
    const archive = await pack([{ name: 'aligned.bin', data: bytes(1024, 7) }]);
    const { entries, steps } = read(archive.subarray(0, 512 + 1024));
    expect(entries[0]!.data.equals(bytes(1024, 7))).toBe(true);
    expect(steps).not.toContain('end');
  });
});
