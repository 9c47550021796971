import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { encodeChunkIndex } from './chunk-index.js';
import { CHUNKER_V1, chunkSource, type ChunkerParams } from './chunker.js';

/**
 * The publisher's side of the dynamic path (run by the bundle tool on a build host): cut an image
 * into chunks, compress each distinct chunk on its own into the pack, and write the index that
 * says where each one is. Gateways fetch the index whole and pack frames by range.
 */

/** Compresses a batch of chunks, one independent frame each, in order. */
export type FrameCompressor = (chunks: Buffer[]) => Promise<Buffer[]>;

const run = promisify(execFile);

/**
 * Frames made by the `zstd` CLI (Debian's zstd package on the build host): one process per batch
 * of chunks written as files, so the CLI records each chunk's size in its frame header. No
 * checksum in the frames: each chunk's SHA-256 in the index is checked after decompression.
 */
export function zstdCliCompressor(level = 19): FrameCompressor {
  return async (chunks) => {
    const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'gantry-frames-'));
    try {
      const names = chunks.map((_, i) => path.join(dir, String(i)));
      await Promise.all(chunks.map((c, i) => fs.promises.writeFile(names[i]!, c)));
      await run(
        'zstd',
        [`-${level}`, ...(level > 19 ? ['--ultra'] : []), '-q', '-f', '--no-check', '--', ...names],
        {
          maxBuffer: 1024 * 1024,
        },
      );
      return await Promise.all(names.map((n) => fs.promises.readFile(`${n}.zst`)));
    } finally {
      await fs.promises.rm(dir, { recursive: true, force: true });
    }
  };
}

export interface PublishDynamicOptions {
  chunker?: Readonly<ChunkerParams>;
  compressor?: FrameCompressor;
  /** Chunks per compressor call, and calls in flight (the build host's cores). */
  batchChunks?: number;
  concurrency?: number;
}

export interface DynamicArtifactFiles {
  index: { file: string; size: number; sha256: string };
  pack: { file: string; size: number; sha256: string };
  image: { size: number; sha256: string };
  chunks: number;
  frames: number;
}

/** Builds `indexFile` and `packFile` from the image at `imagePath`. */
export async function buildDynamicArtifacts(
  imagePath: string,
  out: { indexFile: string; packFile: string },
  opts: PublishDynamicOptions = {},
): Promise<DynamicArtifactFiles> {
  const chunker = opts.chunker ?? CHUNKER_V1;
  const compress = opts.compressor ?? zstdCliCompressor();
  const batchChunks = opts.batchChunks ?? 512;
  const concurrency = Math.max(1, opts.concurrency ?? Math.min(4, os.availableParallelism()));

  const records: { length: number; sha256: string; frameLength: number }[] = [];
  const imageHash = createHash('sha256');
  const packHash = createHash('sha256');
  const pack = await fs.promises.open(out.packFile, 'w');
  const imageFile = await fs.promises.open(imagePath, 'r');
  let packSize = 0;
  // Batches compress concurrently but reach the pack in order: frames sit in the order of the
  // chunks that introduce them, which is what lets a gateway read its ranges front to back.
  let written: Promise<void> = Promise.resolve();
  const inFlight = new Set<Promise<void>>();
  const seen = new Set<string>();
  let batch: { data: Buffer; record: (typeof records)[number] }[] = [];
  const flush = (): void => {
    const items = batch;
    batch = [];
    const frames = compress(items.map((b) => b.data));
    frames.catch(() => undefined); // awaited in turn below; a failure surfaces there
    const done = (written = written.then(async () => {
      const compressed = await frames;
      for (let k = 0; k < items.length; k++) {
        const frame = compressed[k]!;
        items[k]!.record.frameLength = frame.length;
        packHash.update(frame);
        await pack.write(frame, 0, frame.length, packSize);
        packSize += frame.length;
      }
    }));
    inFlight.add(done);
    void done.finally(() => inFlight.delete(done)).catch(() => undefined);
  };
  try {
    for await (const c of chunkSource((into, position) => readInto(imageFile, into, position), chunker)) {
      imageHash.update(c.data);
      const sha256 = c.sha256.toString('hex');
      const record = { length: c.length, sha256, frameLength: 0 };
      records.push(record);
      if (seen.has(sha256)) continue;
      seen.add(sha256);
      batch.push({ data: Buffer.from(c.data), record });
      if (batch.length >= batchChunks) {
        flush();
        while (inFlight.size >= concurrency) await Promise.race(inFlight);
      }
    }
    if (batch.length > 0) flush();
    await written;
    await pack.sync();
  } finally {
    await pack.close();
    await imageFile.close();
  }
  const image = { size: records.reduce((s, r) => s + r.length, 0), sha256: imageHash.digest('hex') };
  const indexBytes = encodeChunkIndex(
    { chunker: chunker.name, compression: 'zstd', image, pack: { size: packSize } },
    records,
  );
  await fs.promises.writeFile(out.indexFile, indexBytes);
  return {
    index: {
      file: out.indexFile,
      size: indexBytes.length,
      sha256: createHash('sha256').update(indexBytes).digest('hex'),
    },
    pack: { file: out.packFile, size: packSize, sha256: packHash.digest('hex') },
    image,
    chunks: records.length,
    frames: seen.size,
  };
}

async function readInto(file: fs.promises.FileHandle, into: Buffer, position: number): Promise<number> {
  const { bytesRead } = await file.read(into, 0, into.length, position);
  return bytesRead;
}
