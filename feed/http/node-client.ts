import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { Readable } from 'node:stream';
import tls from 'node:tls';
import type { BodyLimit, ResponseBody } from './body.js';
import {
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_PER_ROUTE,
  proxyRefusal,
  ProxyError,
  type PoolOptions,
} from './pool.js';
import type { ProxyServer } from './proxy.js';

/**
 * The fallback transport (`GANTRY_FEED_HTTP_CLIENT=node`): the same requests over `node:http`,
 * for a site where Gantry's own client meets a server or proxy it cannot talk to. Same proxies,
 * redirects (client.ts) and limits; what it costs is memory: node:http allocates a buffer per
 * socket read, so a download keeps 20-40 MiB more resident (README "Feed configuration").
 * Keep-alive through node's Agent for direct and forwarded requests; a CONNECT tunnel is opened per
 * request.
 */

const DUMP_BYTES = 64 * 1024;

/** An IncomingMessage with the limit, error mapping and `dump` of ResponseBody. */
class NodeBody extends Readable implements ResponseBody {
  private received = 0;
  private limit: BodyLimit | null = null;
  private ended = false;
  mapError: ((err: Error) => Error) | null = null;

  constructor(
    private readonly res: http.IncomingMessage,
    private readonly req: http.ClientRequest,
  ) {
    super({ highWaterMark: 256 * 1024 });
    res.pause();
    res.on('data', (chunk: Buffer) => {
      this.received += chunk.length;
      if (this.limit && this.received > this.limit.bytes) {
        this.destroy(this.limit.error('overflow', this.received));
        return;
      }
      if (!this.push(chunk)) res.pause();
    });
    res.on('end', () => {
      this.ended = true;
      if (this.limit?.exact && this.received !== this.limit.bytes) {
        this.destroy(this.limit.error('short', this.received));
        return;
      }
      this.push(null);
    });
    res.on('error', (err) => this.destroy(err));
    res.on('close', () => {
      if (!this.ended && !this.destroyed) {
        this.destroy(
          this.limit?.error('short', this.received) ??
            new Error(`connection closed after ${this.received} bytes of the body`),
        );
      }
    });
  }

  get bytesReceived(): number {
    return this.received;
  }

  setLimit(limit: BodyLimit): void {
    this.limit = limit;
  }

  dump(maxBytes = DUMP_BYTES): void {
    const length = Number(this.res.headers['content-length'] ?? NaN);
    if (!(length <= maxBytes)) {
      this.destroy();
      return;
    }
    this.on('error', () => undefined);
    this.resume();
  }

  override _read(): void {
    this.res.resume();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.ended) this.req.destroy();
    callback(err && this.mapError ? this.mapError(err) : err);
  }
}

export interface NodeExchangeOptions {
  headers: Record<string, string>;
  timeoutMs: number;
  signal?: AbortSignal;
  ca?: (string | Buffer)[];
}

export class NodeTransport {
  private readonly agents: { http: http.Agent; https: https.Agent };

  constructor(opts: PoolOptions = {}) {
    const common = {
      keepAlive: true,
      maxSockets: opts.maxPerRoute ?? DEFAULT_MAX_PER_ROUTE,
      maxFreeSockets: opts.maxPerRoute ?? DEFAULT_MAX_PER_ROUTE,
      timeout: opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    };
    this.agents = { http: new http.Agent(common), https: new https.Agent(common) };
  }

  async exchange(
    url: URL,
    proxy: ProxyServer | null,
    opts: NodeExchangeOptions,
  ): Promise<{ status: number; headers: Record<string, string>; body: ResponseBody }> {
    const secure = url.protocol === 'https:';
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = Number(url.port) || (secure ? 443 : 80);
    const path = `${url.pathname}${url.search}`;
    let options: https.RequestOptions;
    if (!proxy) {
      options = {
        host,
        port,
        path,
        agent: secure ? this.agents.https : this.agents.http,
        ...(secure ? { servername: net.isIP(host) ? undefined : host, ca: opts.ca } : {}),
      };
    } else if (!secure) {
      // Forwarded: the absolute URL goes to the proxy, like curl does.
      options = {
        host: proxy.host,
        port: proxy.port,
        path: url.href.replace(/\/\/[^/@]*@/, '//'),
        agent: this.agents.http,
      };
    } else {
      const socket = await this.connectTunnel(proxy, host, port, opts);
      options = {
        host,
        port,
        path,
        // No agent at all (not `agent: false`, which makes a fresh Agent that ignores createConnection).
        createConnection: () =>
          tls.connect({ socket, servername: net.isIP(host) ? undefined : host, ca: opts.ca }),
      };
    }
    try {
      return await this.send(url, secure && !proxy, options, opts);
    } catch (err) {
      // A kept-alive socket the server had closed: node:http leaves the retry to its caller.
      if ((err as { reusedSocket?: boolean }).reusedSocket && !opts.signal?.aborted) {
        return this.send(url, secure && !proxy, { ...options, agent: false }, opts);
      }
      if (proxy && !secure && isConnectFailure(err as Error)) throw unreachable(proxy, err as Error);
      throw err;
    }
  }

  private send(
    url: URL,
    overTls: boolean,
    options: https.RequestOptions,
    opts: NodeExchangeOptions,
  ): Promise<{ status: number; headers: Record<string, string>; body: ResponseBody }> {
    return new Promise((resolve, reject) => {
      const req = (overTls ? https : http).request(
        { ...options, method: 'GET', headers: opts.headers, signal: opts.signal },
        (res) => {
          const headers: Record<string, string> = {};
          for (const [name, value] of Object.entries(res.headers)) {
            if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
          }
          resolve({ status: res.statusCode ?? 0, headers, body: new NodeBody(res, req) });
        },
      );
      // https over a tunnel: `http.request` with our own TLS socket (createConnection).
      req.setTimeout(opts.timeoutMs, () =>
        req.destroy(new Error(`no data from ${url.host} for ${opts.timeoutMs} ms`)),
      );
      req.on('error', (err) => {
        if (opts.signal?.aborted) reject(opts.signal.reason);
        else if (req.reusedSocket && (err as NodeJS.ErrnoException).code === 'ECONNRESET') {
          reject(Object.assign(err, { reusedSocket: true }));
        } else reject(err);
      });
      req.end();
    });
  }

  private connectTunnel(
    proxy: ProxyServer,
    host: string,
    port: number,
    opts: NodeExchangeOptions,
  ): Promise<net.Socket> {
    const authority = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    return new Promise((resolve, reject) => {
      const req = http.request({
        host: proxy.host,
        port: proxy.port,
        method: 'CONNECT',
        path: authority,
        agent: false,
        signal: opts.signal,
        headers: {
          host: authority,
          ...(proxy.authorization ? { 'proxy-authorization': proxy.authorization } : {}),
        },
      });
      req.setTimeout(opts.timeoutMs, () =>
        req.destroy(
          new ProxyError(`the proxy ${proxy.display} did not answer for ${opts.timeoutMs} ms`, proxy.display),
        ),
      );
      req.once('connect', (res, socket) => {
        req.setTimeout(0);
        if (res.statusCode === 200) resolve(socket);
        else {
          socket.destroy();
          reject(proxyRefusal(proxy, res.statusCode ?? 0, authority));
        }
      });
      req.once('error', (err) => {
        if (opts.signal?.aborted) reject(opts.signal.reason);
        else reject(err instanceof ProxyError ? err : unreachable(proxy, err));
      });
      req.end();
    });
  }

  close(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }
}

function isConnectFailure(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENOTFOUND' || code === 'ETIMEDOUT';
}

function unreachable(proxy: ProxyServer, err: Error): ProxyError {
  const code = (err as NodeJS.ErrnoException).code;
  return new ProxyError(`cannot reach the proxy ${proxy.display}: ${code ?? err.message}`, proxy.display);
}
