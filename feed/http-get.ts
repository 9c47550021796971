import net from 'node:net';
import { Readable } from 'node:stream';
import tls from 'node:tls';
import { hasNoReader, type ChunkConsumer, type ChunkLender } from '../core/lending.js';

/**
 * A minimal HTTP/1.1 GET over one connection, whose body is read into one reused buffer.
 *
 * Why not node:http: its client allocates a new buffer for every socket read (64 KiB), and V8 frees
 * those only when a scavenge happens to run, so a download at disk speed keeps ~40 MiB of dead read
 * buffers resident (measured: bare `http.get` of 1 GiB into a file peaks at +40 MiB; the same with
 * a reused buffer at +8 MiB, see `npm run bench -- pipeline`). A gateway has no such memory to
 * spare. This client reads with net/tls's `onread` into a buffer it owns and lends views of it to
 * the consumer (`lend`), which copies them where they go (slot blocks, hash blocks) or asks to wait.
 *
 * Scope: what an update feed needs. GET only, `Connection: close`, bodies framed by
 * Content-Length, chunked transfer coding or the end of the connection; no redirects (like
 * node:http), no keep-alive, no proxies. 1xx interim responses are skipped.
 */

export interface HttpGetOptions {
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** No byte for this long (connecting included) fails the request. */
  timeoutMs: number;
  /** Size of the read buffer, i.e. the most one read hands over. */
  readBufferBytes?: number;
  /** Certificate authorities trusted for https instead of Node's bundled ones. */
  ca?: string | Buffer;
}

export interface HttpResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: HttpBody;
}

/** The most a response head may take (status line and headers). */
const MAX_HEAD_BYTES = 64 * 1024;
const MAX_CHUNK_LINE_BYTES = 4096;
const DEFAULT_READ_BUFFER_BYTES = 1024 * 1024;

/** How the body's end is found. */
interface BodyDecoder {
  readonly done: boolean;
  /** Consumes `raw` from `at`; returns the body bytes found there (a view) and where to go on. */
  step(raw: Buffer, at: number): { piece: Buffer | null; next: number };
  /** The connection ended: is the body complete? */
  completeAtEof(): boolean;
}

class LengthDecoder implements BodyDecoder {
  constructor(private left: number) {}
  get done(): boolean {
    return this.left === 0;
  }
  step(raw: Buffer, at: number) {
    const n = Math.min(this.left, raw.length - at);
    this.left -= n;
    return { piece: raw.subarray(at, at + n), next: at + n };
  }
  completeAtEof(): boolean {
    return this.left === 0;
  }
}

class UntilCloseDecoder implements BodyDecoder {
  readonly done = false;
  step(raw: Buffer, at: number) {
    return { piece: raw.subarray(at), next: raw.length };
  }
  completeAtEof(): boolean {
    return true;
  }
}

/** RFC 9112 §7.1: hex size line (extensions ignored), data, CRLF; a zero size, trailers, CRLF. */
class ChunkedDecoder implements BodyDecoder {
  private state: 'size' | 'data' | 'data-end' | 'trailer' | 'done' = 'size';
  private line = '';
  private left = 0;
  get done(): boolean {
    return this.state === 'done';
  }
  completeAtEof(): boolean {
    return this.state === 'done';
  }

  /** Reads up to the end of a line; returns it (without CRLF) or null if the chunk ran out first. */
  private readLine(raw: Buffer, at: number): { line: string | null; next: number } {
    const nl = raw.indexOf(0x0a, at);
    const end = nl === -1 ? raw.length : nl;
    this.line += raw.toString('latin1', at, end);
    if (this.line.length > MAX_CHUNK_LINE_BYTES) throw new Error('malformed chunked body: line too long');
    if (nl === -1) return { line: null, next: raw.length };
    const line = this.line.endsWith('\r') ? this.line.slice(0, -1) : this.line;
    this.line = '';
    return { line, next: nl + 1 };
  }

  step(raw: Buffer, at: number): { piece: Buffer | null; next: number } {
    switch (this.state) {
      case 'data': {
        const n = Math.min(this.left, raw.length - at);
        this.left -= n;
        if (this.left === 0) this.state = 'data-end';
        return { piece: raw.subarray(at, at + n), next: at + n };
      }
      case 'size': {
        const { line, next } = this.readLine(raw, at);
        if (line === null) return { piece: null, next };
        const hex = line.split(';', 1)[0]!.trim();
        if (!/^[0-9a-fA-F]{1,13}$/.test(hex)) throw new Error('malformed chunked body: bad chunk size');
        this.left = parseInt(hex, 16);
        this.state = this.left === 0 ? 'trailer' : 'data';
        return { piece: null, next };
      }
      case 'data-end': {
        const { line, next } = this.readLine(raw, at);
        if (line === null) return { piece: null, next };
        if (line !== '') throw new Error('malformed chunked body: no CRLF after a chunk');
        this.state = 'size';
        return { piece: null, next };
      }
      case 'trailer': {
        const { line, next } = this.readLine(raw, at);
        if (line === '') this.state = 'done';
        return { piece: null, next };
      }
      case 'done':
        return { piece: null, next: raw.length };
    }
  }
}

function parseHead(text: string): { status: number; headers: Record<string, string> } {
  const [statusLine, ...lines] = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(statusLine ?? '');
  if (!m) throw new Error(`not an HTTP/1.x response: ${JSON.stringify((statusLine ?? '').slice(0, 80))}`);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`malformed response header ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  return { status: Number(m[1]), headers };
}

function decoderFor(status: number, headers: Record<string, string>): BodyDecoder {
  if (status === 204 || status === 304) return new LengthDecoder(0);
  const coding = headers['transfer-encoding'];
  if (coding !== undefined) {
    if (coding.split(',').at(-1)!.trim().toLowerCase() !== 'chunked') {
      throw new Error(`unsupported transfer coding ${JSON.stringify(coding)}`);
    }
    return new ChunkedDecoder();
  }
  const length = headers['content-length'];
  if (length !== undefined) {
    // Repeated identical values are allowed (RFC 9110 §8.6); anything else is a framing attack.
    const values = new Set(length.split(',').map((v) => v.trim()));
    const [only] = values;
    if (values.size !== 1 || !/^\d{1,15}$/.test(only!)) {
      throw new Error(`invalid Content-Length ${JSON.stringify(length)}`);
    }
    return new LengthDecoder(Number(only));
  }
  return new UntilCloseDecoder();
}

/** A limit on the body's size, checked as bytes arrive (an endless body is cut at once). */
export interface BodyLimit {
  bytes: number;
  /** The body must be exactly `bytes` long (shorter fails at its end). */
  exact: boolean;
  error(kind: 'overflow' | 'short', received: number): Error;
}

/**
 * A response body. Either lent (`lend`: the fast path, views of the read buffer) or read as an
 * ordinary Readable (each chunk a copy), not both.
 */
export class HttpBody extends Readable implements ChunkLender {
  private decoder: BodyDecoder = new LengthDecoder(0);
  private mode: 'lend' | 'read' | null = null;
  private consumer: ChunkConsumer | null = null;
  private settle: { resolve(): void; reject(err: unknown): void } | null = null;
  /** The read buffers: `primary` always, `spare` only if a read lands while a view is lent. */
  private readonly primary: Buffer;
  private spare: Buffer | null = null;
  /** A lent piece is out: the consumer's promise is pending. */
  private busy = false;
  /** The read buffer that piece (and the unprocessed rest of its read) lives in; null for a copy. */
  private held: Buffer | null = null;
  /** Bytes read while the consumer could not take them, copied. */
  private readonly backlog: Buffer[] = [];
  /** A Readable consumer asked to stop (push returned false). */
  private readPaused = false;
  private eof = false;
  private complete = false;
  private received = 0;
  private limit: BodyLimit | null = null;
  /** Set once the head is parsed; before that, reads go to the head. */
  private headDone = false;
  private headBytes: Buffer = Buffer.alloc(0);
  socket: net.Socket | null = null;
  /** Turns a failure of the body (connection, framing, timeout) into the caller's error. */
  mapError: ((err: Error) => Error) | null = null;

  constructor(
    readBufferBytes: number,
    private readonly onHead: (status: number, headers: Record<string, string>) => void,
    private readonly onHeadError: (err: Error) => void,
  ) {
    super({ highWaterMark: 256 * 1024 });
    this.primary = Buffer.allocUnsafeSlow(readBufferBytes);
  }

  /** Bytes of body received so far. */
  get bytesReceived(): number {
    return this.received;
  }

  setLimit(limit: BodyLimit): void {
    this.limit = limit;
  }

  /** For net/tls `onread.buffer`: a buffer no lent view lives in. */
  readBuffer = (): Buffer => {
    if (this.held !== this.primary) return this.primary;
    this.spare ??= Buffer.allocUnsafeSlow(this.primary.length);
    return this.spare;
  };

  /** For net/tls `onread.callback`. Returns false to pause the socket. */
  onRead = (n: number, into: Uint8Array): boolean => {
    if (this.destroyed || this.complete) return false;
    const buf = into as Buffer; // one of ours, from readBuffer
    const raw = buf.subarray(0, n);
    if (!this.headDone) return this.readHead(raw);
    if (this.busy || !this.consuming() || this.backlog.length > 0) {
      // TLS may hand over reads it already decrypted after a pause: keep them, in order.
      this.backlog.push(Buffer.from(raw));
      return false;
    }
    return this.process(raw, buf);
  };

  onEof = (): void => {
    this.eof = true;
    if (!this.busy && this.backlog.length === 0) this.finishAtEof();
  };

  private readHead(raw: Buffer): boolean {
    this.headBytes = Buffer.concat([this.headBytes, raw]);
    for (;;) {
      const end = this.headBytes.indexOf('\r\n\r\n');
      if (end === -1) {
        if (this.headBytes.length > MAX_HEAD_BYTES) {
          this.onHeadError(new Error(`response head larger than ${MAX_HEAD_BYTES} bytes`));
          return false;
        }
        return true;
      }
      let head: { status: number; headers: Record<string, string> };
      try {
        head = parseHead(this.headBytes.toString('latin1', 0, end));
        const rest = this.headBytes.subarray(end + 4);
        this.headBytes = rest;
        if (head.status >= 100 && head.status < 200) continue; // interim: the real head follows
        this.decoder = decoderFor(head.status, head.headers);
      } catch (err) {
        this.onHeadError(err as Error);
        return false;
      }
      this.headDone = true;
      if (this.headBytes.length > 0) this.backlog.push(this.headBytes);
      this.headBytes = Buffer.alloc(0);
      this.onHead(head.status, head.headers);
      if (this.decoder.done) this.finish();
      return false; // paused until the body is consumed
    }
  }

  private consuming(): boolean {
    return this.mode === 'lend' || (this.mode === 'read' && !this.readPaused);
  }

  /** Can `lend` still be used (nobody reads the stream as a Readable)? */
  canLend(): boolean {
    return this.mode === null && hasNoReader(this);
  }

  lend(consume: ChunkConsumer): Promise<void> {
    if (this.mode !== null) return Promise.reject(new Error('the response body is already being read'));
    this.mode = 'lend';
    this.consumer = consume;
    // Failures reach the lender through the promise, not as an unhandled 'error'.
    this.on('error', () => undefined);
    return new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject };
      if (this.destroyed) return reject(this.errored ?? new Error('the response body was destroyed'));
      if (this.complete) return resolve();
      this.drainBacklog();
    });
  }

  override _read(): void {
    if (this.mode === 'lend') return;
    this.mode = 'read';
    this.readPaused = false;
    this.drainBacklog();
  }

  /**
   * Walks one read through the body decoder and hands the body bytes on. Returns false when it had
   * to stop (the consumer asked to wait, an error): the socket is then paused, and the rest of
   * `raw` (still in `owner`, which no read may overwrite meanwhile) is taken up where it stopped.
   */
  private process(raw: Buffer, owner: Buffer | null): boolean {
    let at = 0;
    while (at < raw.length && !this.decoder.done) {
      let piece: Buffer | null;
      try {
        ({ piece, next: at } = this.decoder.step(raw, at));
      } catch (err) {
        this.destroy(err as Error);
        return false;
      }
      if (!piece || piece.length === 0) continue;
      this.received += piece.length;
      if (this.limit && this.received > this.limit.bytes) {
        this.destroy(this.limit.error('overflow', this.received));
        return false;
      }
      const wait = this.deliver(piece, owner !== null);
      if (this.destroyed) return false;
      if (wait) {
        this.busy = true;
        this.held = owner;
        this.socket?.pause();
        const rest = raw.subarray(at);
        wait.then(
          () => {
            this.busy = false;
            this.held = null;
            if (this.destroyed) return;
            if (this.process(rest, owner)) this.drainBacklog();
          },
          (err: unknown) => this.destroy(err as Error),
        );
        return false;
      }
    }
    if (this.decoder.done) {
      this.finish();
      return false;
    }
    if (this.mode === 'read' && this.readPaused) return false;
    return true;
  }

  /** Returns a promise if the consumer must finish with this piece before the next. */
  private deliver(piece: Buffer, lent: boolean): Promise<void> | undefined {
    if (this.mode === 'lend') {
      try {
        return this.consumer!(piece) ?? undefined;
      } catch (err) {
        this.destroy(err as Error);
        return undefined;
      }
    }
    if (!this.push(lent ? Buffer.from(piece) : piece)) this.readPaused = true;
    return undefined;
  }

  /** Processes what arrived while the consumer was busy, then reads on. */
  private drainBacklog(): void {
    while (this.backlog.length > 0) {
      if (this.destroyed || this.complete || this.busy || !this.consuming()) return;
      if (!this.process(this.backlog.shift()!, null)) return;
    }
    if (this.destroyed || this.complete || this.busy || !this.consuming()) return;
    if (this.eof) this.finishAtEof();
    else this.socket?.resume();
  }

  private finishAtEof(): void {
    if (this.complete || this.destroyed || !this.headDone) return;
    if (!this.decoder.completeAtEof()) {
      this.destroy(
        this.limit?.error('short', this.received) ??
          new Error(`connection closed after ${this.received} bytes of the body`),
      );
      return;
    }
    this.finish();
  }

  private finish(): void {
    if (this.complete) return;
    if (this.limit?.exact && this.received !== this.limit.bytes) {
      this.destroy(this.limit.error(this.received > this.limit.bytes ? 'overflow' : 'short', this.received));
      return;
    }
    this.complete = true;
    // One request per connection: the socket has nothing more to give.
    this.socket?.destroy();
    if (this.mode === 'lend') this.settle?.resolve();
    else this.push(null);
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.socket?.destroy();
    const failure = err && this.mapError ? this.mapError(err) : err;
    if (!this.complete) {
      this.settle?.reject(failure ?? new Error('the response body was destroyed before its end'));
    }
    callback(failure);
  }
}

/**
 * Sends `GET url` and resolves with the response head once it arrived; the body waits, paused,
 * for its consumer. Rejects on a connection failure, a malformed head, the timeout or the signal.
 */
export function httpGet(url: URL, opts: HttpGetOptions): Promise<HttpResponse> {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return Promise.reject(new Error(`unsupported URL scheme ${url.protocol}`));
  }
  if (opts.signal?.aborted) return Promise.reject(opts.signal.reason);
  const secure = url.protocol === 'https:';
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = Number(url.port) || (secure ? 443 : 80);

  return new Promise<HttpResponse>((resolve, reject) => {
    let answered = false;
    /** Before the head, a failure rejects the request; after it, it fails the body. */
    const fail = (err: Error): void => {
      if (answered) {
        body.destroy(err);
        return;
      }
      answered = true;
      reject(err);
      body.destroy();
    };
    const body: HttpBody = new HttpBody(
      opts.readBufferBytes ?? DEFAULT_READ_BUFFER_BYTES,
      (status, headers) => {
        answered = true;
        resolve({ status, headers, body });
      },
      fail,
    );
    const onread = { buffer: body.readBuffer, callback: body.onRead };
    // tls.connect takes `onread` like net.connect (Node docs, checked on Node 20 in
    // test/feed/http-get.test.ts); @types/node does not list it there.
    const tlsOptions: tls.ConnectionOptions & { onread: net.OnReadOpts } = {
      host,
      port,
      servername: net.isIP(host) ? undefined : host,
      ca: opts.ca,
      onread,
    };
    const socket = secure ? tls.connect(tlsOptions) : net.connect({ host, port, onread });
    body.socket = socket;

    const onAbort = (): void => fail(opts.signal!.reason as Error);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    body.once('close', () => opts.signal?.removeEventListener('abort', onAbort));

    socket.setTimeout(opts.timeoutMs, () =>
      fail(new Error(`no data from ${url.host} for ${opts.timeoutMs} ms`)),
    );
    socket.on('error', fail);
    socket.on('end', body.onEof);
    socket.on('close', () => {
      if (!answered) fail(new Error(`${url.host} closed the connection before answering`));
      else body.onEof();
    });

    const headers: Record<string, string> = {
      host: url.host,
      'user-agent': 'gantry',
      ...Object.fromEntries(Object.entries(opts.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
      connection: 'close',
    };
    let request = `GET ${url.pathname}${url.search} HTTP/1.1\r\n`;
    for (const [name, value] of Object.entries(headers)) {
      if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) {
        fail(new Error(`invalid request header ${name}`));
        return;
      }
      request += `${name}: ${value}\r\n`;
    }
    socket.write(`${request}\r\n`);
  });
}
