import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { verifyBundle } from '../../bundle/stream.js';
import { isGantryError } from '../../core/errors.js';
import { SlotWriter } from '../../device/slot-writer.js';
import { receiveFile } from '../../services/updates/uploads.js';
import { buildBundleBuffer, bytes, keys, sha256 } from '../bundle/helpers.js';
import { cachedBytes, directIoSupported } from '../helpers/page-cache.js';
import { makeTempDir } from '../helpers/temp.js';

/** receiveFile: an upload written, hashed and verified as a bundle in one pass over its bytes. */

const KiB = 1024;
const MiB = 1024 * KiB;
const vendor = keys();

function tempDir(): string {
  return makeTempDir('gantry-receive-');
}
afterEach(() => {
  vi.restoreAllMocks();
});

/** `data` in `chunk`-byte pieces, produced only when read (so the reader's pace is visible). */
function chunked(data: Buffer, chunk = 64 * KiB, onProduce?: (n: number) => void): Readable {
  let at = 0;
  return new Readable({
    read() {
      if (at >= data.length) return void this.push(null);
      const piece = data.subarray(at, at + chunk);
      at += piece.length;
      onProduce?.(piece.length);
      this.push(piece);
    },
  });
}

const verify = (input: Readable) => verifyBundle(input, { trustedKeys: [vendor.publicKey] });

describe('receiveFile', () => {
  it('should store, hash and verify a signed bundle in one pass (the whole-file hash is the verifier pass)', async () => {
    const bundle = await buildBundleBuffer(vendor, [
      { name: 'rootfs.img', kind: 'rootfs', data: bytes(3 * MiB + 7) },
    ]);
    const dir = tempDir();
    const got = await receiveFile(chunked(bundle), dir, verify);
    expect(got.verification).toMatchObject({ ok: true, manifest: { version: 'v5.0.5' } });
    expect(got).toMatchObject({ size: bundle.length, sha256: sha256(bundle) });
    expect(path.dirname(got.path)).toBe(dir);
    expect(got.path).toMatch(/upload-.*\.part$/);
    expect(fs.readFileSync(got.path).equals(bundle)).toBe(true);
  });

  it('should store the upload past the page cache where the file system allows direct I/O', async () => {
    const bundle = await buildBundleBuffer(vendor, [
      { name: 'rootfs.img', kind: 'rootfs', data: bytes(4 * MiB + 3) },
    ]);
    const dir = tempDir();
    const got = await receiveFile(chunked(bundle), dir, verify);
    expect(got.verification.ok).toBe(true);
    expect(got.sha256).toBe(sha256(bundle));
    const cached = cachedBytes(got.path);
    // Buffered, all 4 MiB would stay cached; direct, only the unaligned tail's page.
    if (directIoSupported(dir) && cached !== null) expect(cached).toBeLessThanOrEqual(4096);
    expect(fs.readFileSync(got.path).equals(bundle)).toBe(true);
  });

  it('should stop writing once the verifier refused the bytes, drain the rest and remove the file', async () => {
    const junk = bytes(8 * MiB, 7); // not a tar: refused at its first header
    const dir = tempDir();
    // The file writer is the slot writer (direct I/O): count what it was given.
    let written = 0;
    const write = SlotWriter.prototype.write;
    vi.spyOn(SlotWriter.prototype, 'write').mockImplementation(function (this: SlotWriter, ...args) {
      written += (args[0] as Buffer).length;
      return write.apply(this, args);
    });
    const got = await receiveFile(chunked(junk), dir, verify);
    expect(got.verification.ok).toBe(false);
    const { error } = got.verification as { ok: false; error: unknown };
    expect(isGantryError(error) && error.gantryCode).toBe('OTA_INVALID_IMAGE');
    // The whole body was still read (multer needs it drained), not hashed: it is refused anyway.
    expect(got).toMatchObject({ size: junk.length, sha256: null });
    expect(fs.existsSync(got.path)).toBe(false);
    expect(fs.readdirSync(dir)).toEqual([]);
    // What reached the disk: the first chunks at most, not the 8 MiB that followed the refusal.
    expect(written).toBeGreaterThan(0);
    expect(written).toBeLessThan(4 * MiB);
  });

  it('should keep the source at the verifier pace (backpressure through the PassThrough)', async () => {
    const bundle = await buildBundleBuffer(vendor, [
      { name: 'rootfs.img', kind: 'rootfs', data: bytes(16 * MiB, 3) },
    ]);
    let produced = 0;
    let consumed = 0;
    let ahead = 0;
    const source = chunked(bundle, 64 * KiB, (n) => {
      produced += n;
      ahead = Math.max(ahead, produced - consumed);
    });
    const got = await receiveFile(source, tempDir(), (input) => {
      // A slow reader in front of the verifier: one chunk per millisecond.
      const slow = new Readable({ read() {} });
      input.on('data', (c: Buffer) => {
        consumed += c.length;
        slow.push(c);
        input.pause();
        setTimeout(() => input.resume(), 1);
      });
      input.on('end', () => slow.push(null));
      return verify(slow);
    });
    expect(got.verification.ok).toBe(true);
    expect(got.size).toBe(bundle.length);
    // Never more than the streams' queues (256 KiB each, a few chunks besides) ahead of the
    // verifier: never the whole file (with 1 MiB queues it ran 3 MiB ahead).
    expect(ahead).toBeLessThan(MiB);
  });

  it('should remove the partial file and reject when the body fails', async () => {
    const dir = tempDir();
    const source = new Readable({ read() {} });
    source.push(bytes(256 * KiB));
    setTimeout(() => source.destroy(new Error('client went away')), 20);
    await expect(receiveFile(source, dir, verify)).rejects.toThrow(/client went away/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('should ask for a young-generation collection every MiB of body, and a full one once it is over', async () => {
    // What bin/gantry-server's --expose-gc gives: Node's per-read body buffers are freed before
    // they pile up, and what the upload held goes once it is answered (core/young-gc.ts).
    const calls: string[] = [];
    vi.stubGlobal('gc', ({ type }: { type: string }) => void calls.push(type));
    try {
      const data = bytes(4 * MiB + 5, 4);
      await receiveFile(chunked(data), tempDir());
      expect(calls).toEqual(['minor', 'minor', 'minor', 'minor', 'major']);
    } finally {
      vi.unstubAllGlobals();
    }
  });

  it('should only store and hash without a verifier', async () => {
    const data = bytes(2 * MiB + 5, 9);
    const got = await receiveFile(chunked(data), tempDir());
    expect(got).toEqual({ path: got.path, size: data.length, sha256: sha256(data) });
    expect(fs.readFileSync(got.path).equals(data)).toBe(true);
  });
});
