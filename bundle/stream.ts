import { createHash, type KeyObject } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { GantryError, isGantryError } from '../core/errors.js';
import { consumeChunks, writeLent } from '../core/lending.js';
import { verifyManifestSignature } from './keys.js';
import {
  compareVersions,
  describeIssues,
  isVersion,
  MANIFEST_ENTRY,
  ManifestSchema,
  SIGNATURE_BYTES,
  SIGNATURE_ENTRY,
  storedSha256,
  storedSize,
  type Manifest,
  type Payload,
} from './manifest.js';
import { inlineDigests, type BundleDigests } from './digests.js';
import type { BundleFrame } from './frame.js';
import { TarFormatError, TarReader, type TarHeader, type TarStep } from './tar-reader.js';

export const DEFAULT_MAX_MANIFEST_BYTES = 256 * 1024;

export interface VerifiedPayload {
  name: string;
  sha256: string;
  size: number;
}

export interface StreamedBundle {
  manifest: Manifest;
  /** SHA-256 of the whole bundle, every byte read. */
  sha256: string;
  /** Id of the trusted key that verified the manifest; null when the signature was not checked. */
  keyId: string | null;
  payloads: VerifiedPayload[];
  /** The bundle's frame (bundle/frame.ts): what a feed signs so gateways hash each byte once. */
  frame: BundleFrame;
}

/** What `streamBundle` read: the whole-bundle hash is null when its digests skipped it. */
export type StreamedToSink = Omit<StreamedBundle, 'sha256'> & { sha256: string | null };

export interface StreamBundleOptions {
  trustedKeys: readonly KeyObject[];
  /** The gateway's hardware model; must be listed in the manifest's `compatible`. */
  hardwareModel: string;
  /** Version running now; null when unknown (a blank device), which skips the rollback check. */
  currentVersion: string | null;
  allowDowngrade?: boolean;
  /**
   * Called once per payload, in manifest order, only after the manifest's signature, the
   * compatibility and the anti-rollback checks passed. The sink is ended only when the payload's
   * size and SHA-256 matched; on any failure it is destroyed with the error, so a sink that sees
   * 'finish' holds exactly the signed bytes. The chunks written to it may be lent (views of the
   * source's read buffer, see core/streams.ts): valid until the sink calls back for them, so a sink
   * keeps a copy, never the chunk itself.
   */
  openPayloadSink(payload: Payload, manifest: Manifest, at: PayloadPosition): Promise<Writable>;
  /** Payload bytes verified-and-written so far, cumulative over all payloads. */
  onProgress?(bytes: number): void;
  /** How the bundle and payload hashes are computed (default: on this thread). */
  digests?: () => BundleDigests;
  /**
   * The frame the feed signed for this bundle: the head is checked against it before the first
   * payload's sink is asked for, the whole frame before the read resolves.
   */
  expectedFrame?: BundleFrame;
  maxManifestBytes?: number;
  /** Aborting destroys the source and rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Where a payload's data starts in the bundle (a resumed download asks for the rest from there). */
export interface PayloadPosition {
  dataOffset: number;
}

interface ReadOptions {
  checkManifest(manifestBytes: Buffer, sig: Buffer, manifest: Manifest): string | null;
  openPayloadSink(payload: Payload, manifest: Manifest, at: PayloadPosition): Promise<Writable>;
  onProgress?(bytes: number): void;
  digests?: () => BundleDigests;
  expectedFrame?: BundleFrame;
  maxManifestBytes: number;
  signal?: AbortSignal;
}

function invalid(message: string, details?: Record<string, unknown>): GantryError {
  return new GantryError('OTA_INVALID_IMAGE', message, details);
}

/**
 * Streams a bundle from `source`: manifest, signature, then each payload through a SHA-256 hasher
 * into the sink `openPayloadSink` returns, with backpressure end to end (memory stays flat whatever
 * the payload size). Nothing is asked of the caller before the manifest is validated, its
 * signature verified with one of `trustedKeys`, the hardware model found in `compatible` and the
 * version checked against `currentVersion`. Rejects with OTA_INVALID_IMAGE (malformed, truncated,
 * incompatible, downgrade, size or hash mismatch), OTA_SIGNATURE_FAILED, OTA_DOWNLOAD_FAILED (the
 * source failed) or a sink's own GantryError (other sink failures become OTA_INSTALL_FAILED).
 */
export function streamBundle(source: Readable, opts: StreamBundleOptions): Promise<StreamedToSink> {
  return readBundle(source, {
    checkManifest: (bytes, sig, manifest) => {
      const id = verifyManifestSignature(bytes, sig, opts.trustedKeys);
      checkInstallable(manifest, opts);
      return id;
    },
    openPayloadSink: opts.openPayloadSink,
    onProgress: opts.onProgress,
    digests: opts.digests,
    expectedFrame: opts.expectedFrame,
    maxManifestBytes: opts.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES,
    signal: opts.signal,
  });
}

/** A bundle read with the whole-bundle hash its digests always compute (the default ones do). */
async function withWholeHash(read: Promise<StreamedToSink>): Promise<StreamedBundle> {
  const res = await read;
  if (res.sha256 === null) throw new Error('the bundle digests were made without the whole-bundle hash');
  return { ...res, sha256: res.sha256 };
}

/** Compatibility and anti-rollback, the checks a signed manifest must still pass to be installed. */
export function checkInstallable(
  manifest: Manifest,
  opts: { hardwareModel: string; currentVersion: string | null; allowDowngrade?: boolean },
): void {
  if (!manifest.compatible.includes(opts.hardwareModel)) {
    throw invalid(
      `bundle ${manifest.version} is built for ${manifest.compatible.join(', ')}, not for this gateway's ${opts.hardwareModel}`,
      { compatible: manifest.compatible, hardware_model: opts.hardwareModel },
    );
  }
  if (opts.allowDowngrade || opts.currentVersion === null) return;
  if (!isVersion(opts.currentVersion)) {
    throw invalid(
      `cannot tell whether ${manifest.version} is a downgrade: the running version ${JSON.stringify(opts.currentVersion)} is not comparable; allow a downgrade to install anyway`,
      { version: manifest.version, current_version: opts.currentVersion },
    );
  }
  if (compareVersions(manifest.version, opts.currentVersion) < 0) {
    throw invalid(
      `downgrade refused: bundle ${manifest.version} is older than the running ${opts.currentVersion}`,
      {
        version: manifest.version,
        current_version: opts.currentVersion,
      },
    );
  }
}

/**
 * Verifies a whole bundle (signature, structure, every payload's size and hash) without installing
 * it: payload bytes are hashed and dropped. No compatibility or rollback check.
 */
export function verifyBundle(
  source: Readable,
  opts: {
    trustedKeys: readonly KeyObject[];
    maxManifestBytes?: number;
    onProgress?(bytes: number): void;
    digests?: () => BundleDigests;
  },
): Promise<StreamedBundle> {
  return withWholeHash(
    readBundle(source, {
      checkManifest: (bytes, sig) => verifyManifestSignature(bytes, sig, opts.trustedKeys),
      openPayloadSink: async () => discard(),
      onProgress: opts.onProgress,
      digests: opts.digests,
      maxManifestBytes: opts.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES,
    }),
  );
}

/**
 * Checks a bundle's structure and payload hashes but NOT its signature (the signature entry must
 * merely be present and 64 bytes): for tooling that inspects bundles it holds no key for.
 */
export function inspectBundle(
  source: Readable,
  opts: { maxManifestBytes?: number; onProgress?(bytes: number): void } = {},
): Promise<StreamedBundle> {
  return withWholeHash(
    readBundle(source, {
      checkManifest: () => null,
      openPayloadSink: async () => discard(),
      onProgress: opts.onProgress,
      maxManifestBytes: opts.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES,
    }),
  );
}

function discard(): Writable {
  return new Writable({
    write(_chunk, _enc, cb) {
      cb();
    },
  });
}

function parseManifest(bytes: Buffer): Manifest {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw invalid(`bundle manifest is not JSON: ${(err as Error).message}`);
  }
  const parsed = ManifestSchema.safeParse(json);
  if (!parsed.success) throw invalid(`bundle manifest is invalid: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

function expectRegularFile(header: TarHeader, expected: string): void {
  const { name, type } = header;
  if (type !== 'file') throw invalid(`bundle entry ${name} is a ${type} entry, not a regular file`);
  if (name !== expected) {
    throw invalid(`bundle entry out of order: found ${name} where ${expected} was expected`, {
      found: name,
      expected,
    });
  }
}

/** A small entry (manifest, signature) collected from the slices the reader hands out. */
class SmallEntry {
  private readonly chunks: Buffer[] = [];
  private total = 0;
  constructor(
    readonly what: string,
    private readonly max: number,
  ) {}
  add(data: Buffer): void {
    this.total += data.length;
    if (this.total > this.max) throw invalid(`${this.what} is larger than the ${this.max} bytes allowed`);
    this.chunks.push(Buffer.from(data)); // a copy: the slice belongs to the source's chunk
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks, this.total);
  }
}

/** The payload being streamed: its sink and how much of it has passed. */
interface OpenPayload {
  payload: Payload;
  sink: Writable;
  count: number;
  /** The sink's own failure ('error' event), raised at the next write or at the entry's end. */
  failure: unknown;
}

/** A frame hash that differs from the one the feed signed. */
function frameMismatch(part: 'head' | 'frame', expected: string, actual: string): GantryError {
  return invalid(
    part === 'head'
      ? "bundle head (manifest, signature, headers) does not match the feed's signed hash"
      : "bundle frame (headers, padding, end of archive) does not match the feed's signed hash",
    { expected, actual },
  );
}

async function readBundle(source: Readable, opts: ReadOptions): Promise<StreamedToSink> {
  const reader = new TarReader();
  const digests = (opts.digests ?? inlineDigests)();
  // Every byte that is not payload data, on this thread: a few KiB per bundle (bundle/frame.ts).
  const frameHash = createHash('sha256');
  let head: { length: number; sha256: string } | null = null;
  const signedFrame = opts.expectedFrame;
  let manifestEntry: SmallEntry | null = null;
  let sigEntry: SmallEntry | null = null;
  let manifestBytes: Buffer | null = null;
  let manifest: Manifest | null = null;
  let keyId: string | null = null;
  let signatureChecked = false;
  let open: OpenPayload | null = null;
  let entries = 0;
  let progress = 0;
  const verified: VerifiedPayload[] = [];

  const onAbort = (): void => {
    if (!source.destroyed) source.destroy(opts.signal?.reason as Error);
  };
  if (opts.signal?.aborted) throw opts.signal.reason;
  opts.signal?.addEventListener('abort', onAbort, { once: true });

  /** What the entry at `index` must be: the manifest, its signature, then the payloads in order. */
  const expectedName = (index: number): string | undefined =>
    index === 0 ? MANIFEST_ENTRY : index === 1 ? SIGNATURE_ENTRY : manifest?.payloads[index - 2]?.name;

  const sinkFailure = (payload: Payload, err: unknown): GantryError => {
    if (isGantryError(err)) return err;
    return new GantryError(
      'OTA_INSTALL_FAILED',
      `writing payload ${payload.name} failed: ${(err as Error).message}`,
      { payload: payload.name },
      err,
    );
  };

  const onHeader = async (header: TarHeader): Promise<void> => {
    const index = entries++;
    const expected = expectedName(index);
    if (expected === undefined) {
      throw invalid(`bundle has an unexpected entry ${header.name} after its payloads`, {
        entry: header.name,
      });
    }
    expectRegularFile(header, expected);
    if (index === 0) {
      if (header.size > opts.maxManifestBytes) {
        throw invalid(
          `${MANIFEST_ENTRY} is ${header.size} bytes, more than the ${opts.maxManifestBytes} allowed`,
        );
      }
      manifestEntry = new SmallEntry(MANIFEST_ENTRY, opts.maxManifestBytes);
      return;
    }
    if (index === 1) {
      if (header.size > SIGNATURE_BYTES) {
        throw invalid(`${SIGNATURE_ENTRY} is ${header.size} bytes, more than the ${SIGNATURE_BYTES} allowed`);
      }
      sigEntry = new SmallEntry(SIGNATURE_ENTRY, SIGNATURE_BYTES);
      return;
    }
    if (index === 2) {
      // The head ends here, with this header: checked before anything is asked to take a byte.
      head = { length: header.dataOffset, sha256: frameHash.copy().digest('hex') };
      if (signedFrame && (head.length !== signedFrame.headLength || head.sha256 !== signedFrame.headSha256)) {
        throw frameMismatch('head', signedFrame.headSha256, head.sha256);
      }
    }
    const payload = manifest!.payloads[index - 2]!;
    if (header.size !== storedSize(payload)) {
      throw invalid(
        `payload ${payload.name} is ${header.size} bytes in the archive but ${storedSize(payload)} in the manifest`,
        { payload: payload.name },
      );
    }
    let sink: Writable;
    try {
      sink = await opts.openPayloadSink(payload, manifest!, { dataOffset: header.dataOffset });
    } catch (err) {
      if (isGantryError(err)) throw err;
      throw new GantryError(
        'OTA_INSTALL_FAILED',
        `cannot open a sink for payload ${payload.name}: ${(err as Error).message}`,
        undefined,
        err,
      );
    }
    digests.beginPayload(header.dataOffset, header.size);
    const current: OpenPayload = { payload, sink, count: 0, failure: undefined };
    sink.on('error', (err) => {
      current.failure ??= err;
    });
    open = current;
  };

  // Synchronous unless the sink kept the chunk: the common path costs no promise per chunk. The
  // chunk may be lent (a view of the source's read buffer): waiting until the sink let go of it is
  // what keeps the source from reading over it.
  const onData = (data: Buffer): Promise<void> | undefined => {
    if (open) {
      const p: OpenPayload = open;
      if (p.failure !== undefined) throw sinkFailure(p.payload, p.failure);
      p.count += data.length;
      progress += data.length;
      opts.onProgress?.(progress);
      const releasing = writeLent(p.sink, data);
      if (!releasing) return undefined;
      return releasing.then(() => {
        if (p.failure !== undefined) throw sinkFailure(p.payload, p.failure);
      });
    }
    if (sigEntry) (sigEntry as SmallEntry).add(data);
    else (manifestEntry as SmallEntry | null)?.add(data);
    return undefined;
  };

  const onEntryEnd = async (): Promise<void> => {
    if (open) {
      const { payload, sink } = open as OpenPayload;
      const digest = await digests.payloadDigest();
      if (digest !== storedSha256(payload)) {
        throw invalid(`payload ${payload.name} does not match its signed SHA-256`, {
          payload: payload.name,
          expected: storedSha256(payload),
          actual: digest,
        });
      }
      // Ended only now: a sink that sees 'finish' holds exactly the signed bytes.
      try {
        await finished(sink.end() as Writable);
      } catch (err) {
        throw sinkFailure(payload, (open as OpenPayload).failure ?? err);
      }
      verified.push({ name: payload.name, sha256: payload.sha256, size: payload.size });
      open = null;
    } else if (sigEntry) {
      const sig = (sigEntry as SmallEntry).bytes();
      sigEntry = null;
      if (sig.length !== SIGNATURE_BYTES) {
        throw new GantryError('OTA_SIGNATURE_FAILED', `manifest.sig is ${sig.length} bytes; 64 expected`);
      }
      // Signature, compatibility and rollback are decided here, before any sink exists.
      keyId = opts.checkManifest(manifestBytes!, sig, manifest!);
      signatureChecked = true;
    } else if (manifestEntry) {
      manifestBytes = (manifestEntry as SmallEntry).bytes();
      manifestEntry = null;
      manifest = parseManifest(manifestBytes);
    }
  };

  const onStep = (step: TarStep): Promise<void> | undefined => {
    switch (step.kind) {
      case 'header':
        return onHeader(step.header);
      case 'data':
        return onData(step.data);
      case 'entry-end':
        return onEntryEnd();
      case 'end':
        return undefined;
    }
  };

  /** Walks one chunk through the reader, from `at`; returns a promise only if a step must wait. */
  const walk = (chunk: Buffer, at: number): Promise<void> | undefined => {
    while (at < chunk.length || reader.entryComplete) {
      const { step, next } = reader.step(chunk, at);
      // Every byte goes to the hashes in order, before its step is handled: a payload's range is
      // set at its header, ahead of its first byte. The rest is the frame.
      if (next > at) {
        const bytes = chunk.subarray(at, next);
        digests.update(bytes);
        if (!(open && step?.kind === 'data')) frameHash.update(bytes);
      }
      at = next;
      const pending = step ? onStep(step) : undefined;
      if (pending) return pending.then(() => walk(chunk, next));
    }
    return undefined;
  };

  // Errors of the source itself (a dropped connection, a failed read) and of the tar framing.
  const readError = (err: unknown): unknown => {
    if (opts.signal?.aborted) return opts.signal.reason;
    if (isGantryError(err)) return err;
    if (err instanceof TarFormatError) {
      return invalid(`bundle is truncated or not a valid tar archive: ${err.message}`);
    }
    return new GantryError(
      'OTA_DOWNLOAD_FAILED',
      `reading the bundle failed: ${(err as Error).message ?? String(err)}`,
      undefined,
      err,
    );
  };

  try {
    try {
      await consumeChunks(source, (chunk) => {
        const stepping = walk(chunk, 0);
        // The hasher may run behind (on its thread): wait for it before taking more.
        const hashing = digests.behind();
        if (!stepping) return hashing;
        return hashing ? Promise.all([stepping, hashing]).then(() => undefined) : stepping;
      });
      const last = reader.finish();
      if (last) await onStep(last);
    } catch (err) {
      throw readError(err);
    }
    if (!manifest) throw invalid(`bundle is empty: no ${MANIFEST_ENTRY}`);
    if (!signatureChecked) {
      throw invalid(`bundle is truncated: no ${SIGNATURE_ENTRY} after the manifest`);
    }
    const missing = (manifest as Manifest).payloads[verified.length];
    if (missing) {
      throw invalid(`bundle is truncated: payload ${missing.name} is missing`, { payload: missing.name });
    }
    const frameSha256 = frameHash.digest('hex');
    const headPart = (head as { length: number; sha256: string } | null) ?? {
      length: reader.position,
      sha256: frameSha256,
    };
    if (
      signedFrame &&
      (headPart.sha256 !== signedFrame.headSha256 || headPart.length !== signedFrame.headLength)
    ) {
      throw frameMismatch('head', signedFrame.headSha256, headPart.sha256);
    }
    if (signedFrame && frameSha256 !== signedFrame.sha256) {
      throw frameMismatch('frame', signedFrame.sha256, frameSha256);
    }
    const frame = { headLength: headPart.length, headSha256: headPart.sha256, sha256: frameSha256 };
    return { manifest, sha256: await digests.bundleDigest(), keyId, payloads: verified, frame };
  } catch (err) {
    const current = open as OpenPayload | null;
    if (current && !current.sink.destroyed) current.sink.destroy(err as Error);
    throw err;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    digests.close();
    if (!source.destroyed) source.destroy();
  }
}

/** What `readBundleHead` learned: the verified manifest and where the first payload's data starts. */
export interface BundleHead {
  manifest: Manifest;
  keyId: string | null;
  /** Offset of the first payload's data in the bundle: the head's length. */
  payloadOffset: number;
}

/**
 * Reads a bundle only up to its first payload's data: the manifest, verified like `streamBundle`
 * does (signature, compatibility, anti-rollback), without a single payload byte. What the update
 * pipeline reads first, through a ranged request, to choose how to get the image (full bundle,
 * hop delta, dynamic chunks). `source` may end right after the head.
 */
export async function readBundleHead(
  source: Readable,
  opts: Omit<StreamBundleOptions, 'openPayloadSink' | 'onProgress' | 'digests'>,
): Promise<BundleHead> {
  let keyId: string | null = null;
  let head: BundleHead | null = null;
  try {
    await readBundle(source, {
      checkManifest: (bytes, sig, manifest) => {
        keyId = verifyManifestSignature(bytes, sig, opts.trustedKeys);
        checkInstallable(manifest, opts);
        return keyId;
      },
      openPayloadSink: async (_payload, manifest, at) => {
        head = { manifest, keyId, payloadOffset: at.dataOffset };
        // Stops the reader: nothing past the head is wanted (the source may not even have it).
        throw new GantryError('OTA_DOWNLOAD_FAILED', 'bundle head read');
      },
      // A signed frame's head is checked before the sink is asked for: the head read is bound to
      // the feed's target too, whatever path then brings the image.
      expectedFrame: opts.expectedFrame,
      maxManifestBytes: opts.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES,
      signal: opts.signal,
    });
  } catch (err) {
    if (head) return head;
    throw err;
  }
  throw invalid('bundle holds no payload');
}
