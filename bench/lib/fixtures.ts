import { createHash, randomFillSync, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { buildBundle } from '../../bundle/build.js';
import { generateKeyPair, parsePrivateKey } from '../../bundle/keys.js';
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
}

export interface Fixtures {
  feedDir: string;
  feedRoot: string;
  vendorPublicKeyPem: string;
  images: ImageFixture[];
}

export function sizeLabel(bytes: number): string {
  return bytes >= 1024 * MiB && bytes % (1024 * MiB) === 0
    ? `${bytes / (1024 * MiB)} GiB`
    : `${bytes / MiB} MiB`;
}

/** Writes `bytes` random bytes to `file` and returns their SHA-256. */
export function writeRandomFile(file: string, bytes: number): string {
  const hash = createHash('sha256');
  const block = Buffer.allocUnsafe(8 * MiB);
  const fd = fs.openSync(file, 'w');
  try {
    for (let done = 0; done < bytes;) {
      const n = Math.min(block.length, bytes - done);
      const chunk = block.subarray(0, n);
      randomFillSync(chunk);
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
 * each built into a bundle signed by a fresh vendor key and published in a fresh TUF feed.
 */
export async function createFixtures(
  work: string,
  sizes: number[],
  log: (m: string) => void,
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

  const images: ImageFixture[] = [];
  for (const [i, bytes] of sizes.entries()) {
    const label = sizeLabel(bytes);
    const version = `v5.1.${i}`;
    const name = `rootfs-${bytes / MiB}M.img`;
    const image = path.join(work, name);
    log(`${label}: writing a random image…`);
    const sha256 = writeRandomFile(image, bytes);
    log(`${label}: building and signing the bundle, publishing it to the feed…`);
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
    });
    const added = await addTarget(feedDir, built, { keys: tufKey, expiresDays: 7 });
    fs.rmSync(built);
    // addTarget's copy is not fsynced: flush it now, not during the first measured download.
    const fd = fs.openSync(path.join(feedDir, 'targets', added.path), 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.symlinkSync(image, path.join(rawDir, name));
    images.push({
      label,
      bytes,
      version,
      image,
      sha256,
      bundle: path.join(feedDir, 'targets', added.path),
      bundleBytes: added.length,
      bundleUrlPath: `/targets/${added.path}`,
      rawUrlPath: `/raw/${name}`,
    });
  }
  fs.rmSync(buildDir, { recursive: true, force: true });
  return {
    feedDir,
    feedRoot: path.join(feedDir, 'root.json'),
    vendorPublicKeyPem: vendor.publicKeyPem,
    images,
  };
}
