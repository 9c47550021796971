import { createCipheriv, createHash } from 'node:crypto';
import fs from 'node:fs';
import type { ReadAt } from '../../delta/dynamic/chunker.js';

/** `n` pseudo-random bytes, the same for the same seed (AES-CTR keystream). */
export function seededBytes(seed: string | number, n: number): Buffer {
  const key = createHash('sha256').update(String(seed)).digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n));
}

/** Compressible bytes (lines of words), the same for the same seed. */
export function seededText(seed: string | number, n: number): Buffer {
  const words = [
    'gateway',
    'slot',
    'update',
    'chunk',
    'kernel',
    'rootfs',
    'libssl',
    'systemd',
    'zlib',
    'port',
  ];
  const r = seededBytes(seed, n);
  const out = Buffer.alloc(n);
  let at = 0;
  for (let i = 0; at < n; i++) {
    const w = `${words[r[i % n]! % words.length]}${r[(i + 1) % n]! % 7 === 0 ? '\n' : ' '}`;
    at += out.write(w, at);
  }
  return out;
}

/** A ReadAt over a buffer. */
export function bufferReader(data: Buffer): ReadAt {
  return (into, position) => Promise.resolve(data.copy(into, 0, Math.min(position, data.length)));
}

/** A ReadAt over a file, opened for reading only. */
export function fileReader(file: string): { readAt: ReadAt; close(): void } {
  const fd = fs.openSync(file, 'r');
  return {
    readAt: (into, position) => Promise.resolve(fs.readSync(fd, into, 0, into.length, position)),
    close: () => fs.closeSync(fd),
  };
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
