import tls from 'node:tls';
import type { ResponseBody } from './body.js';
import { NodeTransport } from './node-client.js';
import { ConnectionPool, proxyRefusal, ProxyError, type PoolOptions, type Route } from './pool.js';
import { displayUrl, mergeProxySettings, proxyFor, type ProxyServer, type ProxySettings } from './proxy.js';

/**
 * The feed's HTTP client: GET with redirects, proxies, keep-alive and credentials, over Gantry's own
 * connections (pool.ts, body.ts: one reused read buffer per connection, lent to the consumer) or,
 * behind the `GANTRY_FEED_HTTP_CLIENT=node` setting, over node:http (node-client.ts).
 *
 * Redirects (301, 302, 303, 307, 308) are followed up to `maxRedirects`, keeping the request's
 * headers (`Range`, `If-Range`), with three refusals: https → http (a downgrade), a URL already
 * visited (a loop), and more than the bound. Credentials of the original URL (`user:password@`, sent
 * as Basic) go to its origin only: a redirect to another origin is followed without them. What is
 * fetched is checked by the caller against the signed TUF length and hash, so a redirect can move
 * bytes, never change them.
 */

export type FeedHttpImplementation = 'gantry' | 'node';
export const FEED_HTTP_IMPLEMENTATIONS = ['gantry', 'node'] as const;

export interface FeedHttpClientOptions extends PoolOptions {
  implementation?: FeedHttpImplementation;
  /** Proxies for every request (the environment); a request may override them (the ZIP). */
  proxy?: ProxySettings;
  /** Extra certificate authorities trusted for https, besides Node's bundled ones. */
  extraCa?: (string | Buffer)[];
  maxRedirects?: number;
}

export interface GetOptions {
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** No byte for this long (connecting included) fails the request. */
  timeoutMs: number;
  /** Size of the read buffer, i.e. the most one read hands over (Gantry's client only). */
  readBufferBytes?: number;
  /** Overrides the client's proxy settings field by field (see mergeProxySettings). */
  proxy?: ProxySettings;
}

export interface HttpResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  /** Where the answer came from (after redirects). */
  url: URL;
  /** The URLs that redirected, in order. */
  redirects: URL[];
  body: ResponseBody;
}

/** A redirect Gantry refuses to follow (downgrade, loop, too many, unusable Location). */
export class RedirectError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedirectError';
  }
}

export const DEFAULT_MAX_REDIRECTS = 5;
const DEFAULT_READ_BUFFER_BYTES = 1024 * 1024;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** Headers that carry the original URL's credentials, dropped on a redirect to another origin. */
const CREDENTIAL_HEADERS = ['authorization', 'cookie'];

export class FeedHttpClient {
  readonly implementation: FeedHttpImplementation;
  private readonly pool: ConnectionPool;
  private readonly node: NodeTransport | null;
  private readonly proxy: ProxySettings;
  private readonly ca: (string | Buffer)[] | undefined;
  private readonly maxRedirects: number;

  constructor(opts: FeedHttpClientOptions = {}) {
    this.implementation = opts.implementation ?? 'gantry';
    this.pool = new ConnectionPool(opts);
    this.proxy = opts.proxy ?? {};
    this.ca = opts.extraCa?.length ? [...tls.rootCertificates, ...opts.extraCa] : undefined;
    this.node = this.implementation === 'node' ? new NodeTransport(opts) : null;
    this.maxRedirects = opts.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
  }

  /** Connections Gantry's own client opened so far (a measure of keep-alive). */
  get connectionsOpened(): number {
    return this.pool.opened;
  }

  /** Kept-alive connections of Gantry's own client waiting for a request. */
  get idleConnections(): number {
    return this.pool.idleCount;
  }

  /** Requests Gantry's own client sent again because a kept-alive connection had been closed. */
  get staleRetries(): number {
    return this.pool.staleRetries;
  }

  /**
   * Sends `GET url`, following redirects, and resolves with the final response head; its body waits,
   * paused, for its consumer. Rejects on a connection failure, a malformed head, the timeout, the
   * signal, a ProxyError or a RedirectError. Messages show URLs without credentials.
   */
  async get(url: URL, opts: GetOptions): Promise<HttpResponse> {
    if (opts.signal?.aborted) throw opts.signal.reason;
    const proxySettings = mergeProxySettings(this.proxy, opts.proxy);
    const origin = url.origin;
    const headers = Object.fromEntries(
      Object.entries(opts.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]),
    );
    if (url.username || url.password) {
      const user = decodeURIComponent(url.username);
      const password = decodeURIComponent(url.password);
      headers.authorization ??= `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    }
    const visited = new Set<string>();
    const redirects: URL[] = [];
    let current = url;
    for (;;) {
      if (current.protocol !== 'http:' && current.protocol !== 'https:') {
        throw new Error(`unsupported URL scheme ${current.protocol}`);
      }
      visited.add(displayUrl(current));
      const sameOrigin = current.origin === origin;
      const sent = sameOrigin
        ? headers
        : Object.fromEntries(Object.entries(headers).filter(([k]) => !CREDENTIAL_HEADERS.includes(k)));
      const res = await this.exchange(current, proxyFor(current, proxySettings), sent, opts);
      const location = res.headers.location;
      if (!REDIRECTS.has(res.status) || location === undefined) {
        return { ...res, url: current, redirects };
      }
      res.body.dump();
      let next: URL;
      try {
        next = new URL(location, current);
      } catch {
        throw new RedirectError(
          `${displayUrl(current)} redirected to an invalid location ${JSON.stringify(location.slice(0, 200))}`,
        );
      }
      // Credentials are never taken from a Location either.
      next.username = '';
      next.password = '';
      next.hash = '';
      if (current.protocol === 'https:' && next.protocol !== 'https:') {
        throw new RedirectError(
          `refused the redirect from ${displayUrl(current)} to ${displayUrl(next)}: a downgrade from https`,
        );
      }
      if (next.protocol !== 'http:' && next.protocol !== 'https:') {
        throw new RedirectError(`${displayUrl(current)} redirected to an unsupported ${next.protocol} URL`);
      }
      if (visited.has(displayUrl(next))) {
        throw new RedirectError(`redirect loop: ${displayUrl(current)} leads back to ${displayUrl(next)}`);
      }
      redirects.push(current);
      if (redirects.length > this.maxRedirects) {
        throw new RedirectError(`more than ${this.maxRedirects} redirects from ${displayUrl(url)}`);
      }
      current = next;
    }
  }

  private async exchange(
    url: URL,
    proxy: ProxyServer | null,
    given: Record<string, string>,
    opts: GetOptions,
  ): Promise<Omit<HttpResponse, 'url' | 'redirects'>> {
    const secure = url.protocol === 'https:';
    const forwarded = proxy !== null && !secure;
    const headers: Record<string, string> = {
      host: url.host,
      'user-agent': 'gantry',
      ...given,
      ...(forwarded && proxy.authorization ? { 'proxy-authorization': proxy.authorization } : {}),
    };
    let res: Omit<HttpResponse, 'url' | 'redirects'>;
    if (this.node) {
      res = await this.node.exchange(url, proxy, {
        headers,
        timeoutMs: opts.timeoutMs,
        signal: opts.signal,
        ca: this.ca,
      });
    } else {
      const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
      const route: Route = {
        protocol: url.protocol,
        host,
        port: Number(url.port) || (secure ? 443 : 80),
        servername: host,
        proxy,
        ca: this.ca,
      };
      const target = forwarded
        ? `${url.protocol}//${url.host}${url.pathname}${url.search}`
        : `${url.pathname}${url.search}`;
      const { head, body } = await this.pool.request(route, target, {
        headers,
        timeoutMs: opts.timeoutMs,
        readBufferBytes: opts.readBufferBytes ?? DEFAULT_READ_BUFFER_BYTES,
        signal: opts.signal,
      });
      res = { status: head.status, headers: head.headers, body };
    }
    // A forwarding proxy's own refusals: 407, or a 401/403 without the Via header every proxy adds
    // to what it forwards (RFC 9110 §7.6.3), i.e. not the origin's. The tunnel's come from pool.ts.
    if (
      forwarded &&
      (res.status === 407 || ((res.status === 401 || res.status === 403) && !res.headers.via))
    ) {
      res.body.dump();
      throw proxyRefusal(proxy, res.status, url.host);
    }
    return res;
  }

  /** Closes idle connections. */
  close(): void {
    this.pool.close();
    this.node?.close();
  }
}

export { ProxyError };
