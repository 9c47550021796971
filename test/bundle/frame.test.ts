import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { inlineDigests, threadDigests } from '../../bundle/digests.js';
import { signedFrame, targetFrame, type BundleFrame } from '../../bundle/frame.js';
import {
  inspectBundle,
  readBundleHead,
  streamBundle,
  type StreamBundleOptions,
} from '../../bundle/stream.js';
import { GantryError } from '../../core/errors.js';
import { BufferSink, buildBundleBuffer, bytes, keys, MODEL, sha256, unpack } from './helpers.js';

const signer = keys();
const rootfs = bytes(300_001, 3);
const app = bytes(5_003, 5);

const bundleOf = (description = 'a release') =>
  buildBundleBuffer(
    signer,
    [
      { name: 'rootfs.img', kind: 'rootfs', data: rootfs },
      { name: 'app.tar', kind: 'app', data: app },
    ],
    { description },
  );

function chunked(buf: Buffer, size = 6_007): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) parts.push(buf.subarray(i, i + size));
  return Readable.from(parts);
}

function options(frame: BundleFrame, onThread = false) {
  const sinks: BufferSink[] = [];
  const opts: StreamBundleOptions = {
    trustedKeys: [signer.publicKey],
    hardwareModel: MODEL,
    currentVersion: 'v5.0.4',
    expectedFrame: frame,
    digests: () => (onThread ? threadDigests : inlineDigests)({ whole: false }),
    openPayloadSink: async () => {
      const s = new BufferSink();
      sinks.push(s);
      return s;
    },
  };
  return { opts, sinks };
}

async function rejection(p: Promise<unknown>): Promise<GantryError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GantryError);
  return err as GantryError;
}

/** Where the bytes of the manifest's signature entry end: padding follows (64 bytes of 512). */
async function signaturePadding(bundle: Buffer): Promise<number> {
  const manifestBytes = (await unpack(bundle))[0]!.data.length;
  return 512 + Math.ceil(manifestBytes / 512) * 512 + 512 + 64;
}

describe('bundle frame (one SHA-256 pass per byte)', () => {
  it('should be every byte that is not payload data, and the head up to the first payload', async () => {
    const bundle = await bundleOf();
    const { frame } = await inspectBundle(chunked(bundle));
    const rootAt = bundle.indexOf(rootfs);
    const appAt = bundle.indexOf(app);
    expect(frame.headLength).toBe(rootAt);
    expect(frame.headSha256).toBe(sha256(bundle.subarray(0, rootAt)));
    const rest = Buffer.concat([
      bundle.subarray(0, rootAt),
      bundle.subarray(rootAt + rootfs.length, appAt),
      bundle.subarray(appAt + app.length),
    ]);
    expect(frame.sha256).toBe(sha256(rest));
  });

  it.each([
    ['on this thread', false],
    ['on a worker thread', true],
  ])(
    'should deliver the exact payloads without the whole-bundle hash when the frame matches (%s)',
    async (_name, onThread) => {
      const bundle = await bundleOf();
      const { frame } = await inspectBundle(chunked(bundle));
      const { opts, sinks } = options(frame, onThread);
      const res = await streamBundle(chunked(bundle), opts);
      expect(res.sha256).toBeNull();
      expect(res.frame).toEqual(frame);
      expect(sinks.map((s) => s.finished)).toEqual([true, true]);
      expect(sinks[0]!.data.equals(rootfs)).toBe(true);
      expect(sinks[1]!.data.equals(app)).toBe(true);
    },
  );

  it('should refuse a head that differs from the signed one before any payload sink is asked for', async () => {
    const bundle = await bundleOf();
    const { frame } = await inspectBundle(chunked(bundle));
    // A padding byte: the tar reader and the signature never look at it, only a hash of the file does.
    const tampered = Buffer.from(bundle);
    tampered[(await signaturePadding(bundle)) + 10] = 0x5a;
    expect((await inspectBundle(chunked(tampered))).manifest.version).toBe('v5.0.5');
    const { opts, sinks } = options(frame);
    const err = await rejection(streamBundle(chunked(tampered), opts));
    expect(err.gantryCode).toBe('OTA_INVALID_IMAGE');
    expect(err.message).toMatch(/bundle head .* does not match the feed's signed hash/);
    expect(sinks).toHaveLength(0);
  });

  it('should refuse another validly signed bundle in place of the signed one before any payload sink', async () => {
    const signed = await bundleOf('the release the feed signed');
    const other = await bundleOf('another release, same key');
    const { frame } = await inspectBundle(chunked(signed));
    const { opts, sinks } = options(frame);
    const err = await rejection(streamBundle(chunked(other), opts));
    expect(err.message).toMatch(/bundle head/);
    expect(sinks).toHaveLength(0);
  });

  it('should refuse a frame byte past the head (padding between payloads) before the read resolves', async () => {
    const bundle = await bundleOf();
    const { frame } = await inspectBundle(chunked(bundle));
    const tampered = Buffer.from(bundle);
    tampered[bundle.indexOf(rootfs) + rootfs.length + 3] = 0x5a;
    const { opts } = options(frame);
    const err = await rejection(streamBundle(chunked(tampered), opts));
    expect(err.gantryCode).toBe('OTA_INVALID_IMAGE');
    expect(err.message).toMatch(/bundle frame .* does not match the feed's signed hash/);
  });

  it('should refuse a payload byte that differs from the signed one and never finish its sink', async () => {
    const bundle = await bundleOf();
    const { frame } = await inspectBundle(chunked(bundle));
    const tampered = Buffer.from(bundle);
    tampered[bundle.indexOf(rootfs) + 1000]! ^= 0x01;
    const { opts, sinks } = options(frame, true);
    const err = await rejection(streamBundle(chunked(tampered), opts));
    expect(err.message).toMatch(/rootfs\.img does not match its signed SHA-256/);
    expect(sinks[0]!.finished).toBe(false);
  });

  it('should bind a head read (the delta paths) to the signed frame too', async () => {
    const bundle = await bundleOf();
    const { frame } = await inspectBundle(chunked(bundle));
    const check = { trustedKeys: [signer.publicKey], hardwareModel: MODEL, currentVersion: 'v5.0.4' };
    const head = await readBundleHead(chunked(bundle.subarray(0, frame.headLength)), {
      ...check,
      expectedFrame: frame,
    });
    expect(head.payloadOffset).toBe(frame.headLength);
    const tampered = Buffer.from(bundle.subarray(0, frame.headLength));
    tampered[(await signaturePadding(bundle)) + 1] = 0x5a;
    const err = await rejection(readBundleHead(chunked(tampered), { ...check, expectedFrame: frame }));
    expect(err.message).toMatch(/bundle head/);
  });

  it("should take a target's frame only when it is well formed and names the target's length", async () => {
    const bundle = await bundleOf();
    const { frame } = await inspectBundle(chunked(bundle));
    const custom = { version: 'v5.0.5', frame: targetFrame(frame, bundle.length) };
    expect(signedFrame(custom, bundle.length)).toEqual(frame);
    expect(signedFrame(custom, bundle.length + 512)).toBeNull();
    expect(signedFrame({ version: 'v5.0.5' }, bundle.length)).toBeNull();
    expect(
      signedFrame({ frame: { ...targetFrame(frame, bundle.length), head_sha256: 'x' } }, bundle.length),
    ).toBeNull();
    expect(
      signedFrame(
        { frame: { ...targetFrame(frame, bundle.length), head_length: bundle.length + 1 } },
        bundle.length,
      ),
    ).toBeNull();
  });
});
