import { PassThrough, Readable, Writable } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import {
  inspectBundle,
  signManifest,
  streamBundle,
  verifyBundle,
  type Manifest,
  type Payload,
  type StreamBundleOptions,
} from '../../bundle/index.js';
import { GantryError } from '../../core/errors.js';
import { threadDigests } from '../../bundle/digests.js';
import { BufferSink, buildBundleBuffer, bytes, keys, MODEL, repack, sha256, unpack } from './helpers.js';

const signer = keys();
const rootfs = bytes(300_000, 7);
const app = bytes(5_000, 9);

function options(
  overrides: Partial<StreamBundleOptions> = {},
): StreamBundleOptions & { sinks: BufferSink[] } {
  const sinks: BufferSink[] = [];
  return {
    trustedKeys: [signer.publicKey],
    hardwareModel: MODEL,
    currentVersion: 'v5.0.4',
    allowDowngrade: false,
    openPayloadSink: async () => {
      const s = new BufferSink();
      sinks.push(s);
      return s;
    },
    sinks,
    ...overrides,
  };
}

async function validBundle(overrides = {}): Promise<Buffer> {
  return buildBundleBuffer(
    signer,
    [
      { name: 'rootfs.img', kind: 'rootfs', data: rootfs },
      { name: 'app.tar', kind: 'app', data: app },
    ],
    overrides,
  );
}

/** Feeds a buffer in small chunks, as a network would. */
function chunked(buf: Buffer, size = 7_919): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) parts.push(buf.subarray(i, i + size));
  return Readable.from(parts);
}

async function rejection(p: Promise<unknown>): Promise<GantryError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GantryError);
  return err as GantryError;
}

describe('streamBundle', () => {
  it('should round-trip a built bundle into the sinks with verified hashes and progress', async () => {
    const opts = options();
    const progress: number[] = [];
    const res = await streamBundle(chunked(await validBundle()), {
      ...opts,
      onProgress: (n) => progress.push(n),
    });
    expect(res.manifest).toMatchObject({
      format: 'gantry-bundle-v1',
      version: 'v5.0.5',
      type: 'security',
      severity: 'critical',
      compatible: [MODEL],
      key_id: signer.keyId,
    });
    expect(res.keyId).toBe(signer.keyId);
    expect(res.payloads).toEqual([
      { name: 'rootfs.img', sha256: sha256(rootfs), size: rootfs.length },
      { name: 'app.tar', sha256: sha256(app), size: app.length },
    ]);
    expect(opts.sinks).toHaveLength(2);
    expect(opts.sinks[0]!.data.equals(rootfs)).toBe(true);
    expect(opts.sinks[1]!.data.equals(app)).toBe(true);
    expect(opts.sinks.every((s) => s.finished)).toBe(true);
    expect(progress.at(-1)).toBe(rootfs.length + app.length);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
  });

  it('should verify the same with the hashes on a worker thread, whole-bundle digest included', async () => {
    const bundle = await validBundle();
    const opts = options({ digests: threadDigests });
    const res = await streamBundle(chunked(bundle), opts);
    expect(res.sha256).toBe(sha256(bundle));
    expect(res.payloads.map((p) => p.sha256)).toEqual([sha256(rootfs), sha256(app)]);
    expect(opts.sinks[0]!.data.equals(rootfs)).toBe(true);

    const items = await unpack(bundle);
    items[3]!.data[42]! ^= 0x01;
    const tampered = options({ digests: threadDigests });
    const err = await rejection(streamBundle(chunked(await repack(items)), tampered));
    expect(err.message).toMatch(/app\.tar does not match its signed SHA-256/);
    expect(tampered.sinks[1]!.finished).toBe(false);
  });

  it('should hand the sink opener the payload and manifest', async () => {
    const seen: [Payload, Manifest][] = [];
    const opts = options();
    await streamBundle(chunked(await validBundle()), {
      ...opts,
      openPayloadSink: async (p, m) => {
        seen.push([p, m]);
        return new BufferSink();
      },
    });
    expect(seen.map(([p]) => p)).toEqual([
      { name: 'rootfs.img', kind: 'rootfs', size: rootfs.length, sha256: sha256(rootfs) },
      { name: 'app.tar', kind: 'app', size: app.length, sha256: sha256(app) },
    ]);
    expect(seen[0]![1].version).toBe('v5.0.5');
  });

  it('should refuse a tampered payload byte with OTA_INVALID_IMAGE and never finish the sink', async () => {
    const items = await unpack(await validBundle());
    items[2]!.data[123_456]! ^= 0x01;
    const opts = options();
    const err = await rejection(streamBundle(chunked(await repack(items)), opts));
    expect(err.gantryCode).toBe('OTA_INVALID_IMAGE');
    expect(err.message).toMatch(/rootfs\.img does not match its signed SHA-256/);
    expect(opts.sinks).toHaveLength(1);
    expect(opts.sinks[0]!.finished).toBe(false);
    expect(opts.sinks[0]!.destroyed).toBe(true);
    expect(opts.sinks[0]!.destroyedWith).toBe(err);
  });

  it('should refuse a manifest signed by an unknown key before opening any sink', async () => {
    const stranger = keys();
    const bundle = await buildBundleBuffer(stranger, [{ name: 'rootfs.img', kind: 'rootfs', data: rootfs }]);
    const openPayloadSink = vi.fn(async () => new BufferSink());
    const err = await rejection(streamBundle(chunked(bundle), { ...options(), openPayloadSink }));
    expect(err.gantryCode).toBe('OTA_SIGNATURE_FAILED');
    expect(err.message).toContain(stranger.keyId);
    expect(openPayloadSink).not.toHaveBeenCalled();
  });

  it('should refuse a manifest whose key id is trusted but whose signature is not its own', async () => {
    const items = await unpack(await validBundle());
    // Re-signed by another key while still naming the trusted key id: a forged signature.
    items[1]!.data = signManifest(items[0]!.data, keys().privateKey);
    const openPayloadSink = vi.fn(async () => new BufferSink());
    const err = await rejection(
      streamBundle(chunked(await repack(items)), { ...options(), openPayloadSink }),
    );
    expect(err.gantryCode).toBe('OTA_SIGNATURE_FAILED');
    expect(err.message).toMatch(/does not verify/);
    expect(openPayloadSink).not.toHaveBeenCalled();
  });

  it('should refuse a manifest edited after signing', async () => {
    const items = await unpack(await validBundle());
    items[0]!.data = Buffer.from(items[0]!.data.toString('utf8').replace('v5.0.5', 'v5.0.9'));
    const openPayloadSink = vi.fn(async () => new BufferSink());
    const err = await rejection(
      streamBundle(chunked(await repack(items)), { ...options(), openPayloadSink }),
    );
    expect(err.gantryCode).toBe('OTA_SIGNATURE_FAILED');
    expect(openPayloadSink).not.toHaveBeenCalled();
  });

  it('should refuse a bundle built for other hardware, naming the models', async () => {
    const bundle = await validBundle({ compatible: ['Univa-GW-Lite', 'Univa-GW-Mini'] });
    const openPayloadSink = vi.fn(async () => new BufferSink());
    const err = await rejection(streamBundle(chunked(bundle), { ...options(), openPayloadSink }));
    expect(err.gantryCode).toBe('OTA_INVALID_IMAGE');
    expect(err.message).toMatch(/built for Univa-GW-Lite, Univa-GW-Mini, not for .*Univa-GW-Pro/);
    expect(openPayloadSink).not.toHaveBeenCalled();
  });

  it('should refuse a downgrade unless allowDowngrade', async () => {
    const bundle = await validBundle({ version: 'v5.0.3' });
    const openPayloadSink = vi.fn(async () => new BufferSink());
    const err = await rejection(streamBundle(chunked(bundle), { ...options(), openPayloadSink }));
    expect(err.gantryCode).toBe('OTA_INVALID_IMAGE');
    expect(err.message).toMatch(/downgrade refused/);
    expect(openPayloadSink).not.toHaveBeenCalled();

    const res = await streamBundle(chunked(bundle), options({ allowDowngrade: true }));
    expect(res.manifest.version).toBe('v5.0.3');
  });

  it('should treat a pre-release as older than its release and accept a reinstall', async () => {
    const custom = await validBundle({ version: 'v5.1.0-custom' });
    const err = await rejection(streamBundle(chunked(custom), options({ currentVersion: 'v5.1.0' })));
    expect(err.message).toMatch(/downgrade refused/);
    await expect(
      streamBundle(chunked(custom), options({ currentVersion: 'v5.1.0-custom' })),
    ).resolves.toBeTruthy();
    await expect(streamBundle(chunked(custom), options({ currentVersion: null }))).resolves.toBeTruthy();
  });

  it('should refuse a bundle truncated inside a payload and leave the sink unfinished', async () => {
    const bundle = await validBundle();
    const opts = options();
    const err = await rejection(streamBundle(chunked(bundle.subarray(0, 200_000)), opts));
    expect(err.gantryCode).toBe('OTA_INVALID_IMAGE');
    expect(err.message).toMatch(/truncated/);
    expect(opts.sinks[0]?.finished).toBe(false);
  });

  it('should refuse a bundle that ends after its signature', async () => {
    const items = await unpack(await validBundle());
    const opts = options();
    const err = await rejection(streamBundle(chunked(await repack(items.slice(0, 2))), opts));
    expect(err.gantryCode).toBe('OTA_INVALID_IMAGE');
    expect(err.message).toMatch(/payload rootfs\.img is missing/);
  });

  it('should refuse a bundle missing its last payload after writing the first', async () => {
    const items = await unpack(await validBundle());
    const opts = options();
    const err = await rejection(streamBundle(chunked(await repack(items.slice(0, 3))), opts));
    expect(err.message).toMatch(/payload app\.tar is missing/);
  });

  it('should refuse an extra entry after the payloads', async () => {
    const items = await unpack(await validBundle());
    items.push({ name: 'evil.sh', data: Buffer.from('rm -rf /') });
    const err = await rejection(streamBundle(chunked(await repack(items)), options()));
    expect(err.gantryCode).toBe('OTA_INVALID_IMAGE');
    expect(err.message).toMatch(/unexpected entry evil\.sh/);
  });

  it('should refuse entries out of order', async () => {
    const items = await unpack(await validBundle());
    const openPayloadSink = vi.fn(async () => new BufferSink());
    const swapped = [items[0]!, items[1]!, items[3]!, items[2]!];
    const err = await rejection(
      streamBundle(chunked(await repack(swapped)), { ...options(), openPayloadSink }),
    );
    expect(err.message).toMatch(/out of order: found app\.tar where rootfs\.img was expected/);
    expect(openPayloadSink).not.toHaveBeenCalled();

    const sigFirst = [items[1]!, items[0]!, items[2]!, items[3]!];
    const err2 = await rejection(streamBundle(chunked(await repack(sigFirst)), options()));
    expect(err2.message).toMatch(/found manifest\.sig where manifest\.json was expected/);
  });

  it('should refuse a non-regular entry', async () => {
    const items = await unpack(await validBundle());
    const withLink = [
      items[0]!,
      items[1]!,
      { name: 'rootfs.img', data: Buffer.alloc(0), type: 'symlink' as const },
    ];
    const err = await rejection(streamBundle(chunked(await repack(withLink)), options()));
    expect(err.gantryCode).toBe('OTA_INVALID_IMAGE');
    expect(err.message).toMatch(/symlink entry, not a regular file/);
  });

  it('should refuse a manifest that fails the schema, naming the field', async () => {
    const items = await unpack(await validBundle());
    const manifest = JSON.parse(items[0]!.data.toString('utf8')) as Record<string, unknown>;
    manifest.severity = 'apocalyptic';
    items[0]!.data = Buffer.from(JSON.stringify(manifest));
    items[1]!.data = signManifest(items[0]!.data, signer.privateKey);
    const err = await rejection(streamBundle(chunked(await repack(items)), options()));
    expect(err.gantryCode).toBe('OTA_INVALID_IMAGE');
    expect(err.message).toMatch(/severity/);
  });

  it('should refuse a signed bundle that still carries the retired boot_test field (issue 12.4)', async () => {
    const items = await unpack(await validBundle());
    const manifest = JSON.parse(items[0]!.data.toString('utf8')) as Record<string, unknown>;
    manifest.boot_test = { fail: true };
    items[0]!.data = Buffer.from(JSON.stringify(manifest));
    items[1]!.data = signManifest(items[0]!.data, signer.privateKey);
    const openPayloadSink = vi.fn(async () => new BufferSink());
    const err = await rejection(
      streamBundle(chunked(await repack(items)), { ...options(), openPayloadSink }),
    );
    expect(err.gantryCode).toBe('OTA_INVALID_IMAGE');
    expect(err.message).toMatch(/manifest is invalid: .*boot_test/);
    expect(openPayloadSink).not.toHaveBeenCalled();
  });

  it('should refuse a payload whose archive size differs from the signed size before opening a sink', async () => {
    const items = await unpack(await validBundle());
    const manifest = JSON.parse(items[0]!.data.toString('utf8')) as { payloads: { size: number }[] };
    manifest.payloads[0]!.size += 1;
    items[0]!.data = Buffer.from(JSON.stringify(manifest));
    items[1]!.data = signManifest(items[0]!.data, signer.privateKey);
    const openPayloadSink = vi.fn(async () => new BufferSink());
    const err = await rejection(
      streamBundle(chunked(await repack(items)), { ...options(), openPayloadSink }),
    );
    expect(err.gantryCode).toBe('OTA_INVALID_IMAGE');
    expect(err.message).toMatch(/rootfs\.img is 300000 bytes in the archive but 300001 in the manifest/);
    expect(openPayloadSink).not.toHaveBeenCalled();
  });

  it('should carry an empty payload', async () => {
    const bundle = await buildBundleBuffer(signer, [
      { name: 'rootfs.img', kind: 'rootfs', data: rootfs },
      { name: 'empty.bin', kind: 'app', data: Buffer.alloc(0) },
    ]);
    const opts = options();
    const res = await streamBundle(chunked(bundle), opts);
    expect(res.payloads[1]).toEqual({ name: 'empty.bin', size: 0, sha256: sha256(Buffer.alloc(0)) });
    expect(opts.sinks[1]!.finished).toBe(true);
  });

  it('should refuse an oversized manifest without reading it', async () => {
    const err = await rejection(
      streamBundle(chunked(await validBundle()), options({ maxManifestBytes: 100 })),
    );
    expect(err.gantryCode).toBe('OTA_INVALID_IMAGE');
    expect(err.message).toMatch(/manifest\.json is \d+ bytes, more than the 100 allowed/);
  });

  it('should refuse garbage that is not a tar', async () => {
    const err = await rejection(streamBundle(Readable.from([bytes(4096)]), options()));
    expect(err.gantryCode).toBe('OTA_INVALID_IMAGE');
  });

  it('should pass a sink GantryError through and wrap other sink failures', async () => {
    const bundle = await validBundle();
    const full = new GantryError('OTA_INSUFFICIENT_SPACE', 'slot full');
    const failing = (err: Error) =>
      new Writable({
        write(_c, _e, cb) {
          cb(err);
        },
      });
    const a = await rejection(
      streamBundle(chunked(bundle), options({ openPayloadSink: async () => failing(full) })),
    );
    expect(a).toBe(full);
    const b = await rejection(
      streamBundle(chunked(bundle), options({ openPayloadSink: async () => failing(new Error('EIO')) })),
    );
    expect(b.gantryCode).toBe('OTA_INSTALL_FAILED');
    expect(b.message).toMatch(/rootfs\.img.*EIO/);
  });

  it('should report a failing source as OTA_DOWNLOAD_FAILED', async () => {
    const bundle = await validBundle();
    const source = new PassThrough();
    const p = streamBundle(source, options());
    source.write(bundle.subarray(0, 100_000));
    source.destroy(new Error('ECONNRESET'));
    const err = await rejection(p);
    expect(err.gantryCode).toBe('OTA_DOWNLOAD_FAILED');
    expect(err.message).toMatch(/ECONNRESET/);
  });

  it('should stop on abort with the signal reason and destroy the source', async () => {
    const bundle = await validBundle();
    const source = new PassThrough();
    const ac = new AbortController();
    const p = streamBundle(source, { ...options(), signal: ac.signal });
    source.write(bundle.subarray(0, 100_000));
    ac.abort(new Error('cancelled by operator'));
    await expect(p).rejects.toThrow('cancelled by operator');
    expect(source.destroyed).toBe(true);
  });
});

describe('verifyBundle / inspectBundle', () => {
  it('should verify signature and hashes without compatibility checks', async () => {
    const bundle = await validBundle({ compatible: ['Other-Model'], version: 'v1.0.0' });
    const res = await verifyBundle(chunked(bundle), { trustedKeys: [signer.publicKey] });
    expect(res.payloads.map((p) => p.name)).toEqual(['rootfs.img', 'app.tar']);
    const err = await rejection(verifyBundle(chunked(bundle), { trustedKeys: [keys().publicKey] }));
    expect(err.gantryCode).toBe('OTA_SIGNATURE_FAILED');
  });

  it('should inspect structure and hashes without a key, and catch a tampered payload', async () => {
    const items = await unpack(await validBundle());
    const res = await inspectBundle(chunked(await repack(items)));
    expect(res.keyId).toBeNull();
    expect(res.manifest.version).toBe('v5.0.5');
    items[3]!.data[0]! ^= 0xff;
    const err = await rejection(inspectBundle(chunked(await repack(items))));
    expect(err.message).toMatch(/app\.tar does not match/);
  });
});
