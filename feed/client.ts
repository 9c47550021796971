import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { Metadata, MetadataKind, type TargetFile } from '@tufjs/models';
import type * as tufJs from 'tuf-js';
import { GantryError, isGantryError } from '../core/errors.js';
import { writeFileAtomicSync } from '../core/fsutil.js';
import {
  DEFAULT_FETCH_TIMEOUT_MS,
  fetchTarget,
  MetadataFetcher,
  type FeedTransport,
  type FetchTargetOptions,
} from './fetch.js';
import { TargetCustomSchema, type FeedTarget } from './types.js';

export interface FeedClientOptions extends FeedTransport {
  /** Where the verified metadata is kept between refreshes (the trusted root as `root.json`). */
  metadataDir: string;
  /** Unused by Gantry's own pipeline (it streams targets); passed to tuf-js for completeness. */
  targetDir?: string;
  metadataBaseUrl: string;
  targetBaseUrl: string;
  /**
   * The root metadata (JSON text or bytes) this device trusts out of the box. Written as
   * `root.json` when the metadata dir has none, or holds an older root version; a newer root
   * already there (the feed rotated its keys) is kept.
   */
  trustedRoot: string | Uint8Array;
  fetchTimeoutMs?: number;
  userAgent?: string;
}

type JsonObject = Parameters<typeof Metadata.fromJSON>[1];

function parseRoot(bytes: string | Uint8Array, what: string): { version: number } {
  try {
    const json = JSON.parse(
      typeof bytes === 'string' ? bytes : Buffer.from(bytes).toString('utf8'),
    ) as JsonObject;
    const md = Metadata.fromJSON(MetadataKind.Root, json);
    md.verifyDelegate(MetadataKind.Root, md);
    return { version: md.signed.version };
  } catch (err) {
    throw new GantryError(
      'OTA_SIGNATURE_FAILED',
      `${what} is not a valid self-signed TUF root: ${(err as Error).message}`,
    );
  }
}

/** Error classes tuf-js throws (not exported by it, so matched by constructor name). */
const SIGNATURE_CLASSES = new Set(['UnsignedMetadataError', 'LengthOrHashMismatchError', 'CryptoError']);

/**
 * Maps whatever tuf-js threw to Gantry's codes. Its error classes are not exported and several
 * failures reach us re-wrapped in a plain RuntimeError whose message embeds the original
 * (`Unable to load targets error Error: targets was signed by 0/1 keys`), so both the class name
 * and the message are read. Verification failures (bad signature, expired metadata, rollback,
 * hash mismatch) become OTA_SIGNATURE_FAILED; transport failures OTA_DOWNLOAD_FAILED.
 */
export function mapFeedError(err: unknown): GantryError {
  if (isGantryError(err)) return err;
  const e = err instanceof Error ? err : new Error(String(err));
  const cls = e.constructor?.name ?? 'Error';
  const msg = e.message;
  const details = { tuf_error: cls, tuf_message: msg };
  const sig = (message: string): GantryError =>
    new GantryError('OTA_SIGNATURE_FAILED', message, details, err);
  const dl = (message: string): GantryError => new GantryError('OTA_DOWNLOAD_FAILED', message, details, err);

  if (cls === 'ExpiredMetadataError' || /\bis expired\b/.test(msg)) {
    const which = /(\w+)\.json is expired/.exec(msg)?.[1] ?? 'metadata';
    return sig(
      `the update feed's ${which} metadata has expired: the feed may be frozen by an attacker or its publisher stopped re-signing it (${msg})`,
    );
  }
  if (
    cls === 'BadVersionError' ||
    /version \d+ (of \S+ )?is less than current version|New (timestamp|snapshot) version|Expected version \d+, got|does not match snapshot version|Snapshot version doesn't match timestamp/.test(
      msg,
    )
  ) {
    return sig(
      `the update feed offered older metadata than this gateway has already seen (rollback refused): ${msg}`,
    );
  }
  if (
    SIGNATURE_CLASSES.has(cls) ||
    /was signed by \d+\/\d+ keys|failed to verify \S+ signature|no signature for key/.test(msg)
  ) {
    return sig(`the update feed's metadata is not signed by the trusted keys: ${msg}`);
  }
  if (/Expected (length|hash) /.test(msg) || /Hash algorithm .* not supported/.test(msg)) {
    return sig(`the update feed's metadata does not match its signed hashes: ${msg}`);
  }
  if (cls === 'RepositoryError' || /Expected '\w+', got|Missing \S+ in snapshot|Missing file /.test(msg)) {
    return sig(`the update feed's metadata is inconsistent: ${msg}`);
  }
  if (cls === 'DownloadHTTPError') {
    const status = (err as { statusCode?: number }).statusCode;
    return dl(`the update feed answered HTTP ${status ?? '?'}`);
  }
  if (cls === 'DownloadLengthMismatchError' || /Max length reached/.test(msg)) {
    return dl(`the update feed sent more metadata than allowed: ${msg}`);
  }
  if (cls === 'SyntaxError' || /Unexpected token|is not valid JSON|JSON/.test(msg)) {
    return dl(`the update feed sent something that is not TUF metadata: ${msg}`);
  }
  if (e.name === 'TimeoutError' || e.name === 'AbortError')
    return dl(`the update feed did not answer in time: ${msg}`);
  if (/Failed to download|fetch failed|ECONNREFUSED|ENOTFOUND|ECONNRESET|EAI_AGAIN|socket/i.test(msg)) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    return dl(`cannot reach the update feed: ${msg}${cause?.code ? ` (${cause.code})` : ''}`);
  }
  return dl(`refreshing the update feed failed: ${msg}`);
}

/**
 * A TUF client for Gantry's feed. `refresh()` runs the TUF client workflow with a fresh tuf-js
 * Updater each time (an Updater's trusted set only ever moves forward within one refresh) and
 * lists the signed targets; `fetchTarget()` streams one target's bytes.
 */
export class FeedClient {
  private readonly opts: FeedClientOptions;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: FeedClientOptions) {
    this.opts = opts;
    fs.mkdirSync(opts.metadataDir, { recursive: true });
    const given = parseRoot(opts.trustedRoot, 'the trusted root');
    const stored = path.join(opts.metadataDir, 'root.json');
    let storedVersion = 0;
    if (fs.existsSync(stored)) {
      try {
        storedVersion = parseRoot(fs.readFileSync(stored), stored).version;
      } catch {
        storedVersion = 0; // a corrupt cache is replaced by the shipped root
      }
    }
    if (given.version > storedVersion) writeFileAtomicSync(stored, opts.trustedRoot);
  }

  /** Verified list of the feed's targets. Concurrent calls are serialised. */
  refresh(): Promise<FeedTarget[]> {
    const run = this.queue.then(
      () => this.doRefresh(),
      () => this.doRefresh(),
    );
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async doRefresh(): Promise<FeedTarget[]> {
    const fetcher = new MetadataFetcher({
      timeoutMs: this.opts.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS,
      headers: { 'user-agent': this.opts.userAgent ?? 'gantry' },
      http: this.opts.http,
      proxy: this.opts.proxy,
    });
    // tuf-js is loaded by the first refresh, not at start-up. Its CommonJS exports arrive as named
    // exports under node and tsx, but only as `default` (module.exports) in the server bundle
    // (scripts/build-server.ts), and tsx gives no `default`: take whichever is there.
    const tuf = (await import('tuf-js')) as Partial<typeof tufJs> & { default?: Partial<typeof tufJs> };
    const Updater = tuf.Updater ?? tuf.default?.Updater;
    if (!Updater) throw new Error('tuf-js exports no Updater');
    const updater = new Updater({
      metadataDir: this.opts.metadataDir,
      metadataBaseUrl: this.opts.metadataBaseUrl,
      targetBaseUrl: this.opts.targetBaseUrl,
      targetDir: this.opts.targetDir,
      fetcher,
    });
    try {
      await updater.refresh();
      // The Updater keeps its trusted set private and has no "list all" call. Once refresh()
      // succeeded, the targets.json in the metadata dir is the verified one (loaded from there
      // and checked, or downloaded, checked and persisted); its names are then resolved through
      // the Updater so every entry returned comes from the trusted set.
      const names = Object.keys(this.readPersistedTargets());
      const out: FeedTarget[] = [];
      for (const name of names.sort()) {
        const info = await updater.getTargetInfo(name);
        // Gantry verifies every download against the signed SHA-256: a target without one is unusable.
        if (info?.hashes.sha256) out.push(toFeedTarget(info));
      }
      return out;
    } catch (err) {
      // tuf-js wraps some fetch failures in a RuntimeError holding only their message.
      const fetchError = fetcher.lastError;
      if (fetchError && err !== fetchError && String((err as Error)?.message).includes(fetchError.message)) {
        throw fetchError;
      }
      throw mapFeedError(err);
    }
  }

  private readPersistedTargets(): Record<string, TargetFile> {
    const file = path.join(this.opts.metadataDir, 'targets.json');
    const json = JSON.parse(fs.readFileSync(file, 'utf8')) as JsonObject;
    return Metadata.fromJSON(MetadataKind.Targets, json).signed.targets;
  }

  /** Streams a target from the target base URL; see `fetchTarget` in feed/fetch.ts. */
  fetchTarget(target: { path: string; length: number }, opts: FetchTargetOptions = {}): Promise<Readable> {
    return fetchTarget(this.opts.targetBaseUrl, target, {
      timeoutMs: this.opts.fetchTimeoutMs,
      http: this.opts.http,
      proxy: this.opts.proxy,
      headers: { 'user-agent': this.opts.userAgent ?? 'gantry' },
      ...opts,
    });
  }
}

function toFeedTarget(t: TargetFile): FeedTarget {
  const parsed = TargetCustomSchema.safeParse(t.custom);
  return {
    path: t.path,
    length: t.length,
    hashes: { ...t.hashes },
    sha256: t.hashes.sha256 ?? '',
    custom: parsed.success ? parsed.data : null,
  };
}
