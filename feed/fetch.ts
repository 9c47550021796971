import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { Fetcher } from 'tuf-js';
// tuf-js stops probing for a newer root on this class (instanceof, 403/404) and does not export it
// from its entry point; the package has no "exports" map, so the deep import is its public file.
import { DownloadHTTPError } from 'tuf-js/dist/error.js';
import { consumeChunks } from '../core/lending.js';
import { GantryError, isGantryError } from '../core/errors.js';
import { FeedHttpClient, ProxyError, type HttpResponse } from './http/client.js';
import { displayUrl, type ProxySettings } from './http/proxy.js';

/** How the feed is reached: the HTTP client (its pool and settings) and this feed's proxy override. */
export interface FeedTransport {
  http?: FeedHttpClient;
  /** The configuration ZIP's proxy fields, over the client's (environment) ones. */
  proxy?: ProxySettings;
}

/**
 * The validator (strong ETag, else Last-Modified) of a target's first response, kept for the rest
 * of one download: every later request for it is ranged and carries it as `If-Range`, so a file
 * replaced behind the same URL is answered whole (200) and the download starts over instead of
 * stitching the new file's tail onto the old one's head.
 */
export interface TargetValidator {
  value: string | null;
}

export interface FetchTargetOptions extends FeedTransport {
  /** Resume point: bytes of the target already held; fetched with an HTTP Range request. */
  offset?: number;
  /** Stop before this byte (exclusive; the target's end by default): a single-range GET of a part. */
  end?: number;
  signal?: AbortSignal;
  /** Socket idle timeout (no byte for this long fails the download). */
  timeoutMs?: number;
  headers?: Record<string, string>;
  validator?: TargetValidator;
}

/**
 * `details.restart` of the OTA_DOWNLOAD_FAILED thrown when the server answered a ranged request
 * whole: the target changed (or the server ignores ranges), so a resume would stitch two files.
 * The transfer starts over from byte 0 (services/updates/transfer.ts).
 */
export const RESTART_DOWNLOAD = 'restart';

export const DEFAULT_FETCH_TIMEOUT_MS = 30_000;

function downloadFailed(message: string, details?: Record<string, unknown>, cause?: unknown): GantryError {
  return new GantryError('OTA_DOWNLOAD_FAILED', message, details, cause);
}

/** `base` + target path, each path segment percent-encoded. */
export function targetUrl(baseUrl: string, targetPath: string): URL {
  const base = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
  const encoded = targetPath
    .split('/')
    .filter((s) => s !== '')
    .map(encodeURIComponent)
    .join('/');
  return new URL(encoded, base);
}

/** Parses `bytes START-END/TOTAL` (TOTAL may be `*`). */
function parseContentRange(
  value: string | undefined,
): { start: number; end: number; total: number | null } | null {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value?.trim() ?? '');
  if (!m) return null;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === '*' ? null : Number(m[3]) };
}

/** One feed client for callers that bring none (tests, the CLI): pooled for the process. */
let fallbackClient: FeedHttpClient | null = null;
function clientOf(transport: FeedTransport): FeedHttpClient {
  if (transport.http) return transport.http;
  fallbackClient ??= new FeedHttpClient();
  return fallbackClient;
}

/** Says what failed, naming the proxy when it was the proxy, never showing a credential. */
function describeFailure(url: URL, err: Error): string {
  // A ProxyError's and a RedirectError's messages show URLs without credentials already.
  if (err instanceof ProxyError) {
    return `cannot fetch ${displayUrl(url)} through the proxy ${err.proxy}: ${err.message}`;
  }
  return `cannot fetch ${displayUrl(url)}: ${err.message}`;
}

/** The client's `get` with its failures as OTA_DOWNLOAD_FAILED (or the signal's reason). */
async function get(
  url: URL,
  opts: FetchTargetOptions,
  headers: Record<string, string>,
  readBufferBytes?: number,
): Promise<HttpResponse> {
  try {
    return await clientOf(opts).get(url, {
      headers,
      signal: opts.signal,
      timeoutMs: opts.timeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS,
      readBufferBytes,
      proxy: opts.proxy,
    });
  } catch (err) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    if (isGantryError(err)) throw err;
    const details = err instanceof ProxyError ? { proxy: err.proxy, proxy_status: err.status } : undefined;
    throw downloadFailed(describeFailure(url, err as Error), details, err);
  }
}

/** A strong validator of a response, for If-Range (RFC 9110 §13.1.5: weak ETags may not be used). */
function validatorOf(headers: Record<string, string>): string | null {
  const etag = headers.etag;
  if (etag && !etag.startsWith('W/')) return etag;
  return headers['last-modified'] ?? null;
}

/**
 * Streams a target's bytes from `offset` to its declared end. Only the bytes the signed metadata
 * declares are ever passed on: a server sending more (an endless-data attack) or fewer fails the
 * stream with OTA_DOWNLOAD_FAILED. A resume (`offset` > 0) asks for a Range and insists on a 206
 * whose Content-Range starts exactly there. With a `validator`, the first response's ETag (or
 * Last-Modified) is kept in it and every later request is ranged and sent with `If-Range`; a whole
 * answer (200) to a ranged request fails with `details.restart` (RESTART_DOWNLOAD) and forgets the
 * validator, so the caller starts over. The bytes are not hashed here: the caller's pipeline
 * hashes them as they flow (see `verifyTargetHash`).
 */
export async function fetchTarget(
  targetBaseUrl: string,
  target: { path: string; length: number },
  opts: FetchTargetOptions = {},
): Promise<Readable> {
  const offset = opts.offset ?? 0;
  const end = opts.end ?? target.length;
  if (!Number.isSafeInteger(offset) || offset < 0 || offset > target.length) {
    throw new GantryError(
      'VALIDATION_ERROR',
      `resume offset ${offset} is outside ${target.path} (${target.length} bytes)`,
    );
  }
  if (!Number.isSafeInteger(end) || end < offset || end > target.length) {
    throw new GantryError(
      'VALIDATION_ERROR',
      `range end ${end} is outside ${target.path} (${target.length} bytes) or before ${offset}`,
    );
  }
  const expected = end - offset;
  if (expected === 0) return Readable.from([]);
  if (opts.signal?.aborted) throw opts.signal.reason;

  const url = targetUrl(targetBaseUrl, target.path);
  const shown = displayUrl(url);
  const headers: Record<string, string> = { ...opts.headers, 'accept-encoding': 'identity' };
  const ifRange = opts.validator?.value ?? null;
  const ranged = offset > 0 || ifRange !== null || end < target.length;
  if (ranged) headers.range = `bytes=${offset}-${end - 1}`;
  if (ifRange !== null) headers['if-range'] = ifRange;
  const res = await get(url, opts, headers);

  const fail = (message: string, details?: Record<string, unknown>): never => {
    res.body.destroy();
    throw downloadFailed(message, { url: shown, status: res.status, ...details });
  };
  if (ranged) {
    if (res.status === 200) {
      if (opts.validator) opts.validator.value = null;
      fail(
        ifRange !== null
          ? `${target.path} changed on the server since this download began (If-Range ${ifRange} no longer matches); starting over`
          : `the server at ${url.host} ignored the Range request; starting over`,
        { [RESTART_DOWNLOAD]: true },
      );
    }
    if (res.status !== 206) fail(`HTTP ${res.status} fetching ${target.path} from byte ${offset}`);
    const range = parseContentRange(res.headers['content-range']);
    if (!range || range.start !== offset || range.end !== end - 1) {
      fail(
        `the server answered the resume of ${target.path} with range ${res.headers['content-range'] ?? '(none)'}`,
        { content_range: res.headers['content-range'] },
      );
    }
    if (range?.total !== null && range?.total !== target.length) {
      fail(`the server holds ${range?.total} bytes of ${target.path}; the feed declares ${target.length}`);
    }
    // The same kind of validator as was sent: an ETag is quoted, a date is not.
    const now = ifRange?.startsWith('"') ? res.headers.etag : res.headers['last-modified'];
    if (ifRange !== null && now !== undefined && now !== ifRange) {
      // A server (or a cache on the way) that answered the range without honouring If-Range.
      if (opts.validator) opts.validator.value = null;
      fail(`${target.path} changed on the server since this download began; starting over`, {
        [RESTART_DOWNLOAD]: true,
      });
    }
  } else if (res.status !== 200) {
    fail(`HTTP ${res.status} fetching ${target.path}`);
  }
  const declared = res.headers['content-length'];
  if (declared !== undefined && Number(declared) !== expected) {
    fail(`the server announces ${declared} bytes of ${target.path}; ${expected} expected`, {
      content_length: declared,
    });
  }
  if (opts.validator && opts.validator.value === null) opts.validator.value = validatorOf(res.headers);

  // Only the bytes the signed metadata declares are ever passed on.
  res.body.setLimit({
    bytes: expected,
    exact: true,
    error: (kind, received) =>
      kind === 'overflow'
        ? downloadFailed(
            `the server sent more than the ${target.length} bytes the feed declares for ${target.path}`,
            { url: shown },
          )
        : downloadFailed(`download of ${target.path} ended after ${received} of ${expected} bytes`, {
            url: shown,
            received,
            offset,
          }),
  });
  res.body.mapError = (err) => {
    if (opts.signal?.aborted) return opts.signal.reason as Error;
    if (isGantryError(err)) return err;
    return downloadFailed(`download of ${target.path} failed: ${err.message}`, { url: shown }, err);
  };
  return res.body;
}

/** Checks a target's bytes (hashed by the caller as they streamed) against the signed feed. */
export function verifyTargetHash(
  sha256: string,
  target: { path: string; hashes: Record<string, string> },
): void {
  const expected = target.hashes.sha256;
  if (!expected) {
    throw new GantryError('OTA_SIGNATURE_FAILED', `the feed gives no SHA-256 for ${target.path}`);
  }
  if (sha256.toLowerCase() !== expected.toLowerCase()) {
    throw new GantryError('OTA_INVALID_IMAGE', `${target.path} does not match the SHA-256 the feed signed`, {
      expected,
      actual: sha256,
    });
  }
}

/**
 * tuf-js's metadata fetcher over the feed's HTTP client. Its default one calls the global fetch(),
 * whose first use loads undici: ~11 MiB of resident memory for the rest of the process's life, for a
 * few small JSON files (measured in `npm run bench -- pipeline`). Metadata is bounded by tuf-js's
 * maxLength per role, so it is collected in memory; a server sending more is cut off at once.
 * `lastError` keeps the last failure: tuf-js re-wraps some of them in a RuntimeError that keeps
 * only the message, and FeedClient reports the original.
 */
export class MetadataFetcher implements Fetcher {
  lastError: GantryError | null = null;

  constructor(
    private readonly opts: FeedTransport & { timeoutMs?: number; headers?: Record<string, string> } = {},
  ) {}

  async downloadBytes(url: string, maxLength: number): Promise<Buffer> {
    try {
      return await this.download(url, maxLength);
    } catch (err) {
      if (isGantryError(err)) this.lastError = err;
      throw err;
    }
  }

  private async download(url: string, maxLength: number): Promise<Buffer> {
    const target = new URL(url);
    const shown = displayUrl(target);
    const res = await get(
      target,
      { timeoutMs: this.opts.timeoutMs, http: this.opts.http, proxy: this.opts.proxy },
      { ...this.opts.headers, 'accept-encoding': 'identity' },
      64 * 1024,
    );
    if (res.status !== 200) {
      res.body.dump(); // a 404 (the probe for the next root) keeps its connection for the next request
      throw new DownloadHTTPError('Failed to download', res.status);
    }
    res.body.setLimit({
      bytes: maxLength,
      exact: false,
      error: () =>
        downloadFailed(
          `the update feed sent more than the ${maxLength} bytes allowed for ${target.pathname}`,
          {
            url: shown,
          },
        ),
    });
    const chunks: Buffer[] = [];
    try {
      await consumeChunks(res.body, (chunk) => {
        chunks.push(Buffer.from(chunk)); // lent: copied
        return undefined;
      });
    } catch (err) {
      if (isGantryError(err)) throw err;
      throw downloadFailed(`download of ${shown} failed: ${(err as Error).message}`, undefined, err);
    }
    return Buffer.concat(chunks);
  }

  /** Gantry streams targets itself (fetchTarget); tuf-js only asks for this through downloadTarget. */
  async downloadFile<T>(url: string, maxLength: number, handler: (file: string) => Promise<T>): Promise<T> {
    const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'gantry-tuf-'));
    try {
      const file = path.join(dir, 'download');
      await fs.promises.writeFile(file, await this.downloadBytes(url, maxLength));
      return await handler(file);
    } finally {
      await fs.promises.rm(dir, { recursive: true, force: true });
    }
  }
}
