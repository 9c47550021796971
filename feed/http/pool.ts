import net from 'node:net';
import tls from 'node:tls';
import { youngGenerationSweeper } from '../../core/young-gc.js';
import { HttpBody, type BodyConnection, type ReadBuffers } from './body.js';
import type { ProxyServer } from './proxy.js';
import { keepAliveTimeoutMs, MAX_HEAD_BYTES, parseHead, requestHead, type ResponseHead } from './wire.js';

/**
 * Gantry's own HTTP/1.1 connections: opened directly, through a forwarding proxy (http URLs) or a
 * CONNECT tunnel (https URLs), kept alive between requests in a small pool per route, and read with
 * net/tls `onread` into buffers each connection owns and reuses for every response it carries.
 */

/** Where a connection goes: the origin, and the proxy on the way if any. */
export interface Route {
  /** `http:` or `https:`. */
  protocol: string;
  host: string;
  port: number;
  /** SNI and certificate name (the URL's host name). */
  servername: string;
  proxy: ProxyServer | null;
  /** Certificate authorities for https (Node's bundled ones when undefined). */
  ca?: (string | Buffer)[];
}

/** A failure of the proxy itself (unreachable, refused the tunnel, wants credentials). */
export class ProxyError extends Error {
  constructor(
    message: string,
    readonly proxy: string,
    readonly status: number | null = null,
  ) {
    super(message);
    this.name = 'ProxyError';
  }
}

export interface ExchangeOptions {
  headers: Record<string, string>;
  timeoutMs: number;
  readBufferBytes: number;
  signal?: AbortSignal;
}

export interface Exchange {
  head: ResponseHead;
  body: HttpBody;
}

/** Pool settings; the defaults are what Gantry uses. */
export interface PoolOptions {
  /** Connections per route, busy and idle; more requests wait for one. */
  maxPerRoute?: number;
  /** An idle connection is closed after this long (or the server's Keep-Alive timeout, if shorter). */
  idleTimeoutMs?: number;
}

export const DEFAULT_MAX_PER_ROUTE = 4;
export const DEFAULT_IDLE_TIMEOUT_MS = 4000;

function routeKey(route: Route): string {
  const via = route.proxy ? `${route.proxy.display}|${route.proxy.authorization ?? ''}|` : '';
  // A forwarding proxy carries requests for any http origin over one connection.
  if (route.proxy && route.protocol === 'http:') return `fwd|${via}`;
  return `${via}${route.protocol}//${route.host}:${route.port}`;
}

/** Reads a CONNECT answer from the proxy (plain 'data' events: it is one small head). */
function tunnel(socket: net.Socket, route: Route, timeoutMs: number): Promise<void> {
  const proxy = route.proxy!;
  const authority = `${route.host.includes(':') ? `[${route.host}]` : route.host}:${route.port}`;
  let request = `CONNECT ${authority} HTTP/1.1\r\nhost: ${authority}\r\n`;
  if (proxy.authorization) request += `proxy-authorization: ${proxy.authorization}\r\n`;
  request += '\r\n';
  return new Promise<void>((resolve, reject) => {
    let got = Buffer.alloc(0);
    const done = (err?: Error): void => {
      socket.off('data', onData).off('error', onError).off('close', onClose).off('timeout', onTimeout);
      socket.setTimeout(0);
      if (err) {
        socket.destroy();
        reject(err);
      } else resolve();
    };
    const onData = (chunk: Buffer): void => {
      got = Buffer.concat([got, chunk]);
      const end = got.indexOf('\r\n\r\n');
      if (end === -1) {
        if (got.length > MAX_HEAD_BYTES)
          done(new ProxyError(`the proxy ${proxy.display} sent an oversized answer`, proxy.display));
        return;
      }
      socket.pause();
      let head: ResponseHead;
      try {
        head = parseHead(got.toString('latin1', 0, end));
      } catch (err) {
        done(
          new ProxyError(
            `the proxy ${proxy.display} answered CONNECT with ${(err as Error).message}`,
            proxy.display,
          ),
        );
        return;
      }
      if (head.status === 200) {
        if (got.length > end + 4) {
          done(
            new ProxyError(`the proxy ${proxy.display} sent data before the tunnel was up`, proxy.display),
          );
        } else done();
        return;
      }
      done(proxyRefusal(proxy, head.status, authority));
    };
    const onError = (err: Error): void => done(proxyUnreachable(proxy, err));
    const onClose = (): void =>
      done(
        new ProxyError(
          `the proxy ${proxy.display} closed the connection before opening a tunnel to ${authority}`,
          proxy.display,
        ),
      );
    const onTimeout = (): void =>
      done(new ProxyError(`the proxy ${proxy.display} did not answer for ${timeoutMs} ms`, proxy.display));
    socket.on('data', onData).on('error', onError).on('close', onClose).on('timeout', onTimeout);
    socket.setTimeout(timeoutMs);
    socket.write(request);
  });
}

export function proxyRefusal(proxy: ProxyServer, status: number, what: string): ProxyError {
  // tinyproxy answers 401 where RFC 9110 says 407: both mean the credentials.
  if (status === 407 || status === 401) {
    return new ProxyError(
      proxy.authorization
        ? `the proxy ${proxy.display} refused the credentials it was given (HTTP ${status})`
        : `the proxy ${proxy.display} requires credentials (HTTP ${status}): give them in the proxy URL`,
      proxy.display,
      status,
    );
  }
  return new ProxyError(
    `the proxy ${proxy.display} refused to connect to ${what} (HTTP ${status})`,
    proxy.display,
    status,
  );
}

function proxyUnreachable(proxy: ProxyServer, err: Error): ProxyError {
  const code = (err as NodeJS.ErrnoException).code;
  return new ProxyError(`cannot reach the proxy ${proxy.display}: ${code ?? err.message}`, proxy.display);
}

/** One HTTP/1.1 connection: the socket, its reused read buffers, and the exchange it is carrying. */
export class Connection implements BodyConnection {
  readonly buffers: ReadBuffers;
  private socket!: net.Socket;
  private current: HttpBody | null = null;
  /** Small buffer for reads while idle (there should be none: anything is a protocol error). */
  private idleBuffer: Buffer | null = null;
  private closed = false;
  /** The current exchange: its read timeout, whether its head arrived, how to fail it before. */
  private timeoutMs = 0;
  private headSeen = false;
  private rejectHead: ((err: Error) => void) | null = null;
  /** Exchanges this connection completed: a reused connection that fails before answering is retried. */
  exchanges = 0;
  /** Set by the pool: the connection left for good. */
  onClosed: () => void = () => undefined;
  onIdle: (conn: Connection, keepAliveMs: number | null) => void = () => undefined;

  constructor(
    readonly key: string,
    readonly route: Route,
    readBufferBytes: number,
    /** The last TLS session per origin, shared by the pool's connections (see ConnectionPool). */
    private readonly tlsSessions: TlsSessions = new TlsSessions(),
  ) {
    this.buffers = { primary: Buffer.allocUnsafeSlow(readBufferBytes), spare: null };
  }

  /** Opens the socket (and the tunnel, and TLS). Rejects with a ProxyError for proxy failures. */
  async open(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const { route } = this;
    const onread: net.OnReadOpts = {
      buffer: () => this.current?.readBuffer() ?? (this.idleBuffer ??= Buffer.allocUnsafe(1024)),
      callback: (n, buf) => this.onRead(n, buf),
    };
    const secure = route.protocol === 'https:';
    const first = route.proxy ?? { host: route.host, port: route.port };
    const origin = `${route.servername}:${route.port}`;
    const connectTls = (socket?: net.Socket): tls.TLSSocket => {
      // tls.connect takes `onread` like net.connect (checked in test/feed/http-client.test.ts); @types/node
      // does not list it there.
      const options: tls.ConnectionOptions & { onread: net.OnReadOpts } = {
        ...(socket ? { socket } : { host: route.host, port: route.port }),
        servername: net.isIP(route.servername) ? undefined : route.servername,
        ca: route.ca,
        session: this.tlsSessions.get(origin),
        onread,
      };
      const secured = tls.connect(options);
      secured.on('session', (session: Buffer) => this.tlsSessions.set(origin, session));
      return secured;
    };
    const raw =
      secure && !route.proxy
        ? connectTls()
        : net.connect(
            // A tunnel's first socket reads the CONNECT answer the ordinary way, then hands over to TLS.
            secure ? { host: first.host, port: first.port } : { host: first.host, port: first.port, onread },
          );
    const abort = (): void => {
      raw.destroy(signal!.reason as Error);
    };
    signal?.addEventListener('abort', abort, { once: true });
    try {
      await new Promise<void>((resolve, reject) => {
        const event = secure && !route.proxy ? 'secureConnect' : 'connect';
        const fail = (err: Error): void => {
          raw.off(event, ok);
          reject(
            route.proxy && !(err instanceof ProxyError) && !signal?.aborted
              ? proxyUnreachable(route.proxy, err)
              : err,
          );
        };
        const onTimeout = (): void => {
          raw.destroy(new Error(`no answer from ${first.host}:${first.port} for ${timeoutMs} ms`));
        };
        const ok = (): void => {
          raw.off('error', fail).off('timeout', onTimeout);
          raw.setTimeout(0);
          resolve();
        };
        raw.once(event, ok).once('error', fail).on('timeout', onTimeout);
        raw.setTimeout(timeoutMs);
      });
      if (secure && route.proxy) {
        await tunnel(raw, route, timeoutMs);
        const secured = connectTls(raw);
        await new Promise<void>((resolve, reject) => {
          const onTimeout = (): void => {
            secured.destroy(
              new Error(`no TLS answer from ${route.host}:${route.port} through ${route.proxy!.display}`),
            );
          };
          secured.once('secureConnect', () => {
            secured.off('error', reject).off('timeout', onTimeout);
            secured.setTimeout(0);
            resolve();
          });
          secured.once('error', reject).on('timeout', onTimeout);
          secured.setTimeout(timeoutMs);
        });
        this.socket = secured;
        // Node ignores `onread` for TLS over an existing socket: this one hands over a new buffer
        // per read, which the body takes as it is, and young-generation collections keep those
        // from piling up (see core/young-gc.ts).
        const sweep = youngGenerationSweeper();
        secured.on('data', (chunk: Buffer) => {
          sweep(chunk.length);
          if (!this.current) {
            this.destroy(); // nothing is asked of an idle connection
            return;
          }
          if (!this.current.onChunk(chunk)) secured.pause();
        });
      } else this.socket = raw;
    } catch (err) {
      raw.destroy();
      throw signal?.aborted ? signal.reason : err;
    } finally {
      signal?.removeEventListener('abort', abort);
    }
    this.socket.setNoDelay(true);
    this.socket.on('error', (err) => this.fail(err));
    this.socket.on('end', () => this.current?.onEof());
    this.socket.on('close', () => {
      this.closed = true;
      const body = this.current;
      if (body && !this.headSeen) {
        this.failHead(
          new Error(
            body.anyByte
              ? `${this.describe()} closed the connection in the middle of the response head`
              : `${this.describe()} closed the connection before answering`,
          ),
        );
      } else body?.onEof();
      this.onClosed();
    });
    this.socket.on('timeout', () => {
      if (this.current) this.fail(new Error(`no data from ${this.describe()} for ${this.timeoutMs} ms`));
      else this.destroy(); // idle too long
    });
  }

  private describe(): string {
    return `${this.route.host}:${this.route.port}`;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Sends a GET and resolves with the head once it arrived; the body waits, paused, for its consumer. */
  request(target: string, opts: ExchangeOptions): Promise<Exchange> {
    if (opts.readBufferBytes > this.buffers.primary.length) {
      this.buffers.primary = Buffer.allocUnsafeSlow(opts.readBufferBytes);
      this.buffers.spare = null;
    }
    return new Promise<Exchange>((resolve, reject) => {
      this.headSeen = false;
      this.rejectHead = reject;
      this.timeoutMs = opts.timeoutMs;
      const body: HttpBody = new HttpBody(
        this,
        (head) => {
          this.headSeen = true;
          this.rejectHead = null;
          resolve({ head, body });
        },
        (err) => this.failHead(err),
      );
      this.current = body;
      const onAbort = (): void => {
        const reason = opts.signal!.reason as Error;
        if (!this.headSeen) this.failHead(reason);
        else body.destroy(reason);
      };
      if (opts.signal?.aborted) return onAbort();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      // Every way out (the end of the body, a failure before or after the head) closes the body.
      body.once('close', () => opts.signal?.removeEventListener('abort', onAbort));
      this.socket.ref();
      this.socket.setTimeout(opts.timeoutMs);
      let head: string;
      try {
        head = requestHead(target, opts.headers);
      } catch (err) {
        this.failHead(err as Error);
        return;
      }
      this.socket.write(head);
      this.socket.resume();
    });
  }

  private onRead(n: number, buf: Uint8Array): boolean {
    if (this.current) return this.current.onRead(n, buf);
    // Nothing is asked of an idle connection: bytes now mean the server lost track of it.
    this.destroy();
    return false;
  }

  /** Before the head: the request fails; after it: the body does. */
  private fail(err: Error): void {
    if (!this.headSeen) this.failHead(err);
    else if (this.current) this.current.destroy(err);
    else this.destroy();
  }

  private failHead(err: Error): void {
    const reject = this.rejectHead;
    this.rejectHead = null;
    const body = this.current;
    this.current = null;
    this.destroy();
    body?.destroy();
    reject?.(err);
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  release(reusable: boolean, head: ResponseHead | null): void {
    this.current = null;
    this.rejectHead = null;
    if (!reusable || this.closed) {
      this.destroy();
      return;
    }
    this.exchanges++;
    this.socket.setTimeout(0);
    this.socket.unref();
    // Reading while idle is how a close by the server is noticed. Not now: this runs inside the
    // read callback, whose `false` (the body is done) stops reading again once it returns.
    process.nextTick(() => {
      if (this.current === null && !this.closed) this.socket.resume();
    });
    this.onIdle(this, head ? keepAliveTimeoutMs(head.headers) : null);
  }

  /** Arms the idle timeout (the socket's own inactivity timer). */
  idleFor(ms: number): void {
    this.socket.setTimeout(ms);
  }

  destroy(): void {
    if (this.socket && !this.socket.destroyed) this.socket.destroy();
    if (!this.socket) this.closed = true;
  }
}

/**
 * The last TLS session ticket of each origin: a new connection resumes it instead of a full
 * handshake (no certificate chain sent again), which is most of what a poll costs once the
 * keep-alive connection has timed out (README "Serving a fleet"). A few origins at most.
 */
export class TlsSessions {
  private readonly sessions = new Map<string, Buffer>();
  get(origin: string): Buffer | undefined {
    return this.sessions.get(origin);
  }
  set(origin: string, session: Buffer): void {
    this.sessions.delete(origin);
    this.sessions.set(origin, session);
    if (this.sessions.size > 16) this.sessions.delete(this.sessions.keys().next().value!);
  }
}

/**
 * Idle connections per route, at most `maxPerRoute` per route in all (busy and idle): a request
 * beyond it waits for one to come back. Idle connections do not keep the process alive.
 */
export class ConnectionPool {
  private readonly idle = new Map<string, Connection[]>();
  private readonly count = new Map<string, number>();
  private readonly waiting = new Map<string, (() => void)[]>();
  private readonly maxPerRoute: number;
  private readonly idleTimeoutMs: number;
  private readonly tlsSessions = new TlsSessions();
  /** Connections opened, ever (tests and the benchmark read it). */
  opened = 0;
  /** Requests retried because a kept-alive connection turned out closed. */
  staleRetries = 0;

  constructor(opts: PoolOptions = {}) {
    this.maxPerRoute = opts.maxPerRoute ?? DEFAULT_MAX_PER_ROUTE;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  }

  /**
   * Sends `GET target` on a connection of `route`: an idle one if there is one, else a new one. A
   * reused connection that fails before any byte of the answer (the server closed it meanwhile)
   * is retried once on a new connection: a GET may be repeated.
   */
  async request(route: Route, target: string, opts: ExchangeOptions): Promise<Exchange> {
    const key = routeKey(route);
    for (let attempt = 0; ; attempt++) {
      const conn = await this.acquire(key, route, opts, attempt > 0);
      const reused = conn.exchanges > 0;
      try {
        return await conn.request(target, opts);
      } catch (err) {
        if (reused && attempt === 0 && !opts.signal?.aborted && isStale(err)) {
          this.staleRetries++;
          continue;
        }
        throw err;
      }
    }
  }

  private async acquire(
    key: string,
    route: Route,
    opts: ExchangeOptions,
    fresh: boolean,
  ): Promise<Connection> {
    for (;;) {
      opts.signal?.throwIfAborted();
      const idle = this.idle.get(key);
      // A retry after a stale connection does not take another one that may be just as stale.
      if (fresh) for (const conn of idle?.splice(0) ?? []) conn.destroy();
      while (idle && idle.length > 0) {
        const conn = idle.pop()!;
        if (!conn.isClosed) return conn;
      }
      if ((this.count.get(key) ?? 0) < this.maxPerRoute) break;
      await new Promise<void>((resolve, reject) => {
        const queue = this.waiting.get(key) ?? [];
        const onAbort = (): void => {
          queue.splice(queue.indexOf(wake), 1);
          reject(opts.signal!.reason);
        };
        const wake = (): void => {
          opts.signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        queue.push(wake);
        this.waiting.set(key, queue);
        opts.signal?.addEventListener('abort', onAbort, { once: true });
      });
    }
    const conn = new Connection(key, route, opts.readBufferBytes, this.tlsSessions);
    this.count.set(key, (this.count.get(key) ?? 0) + 1);
    let gone = false;
    const leave = (): void => {
      if (gone) return;
      gone = true;
      this.count.set(key, (this.count.get(key) ?? 1) - 1);
      const idle = this.idle.get(key);
      if (idle?.includes(conn)) idle.splice(idle.indexOf(conn), 1);
      this.wake(key);
    };
    conn.onClosed = leave;
    conn.onIdle = (c, serverMs) => {
      const list = this.idle.get(key) ?? [];
      list.push(c);
      this.idle.set(key, list);
      // Close a little before the server would, so a request never races its close.
      c.idleFor(
        serverMs !== null
          ? Math.max(0, Math.min(this.idleTimeoutMs, serverMs - 1000)) || 1
          : this.idleTimeoutMs,
      );
      this.wake(key);
    };
    try {
      await conn.open(opts.timeoutMs, opts.signal);
    } catch (err) {
      leave();
      throw err;
    }
    this.opened++;
    return conn;
  }

  private wake(key: string): void {
    this.waiting.get(key)?.shift()?.();
  }

  /** Connections waiting in the pool for a request. */
  get idleCount(): number {
    let n = 0;
    for (const list of this.idle.values()) n += list.length;
    return n;
  }

  /** Closes every idle connection. */
  close(): void {
    for (const list of this.idle.values()) for (const conn of list.splice(0)) conn.destroy();
  }
}

/** A failure that means "the server had closed this connection before our request reached it". */
function isStale(err: unknown): boolean {
  if (err instanceof ProxyError) return false;
  const code = (err as NodeJS.ErrnoException).code;
  return (
    code === 'ECONNRESET' ||
    code === 'EPIPE' ||
    /closed the connection before answering/.test((err as Error).message ?? '')
  );
}
