// MEASUREMENT ONLY (reverted after the benchmark): the feed over undici 7, to compare with Gantry's
// own client and node:http in `npm run bench -- pipeline` (BENCH_PIPELINE_CLIENTS).
import { Readable } from 'node:stream';
import { Agent, ProxyAgent, request } from 'undici';
import type { BodyLimit, ResponseBody } from './body.js';
import type { ProxyServer } from './proxy.js';

class UndiciBody extends Readable implements ResponseBody {
  private received = 0;
  private limit: BodyLimit | null = null;
  private ended = false;
  mapError: ((err: Error) => Error) | null = null;
  constructor(private readonly src: Readable) {
    super({ highWaterMark: 256 * 1024 });
    src.pause();
    src.on('data', (chunk: Buffer) => {
      this.received += chunk.length;
      if (this.limit && this.received > this.limit.bytes) {
        this.destroy(this.limit.error('overflow', this.received));
        return;
      }
      if (!this.push(chunk)) src.pause();
    });
    src.on('end', () => {
      this.ended = true;
      if (this.limit?.exact && this.received !== this.limit.bytes) {
        this.destroy(this.limit.error('short', this.received));
        return;
      }
      this.push(null);
    });
    src.on('error', (err) => this.destroy(err));
  }
  get bytesReceived(): number {
    return this.received;
  }
  setLimit(limit: BodyLimit): void {
    this.limit = limit;
  }
  dump(): void {
    this.on('error', () => undefined);
    this.resume();
  }
  override _read(): void {
    this.src.resume();
  }
  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.ended) this.src.destroy();
    callback(err && this.mapError ? this.mapError(err) : err);
  }
}

export class UndiciTransport {
  private readonly agent: Agent;
  constructor(opts: { maxPerRoute: number; idleTimeoutMs: number; ca?: (string | Buffer)[] }) {
    this.agent = new Agent({
      connections: opts.maxPerRoute,
      keepAliveTimeout: opts.idleTimeoutMs,
      connect: opts.ca ? { ca: opts.ca } : undefined,
    });
  }
  async exchange(
    url: URL,
    proxy: ProxyServer | null,
    opts: { headers: Record<string, string>; timeoutMs: number; signal?: AbortSignal },
  ): Promise<{ status: number; headers: Record<string, string>; body: ResponseBody }> {
    const { host: _host, ...headers } = opts.headers;
    const dispatcher = proxy
      ? new ProxyAgent({ uri: `http://${proxy.host}:${proxy.port}`, token: proxy.authorization ?? undefined })
      : this.agent;
    const res = await request(url, {
      method: 'GET',
      headers,
      signal: opts.signal,
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
      dispatcher,
    });
    const flat: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.headers)) {
      if (v !== undefined) flat[k] = Array.isArray(v) ? v.join(', ') : v;
    }
    return { status: res.statusCode, headers: flat, body: new UndiciBody(res.body) };
  }
  close(): void {
    void this.agent.close();
  }
}
