import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Small ext4 images for delta tests (mkfs.ext4 -d, e2fsprogs): a tree of files with a "release"
 * changing some of them, the way a security roll-up changes a rootfs. Deterministic content.
 */
export function pseudoRandom(seed: number, size: number): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(`seed-${seed}`).digest();
  for (let at = 0; at < size; at += block.length) {
    block.copy(out, at);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

/** A text-like file: compressible, like most of a rootfs. */
function texty(seed: number, size: number): Buffer {
  const words = ['lib', 'usr', 'config', 'systemd', 'openssl', 'ssl', 'curl', 'zlib', 'pam', 'xml', '\n'];
  const rnd = pseudoRandom(seed, size);
  const parts: string[] = [];
  let len = 0;
  for (let i = 0; len < size; i++) {
    const w = words[rnd[i % rnd.length]! % words.length]!;
    parts.push(w, ' ');
    len += w.length + 1;
  }
  return Buffer.from(parts.join('').slice(0, size));
}

export interface ImagePair {
  v1: string;
  v2: string;
}

/** Writes the tree of release `version` (1 or 2) under `dir`. */
function writeTree(dir: string, version: 1 | 2): void {
  for (let i = 0; i < 40; i++) {
    const sub = path.join(dir, `usr/lib/pkg${i % 8}`);
    fs.mkdirSync(sub, { recursive: true });
    // Every fifth file changes a little in release 2 (a patched library); one is new, one removed.
    let content = Buffer.concat([texty(i, 20_000 + i * 1500), pseudoRandom(1000 + i, 8_000)]);
    if (version === 2 && i % 5 === 0) {
      content = Buffer.from(content);
      content.write('PATCHED', 100 + i);
      content = Buffer.concat([content, Buffer.from(`release two of file ${i}\n`)]);
    }
    if (version === 2 && i === 7) continue;
    fs.writeFileSync(path.join(sub, `lib${i}.so`), content);
  }
  if (version === 2) fs.writeFileSync(path.join(dir, 'usr/lib/new-tool'), pseudoRandom(77, 30_000));
  fs.mkdirSync(path.join(dir, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'etc/os-release'), `VERSION_ID=${version}\n`);
}

/** Two ext4 images of `sizeMiB` each, release 1 and release 2, in `dir`. */
export function buildImagePair(dir: string, sizeMiB = 8): ImagePair {
  const out: Partial<ImagePair> = {};
  for (const version of [1, 2] as const) {
    const tree = path.join(dir, `tree${version}`);
    writeTree(tree, version);
    const image = path.join(dir, `v${version}.img`);
    execFileSync(
      'mkfs.ext4',
      ['-q', '-F', '-b', '4096', '-E', 'root_owner=0:0', '-U', 'clear', '-d', tree, image, `${sizeMiB}M`],
      { env: { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000' } },
    );
    fs.rmSync(tree, { recursive: true, force: true });
    out[version === 1 ? 'v1' : 'v2'] = image;
  }
  return out as ImagePair;
}

export function sha256Of(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}
