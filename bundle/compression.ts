import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { PassThrough, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { Decompress as ZstdDecompress } from 'fzstd';
import { GantryError } from '../core/errors.js';
import type { Compression } from './manifest.js';

/**
 * How v2 payloads are stored. Both codecs were measured on the minor-update fixture (README,
 * "Compressed bundles"); the gateway side is Node only (node:zlib for brotli, fzstd for zstd), the
 * publisher side may use the `zstd` CLI.
 */

/** Brotli window: 16 MiB, the largest node:zlib decodes without the large-window flag. */
const BROTLI_LGWIN = 24;

export interface CompressOptions {
  /** brotli 0-11 (default 11), zstd 1-19 (default 19). */
  level?: number;
  /**
   * brotli's window, log2 bytes (default 24, 16 MiB): the decoder on the gateway holds a ring buffer
   * of that size for the whole stream.
   */
  brotliWindowBits?: number;
}

/** The payload file compressed into `out`; its size and SHA-256 (the manifest's `stored`). */
export async function compressFile(
  input: string,
  out: string,
  compression: Compression,
  opts: CompressOptions = {},
): Promise<{ size: number; sha256: string }> {
  if (compression === 'none') {
    await fs.promises.copyFile(input, out);
  } else if (compression === 'brotli') {
    const size = (await fs.promises.stat(input)).size;
    await pipeline(
      fs.createReadStream(input, { highWaterMark: 1024 * 1024 }),
      zlib.createBrotliCompress({
        params: {
          [zlib.constants.BROTLI_PARAM_QUALITY]: opts.level ?? 11,
          [zlib.constants.BROTLI_PARAM_LGWIN]: opts.brotliWindowBits ?? BROTLI_LGWIN,
          [zlib.constants.BROTLI_PARAM_SIZE_HINT]: size,
        },
      }),
      fs.createWriteStream(out),
    );
  } else {
    await zstdCli(['-q', '-f', `-${opts.level ?? 19}`, '-T0', input, '-o', out]);
  }
  return hashFile(out);
}

export async function hashFile(file: string): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1024 * 1024 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { size, sha256: hash.digest('hex') };
}

/** Runs the `zstd` CLI (publisher side only). */
export function zstdCli(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('zstd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) =>
      reject(
        new GantryError('VALIDATION_ERROR', `cannot run zstd (install the zstd package): ${err.message}`),
      ),
    );
    child.on('close', (code) =>
      code === 0
        ? resolve()
        : reject(
            new GantryError('VALIDATION_ERROR', `zstd ${args.join(' ')} failed (${code}): ${stderr.trim()}`),
          ),
    );
  });
}

/**
 * Bytes per decoded brotli chunk. zlib's default is 16 KiB, one thread-pool round trip each: 256
 * KiB took 256 MiB of a payload from 1.83 to 1.45 CPU s and 4.6 MiB less resident (chunks of 128
 * KiB or more are mmapped, and unmapped once freed), and a hop delta's 37 MB body from 0.25-0.47 to
 * 0.16-0.18 s of reading (its operations read up to 16 MiB at a time).
 */
const DECODED_CHUNK_BYTES = 256 * 1024;

/**
 * A streaming decoder for a stored payload, bounded in memory by the codec's window (brotli 16 MiB,
 * zstd -19 8 MiB): it never holds the image. The consumer counts what comes out against the signed
 * image size; `limit` also stops the zstd decoder from materialising more than that (one pushed
 * chunk of RLE blocks can stand for gigabytes).
 */
export function createDecompressor(compression: Compression, limit: number): Transform {
  if (compression === 'none') return new PassThrough();
  if (compression === 'brotli') return zlib.createBrotliDecompress({ chunkSize: DECODED_CHUNK_BYTES });
  let produced = 0;
  let failure: Error | null = null;
  // Assigned below: the decoder's callback pushes into the Transform that feeds it.
  let transform: Transform | null = null;
  const decoder = new ZstdDecompress((data) => {
    if (failure) return;
    produced += data.length;
    if (produced > limit) {
      failure = new GantryError(
        'OTA_INVALID_IMAGE',
        `the payload decompresses to more than its signed ${limit} bytes`,
      );
      return;
    }
    // fzstd hands out views of its window: copied before the next push reuses it.
    transform!.push(Buffer.from(data));
  });
  const corrupt = (err: unknown): GantryError =>
    new GantryError('OTA_INVALID_IMAGE', `the payload is not valid zstd: ${(err as Error).message}`);
  transform = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      try {
        decoder.push(chunk);
      } catch (err) {
        return cb(corrupt(err));
      }
      cb(failure);
    },
    flush(cb: TransformCallback) {
      try {
        decoder.push(new Uint8Array(0), true);
      } catch (err) {
        return cb(corrupt(err));
      }
      cb(failure);
    },
  });
  return transform;
}
