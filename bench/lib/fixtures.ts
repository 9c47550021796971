import { createHash, randomFillSync, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { buildBundle } from '../../bundle/build.js';
import type { CompressOptions } from '../../bundle/compression.js';
import { generateKeyPair, parsePrivateKey } from '../../bundle/keys.js';
import { BUNDLE_FORMAT_V2, type Compression } from '../../bundle/manifest.js';
import { addTarget, initRepository } from '../../feed/repository.js';

/**
 * The material of the update-pipeline benchmarks: random images, a vendor key, signed bundles and
 * a TUF feed directory holding them, all below one work dir that the caller deletes.
 */

export const MiB = 1024 * 1024;

export interface ImageFixture {
  label: string;
  bytes: number;
  version: string;
  image: string;
  sha256: string;
  /** The signed bundle, as published in the feed (`<feedDir>/targets/<name>`). */
  bundle: string;
  bundleBytes: number;
  /** URL path of the bundle on the feed server. */
  bundleUrlPath: string;
  /** URL path of the raw image on the feed server (for the shell pipeline). */
  rawUrlPath: string;
  /** A format v2 bundle whose payload is stored so; none: a v1 bundle, the image as it is. */
  compression?: Compression;
}

export interface Fixtures {
  feedDir: string;
  feedRoot: string;
  vendorPublicKeyPem: string;
  images: ImageFixture[];
  /** One compressible image, in a compressed bundle per codec asked for. */
  compressed: ImageFixture[];
}

/** The compressed bundles' codecs and levels: fast to build; decoding costs about the same at any level. */
const COMPRESSED_LEVELS: Record<Exclude<Compression, 'none'>, CompressOptions['level']> = {
  zstd: 3,
  brotli: 5,
};

export function sizeLabel(bytes: number): string {
  return bytes >= 1024 * MiB && bytes % (1024 * MiB) === 0
    ? `${bytes / (1024 * MiB)} GiB`
    : `${bytes / MiB} MiB`;
}

/**
 * Writes `bytes` bytes to `file`, `fill` making each block, and returns their SHA-256; fsynced, so
 * the write-back does not land in a measured step.
 */
function writeGeneratedFile(file: string, bytes: number, fill: (block: Buffer) => void): string {
  const hash = createHash('sha256');
  const block = Buffer.allocUnsafe(8 * MiB);
  const fd = fs.openSync(file, 'w');
  try {
    for (let done = 0; done < bytes;) {
      const n = Math.min(block.length, bytes - done);
      const chunk = block.subarray(0, n);
      fill(chunk);
      hash.update(chunk);
      fs.writeSync(fd, chunk);
      done += n;
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return hash.digest('hex');
}

/** Writes `bytes` random bytes to `file` and returns their SHA-256. */
export function writeRandomFile(file: string, bytes: number): string {
  return writeGeneratedFile(file, bytes, (block) => randomFillSync(block));
}

/**
 * Writes `bytes` bytes of half the entropy of random data (random nibbles, one printable byte each)
 * and returns their SHA-256: they compress to about half, as a root filesystem image does, so a
 * compressed bundle's decoder has real work. Random images (writeRandomFile) do not compress.
 */
export function writeCompressibleFile(file: string, bytes: number): string {
  return writeGeneratedFile(file, bytes, (block) => {
    randomFillSync(block);
    for (let i = 0; i < block.length; i++) block[i] = 0x41 + (block[i]! & 0x0f);
  });
}

/** SHA-256 of the first `bytes` bytes of a file (all of it by default). */
export async function sha256File(file: string, bytes?: number): Promise<string> {
  const hash = createHash('sha256');
  const end = bytes === undefined ? undefined : bytes - 1;
  if (end === -1) return hash.digest('hex');
  for await (const chunk of fs.createReadStream(file, { end, highWaterMark: 4 * MiB })) {
    hash.update(chunk as Buffer);
  }
  return hash.digest('hex');
}

/**
 * Images of the given sizes (versions v5.1.0, v5.1.1, … — newer than the simulator's v5.0.4),
 * each built into a bundle signed by a fresh vendor key and published in a fresh TUF feed; and,
 * with `compressed`, one compressible image of that size in a v2 bundle per codec (v5.2.0, …).
 */
export async function createFixtures(
  work: string,
  sizes: number[],
  log: (m: string) => void,
  compressed: { bytes: number; compressions: Exclude<Compression, 'none'>[] } = {
    bytes: 0,
    compressions: [],
  },
): Promise<Fixtures> {
  const feedDir = path.join(work, 'feed');
  const rawDir = path.join(feedDir, 'raw');
  const buildDir = path.join(work, 'build');
  fs.mkdirSync(rawDir, { recursive: true });
  fs.mkdirSync(buildDir, { recursive: true });
  const tufKey: KeyObject = parsePrivateKey(generateKeyPair().privateKeyPem);
  const vendor = generateKeyPair();
  const vendorKey = parsePrivateKey(vendor.privateKeyPem);
  initRepository(feedDir, { keys: tufKey, expiresDays: 7 });

  const publish = async (
    image: string,
    bytes: number,
    sha256: string,
    version: string,
    compression?: Exclude<Compression, 'none'>,
  ): Promise<ImageFixture> => {
    const label = sizeLabel(bytes);
    const name = path.basename(image);
    log(
      `${label}${compression ? ` (${compression})` : ''}: building and signing the bundle, publishing it to the feed…`,
    );
    const built = path.join(buildDir, `gantry-${version}.bundle`);
    await buildBundle({
      manifestFields: {
        type: 'feature',
        severity: 'medium',
        compatible: ['Univa-GW-Pro'],
        kernel: '6.1.40-LTS',
        released: '2025-03-15',
        description: `Gantry benchmark image ${label}`,
        changelog: ['Benchmark'],
        version,
      },
      payloadFiles: [{ kind: 'rootfs', path: image, name: 'rootfs.img' }],
      privateKey: vendorKey,
      out: built,
      ...(compression
        ? {
            format: BUNDLE_FORMAT_V2,
            compression,
            compressionLevel: COMPRESSED_LEVELS[compression],
            tmpDir: work,
          }
        : {}),
    });
    const added = await addTarget(feedDir, built, { keys: tufKey, expiresDays: 7 });
    fs.rmSync(built);
    // addTarget's copy is not fsynced: flush it now, not during the first measured download.
    const fd = fs.openSync(path.join(feedDir, 'targets', added.path), 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    if (!fs.existsSync(path.join(rawDir, name))) fs.symlinkSync(image, path.join(rawDir, name));
    return {
      label,
      bytes,
      version,
      image,
      sha256,
      bundle: path.join(feedDir, 'targets', added.path),
      bundleBytes: added.length,
      bundleUrlPath: `/targets/${added.path}`,
      rawUrlPath: `/raw/${name}`,
      ...(compression ? { compression } : {}),
    };
  };

  const images: ImageFixture[] = [];
  for (const [i, bytes] of sizes.entries()) {
    const image = path.join(work, `rootfs-${bytes / MiB}M.img`);
    log(`${sizeLabel(bytes)}: writing a random image…`);
    const sha256 = writeRandomFile(image, bytes);
    images.push(await publish(image, bytes, sha256, `v5.1.${i}`));
  }
  const compressedImages: ImageFixture[] = [];
  if (compressed.compressions.length > 0) {
    const image = path.join(work, `rootfs-${compressed.bytes / MiB}M-compressible.img`);
    log(`${sizeLabel(compressed.bytes)}: writing a compressible image…`);
    const sha256 = writeCompressibleFile(image, compressed.bytes);
    for (const [i, compression] of compressed.compressions.entries())
      compressedImages.push(await publish(image, compressed.bytes, sha256, `v5.2.${i}`, compression));
  }
  fs.rmSync(buildDir, { recursive: true, force: true });
  return {
    feedDir,
    feedRoot: path.join(feedDir, 'root.json'),
    vendorPublicKeyPem: vendor.publicKeyPem,
    images,
    compressed: compressedImages,
  };
}
