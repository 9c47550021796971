import { createHash, type KeyObject } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { GantryError, isGantryError } from '../core/errors.js';
import { verifyManifestSignature } from './keys.js';
import {
  compareVersions,
  describeIssues,
  isVersion,
  MANIFEST_ENTRY,
  ManifestSchema,
  SIGNATURE_BYTES,
  SIGNATURE_ENTRY,
  type Manifest,
  type Payload,
} from './manifest.js';

type TarEntry = tar.ExtractEvents['entry'][1];

export const DEFAULT_MAX_MANIFEST_BYTES = 256 * 1024;

export interface VerifiedPayload {
  name: string;
  sha256: string;
  size: number;
}

export interface StreamedBundle {
  manifest: Manifest;
  /** Id of the trusted key that verified the manifest; null when the signature was not checked. */
  keyId: string | null;
  payloads: VerifiedPayload[];
}

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
   * 'finish' holds exactly the signed bytes.
   */
  openPayloadSink(payload: Payload, manifest: Manifest): Promise<Writable>;
  /** Payload bytes verified-and-written so far, cumulative over all payloads. */
  onProgress?(bytes: number): void;
  maxManifestBytes?: number;
  /** Aborting destroys the source and rejects with the signal's reason. */
  signal?: AbortSignal;
}

interface ReadOptions {
  checkManifest(manifestBytes: Buffer, sig: Buffer, manifest: Manifest): string | null;
  openPayloadSink(payload: Payload, manifest: Manifest): Promise<Writable>;
  onProgress?(bytes: number): void;
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
export function streamBundle(source: Readable, opts: StreamBundleOptions): Promise<StreamedBundle> {
  return readBundle(source, {
    checkManifest: (bytes, sig, manifest) => {
      const id = verifyManifestSignature(bytes, sig, opts.trustedKeys);
      checkInstallable(manifest, opts);
      return id;
    },
    openPayloadSink: opts.openPayloadSink,
    onProgress: opts.onProgress,
    maxManifestBytes: opts.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES,
    signal: opts.signal,
  });
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
  opts: { trustedKeys: readonly KeyObject[]; maxManifestBytes?: number; onProgress?(bytes: number): void },
): Promise<StreamedBundle> {
  return readBundle(source, {
    checkManifest: (bytes, sig) => verifyManifestSignature(bytes, sig, opts.trustedKeys),
    openPayloadSink: async () => discard(),
    onProgress: opts.onProgress,
    maxManifestBytes: opts.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES,
  });
}

/**
 * Checks a bundle's structure and payload hashes but NOT its signature (the signature entry must
 * merely be present and 64 bytes): for tooling that inspects bundles it holds no key for.
 */
export function inspectBundle(
  source: Readable,
  opts: { maxManifestBytes?: number; onProgress?(bytes: number): void } = {},
): Promise<StreamedBundle> {
  return readBundle(source, {
    checkManifest: () => null,
    openPayloadSink: async () => discard(),
    onProgress: opts.onProgress,
    maxManifestBytes: opts.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES,
  });
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

async function readSmallEntry(entry: TarEntry, max: number, what: string): Promise<Buffer> {
  const declared = entry.header.size ?? 0;
  if (declared > max) throw invalid(`${what} is ${declared} bytes, more than the ${max} allowed`);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const data of entry) {
    const chunk = data as Buffer;
    total += chunk.length;
    if (total > max) throw invalid(`${what} is larger than the ${max} bytes allowed`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}

function expectRegularFile(entry: TarEntry, expected: string): void {
  const { name, type } = entry.header;
  if (type !== 'file')
    throw invalid(`bundle entry ${name} is a ${type ?? 'unknown'} entry, not a regular file`);
  if (name !== expected) {
    throw invalid(`bundle entry out of order: found ${name} where ${expected} was expected`, {
      found: name,
      expected,
    });
  }
}

async function readBundle(source: Readable, opts: ReadOptions): Promise<StreamedBundle> {
  const extract = tar.extract();
  const entries = extract[Symbol.asyncIterator]();
  let settled = false;
  let sourceError: unknown;

  const stopSource = (err?: unknown): void => {
    if (!source.destroyed) source.destroy(err instanceof Error ? err : undefined);
  };
  const onAbort = (): void => {
    sourceError ??= opts.signal?.reason;
    stopSource();
    extract.destroy(opts.signal?.reason as Error);
  };
  if (opts.signal?.aborted) throw opts.signal.reason;
  opts.signal?.addEventListener('abort', onAbort, { once: true });

  // Feeds the tar parser by hand: Node's pipe()/pipeline() do not fully understand the streamx
  // streams tar-stream 3 is built on, and a manual loop makes the backpressure explicit.
  const pump = (async () => {
    try {
      for await (const chunk of source) {
        if (extract.destroyed || settled) return;
        if (!extract.write(chunk as Buffer)) await drained(extract);
      }
      if (!extract.destroyed) extract.end(undefined);
    } catch (err) {
      if (!settled) {
        sourceError ??= err;
        extract.destroy(err as Error);
      }
    }
  })();

  // Errors raised by reading the tar: the source's own failure, or a malformed/truncated archive.
  const readError = (err: unknown): unknown => {
    if (opts.signal?.aborted) return opts.signal.reason;
    if (sourceError !== undefined) {
      if (isGantryError(sourceError)) return sourceError;
      return new GantryError(
        'OTA_DOWNLOAD_FAILED',
        `reading the bundle failed: ${(sourceError as Error).message ?? String(sourceError)}`,
        undefined,
        sourceError,
      );
    }
    if (isGantryError(err)) return err;
    return invalid(
      `bundle is truncated or not a valid tar archive: ${(err as Error).message ?? String(err)}`,
    );
  };

  const next = async (): Promise<TarEntry | undefined> => {
    try {
      const r = await entries.next();
      return r.done ? undefined : r.value;
    } catch (err) {
      throw readError(err);
    }
  };

  try {
    const manifestEntry = await next();
    if (!manifestEntry) throw invalid('bundle is empty: no manifest.json');
    expectRegularFile(manifestEntry, MANIFEST_ENTRY);
    const manifestBytes = await readSmallEntry(manifestEntry, opts.maxManifestBytes, MANIFEST_ENTRY).catch(
      (e) => {
        throw readError(e);
      },
    );
    const manifest = parseManifest(manifestBytes);

    const sigEntry = await next();
    if (!sigEntry) throw invalid('bundle is truncated: no manifest.sig after the manifest');
    expectRegularFile(sigEntry, SIGNATURE_ENTRY);
    const sig = await readSmallEntry(sigEntry, SIGNATURE_BYTES, SIGNATURE_ENTRY).catch((e) => {
      throw readError(e);
    });
    if (sig.length !== SIGNATURE_BYTES) {
      throw new GantryError('OTA_SIGNATURE_FAILED', `manifest.sig is ${sig.length} bytes; 64 expected`);
    }
    // Signature, compatibility and rollback are decided here, before any sink exists.
    const keyId = opts.checkManifest(manifestBytes, sig, manifest);

    const verified: VerifiedPayload[] = [];
    let progress = 0;
    for (const payload of manifest.payloads) {
      const entry = await next();
      if (!entry) {
        throw invalid(`bundle is truncated: payload ${payload.name} is missing`, { payload: payload.name });
      }
      expectRegularFile(entry, payload.name);
      if (entry.header.size !== payload.size) {
        throw invalid(
          `payload ${payload.name} is ${entry.header.size ?? 0} bytes in the archive but ${payload.size} in the manifest`,
          { payload: payload.name },
        );
      }
      let sink: Writable;
      try {
        sink = await opts.openPayloadSink(payload, manifest);
      } catch (err) {
        if (isGantryError(err)) throw err;
        throw new GantryError(
          'OTA_INSTALL_FAILED',
          `cannot open a sink for payload ${payload.name}: ${(err as Error).message}`,
          undefined,
          err,
        );
      }
      const before = progress;
      // The hash is checked inside the source generator, before it returns: pipeline() ends the
      // sink only after a clean return, so a mismatching payload never 'finish'es its sink.
      const hashed = async function* (): AsyncGenerator<Buffer> {
        const hash = createHash('sha256');
        let count = 0;
        try {
          for await (const data of entry) {
            const chunk = data as Buffer;
            count += chunk.length;
            if (count > payload.size)
              throw invalid(`payload ${payload.name} is larger than its ${payload.size} bytes`);
            hash.update(chunk);
            progress = before + count;
            yield chunk;
            opts.onProgress?.(progress);
          }
        } catch (err) {
          throw readError(err);
        }
        if (count !== payload.size) {
          throw invalid(`payload ${payload.name} ended after ${count} of ${payload.size} bytes`, {
            payload: payload.name,
          });
        }
        const digest = hash.digest('hex');
        if (digest !== payload.sha256) {
          throw invalid(`payload ${payload.name} does not match its signed SHA-256`, {
            payload: payload.name,
            expected: payload.sha256,
            actual: digest,
          });
        }
      };
      try {
        await pipeline(hashed, sink);
      } catch (err) {
        if (!sink.destroyed) sink.destroy(err as Error);
        if (isGantryError(err) || opts.signal?.aborted) throw readError(err);
        throw new GantryError(
          'OTA_INSTALL_FAILED',
          `writing payload ${payload.name} failed: ${(err as Error).message}`,
          { payload: payload.name },
          err,
        );
      }
      verified.push({ name: payload.name, sha256: payload.sha256, size: payload.size });
    }

    const extra = await next();
    if (extra) {
      throw invalid(`bundle has an unexpected entry ${extra.header.name} after its payloads`, {
        entry: extra.header.name,
      });
    }
    return { manifest, keyId, payloads: verified };
  } finally {
    settled = true;
    opts.signal?.removeEventListener('abort', onAbort);
    stopSource();
    if (!extract.destroyed) extract.destroy();
    await pump;
  }
}

/** Resolves on 'drain', or on 'close' so a destroyed stream never leaves the writer hanging. */
function drained(stream: { destroyed: boolean }): Promise<void> {
  const ee = stream as unknown as EventEmitter;
  return new Promise((resolve) => {
    if (stream.destroyed) return resolve();
    const done = (): void => {
      ee.off('drain', done);
      ee.off('close', done);
      resolve();
    };
    ee.on('drain', done);
    ee.on('close', done);
  });
}
