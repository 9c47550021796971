import { Readable } from 'node:stream';
import { hasNoReader, type ChunkConsumer, type ChunkLender } from '../../core/lending.js';
import {
  decoderFor,
  LengthDecoder,
  MAX_HEAD_BYTES,
  parseHead,
  type BodyDecoder,
  type ResponseHead,
} from './wire.js';

/** A limit on the body's size, checked as bytes arrive (an endless body is cut at once). */
export interface BodyLimit {
  bytes: number;
  /** The body must be exactly `bytes` long (shorter fails at its end). */
  exact: boolean;
  error(kind: 'overflow' | 'short', received: number): Error;
}

/** What every response body offers, whichever client read it (see client.ts). */
export interface ResponseBody extends Readable {
  readonly bytesReceived: number;
  setLimit(limit: BodyLimit): void;
  /** Turns a failure of the body (connection, framing, timeout) into the caller's error. */
  mapError: ((err: Error) => Error) | null;
  /**
   * Reads and drops a small body so its connection can serve the next request (a redirect, a 404);
   * a body larger than `maxBytes` closes the connection instead.
   */
  dump(maxBytes?: number): void;
}

/** The read buffers of a connection, reused by each of its responses in turn. */
export interface ReadBuffers {
  primary: Buffer;
  /** Only allocated when a read lands while a view of `primary` is lent (TLS does that). */
  spare: Buffer | null;
}

/** The connection a body reads from (pool.ts). */
export interface BodyConnection {
  readonly buffers: ReadBuffers;
  pause(): void;
  resume(): void;
  /** The exchange is over: keep the connection for the next one if `reusable`, else close it. */
  release(reusable: boolean, head: ResponseHead | null): void;
  destroy(): void;
}

const DUMP_BYTES = 64 * 1024;

/**
 * A response read from a connection into its reused buffers: the head, then the body, either lent
 * (`lend`, the fast path: views of the read buffer, the contract of core/lending.ts) or read as an
 * ordinary Readable (each chunk a copy), not both.
 */
export class HttpBody extends Readable implements ChunkLender, ResponseBody {
  private decoder: BodyDecoder = new LengthDecoder(0);
  /** The connection may carry another exchange once this body is complete. */
  private reusable = false;
  private head: ResponseHead | null = null;
  private mode: 'lend' | 'read' | null = null;
  private consumer: ChunkConsumer | null = null;
  private settle: { resolve(): void; reject(err: unknown): void } | null = null;
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
  /** Some byte of the response arrived (a reused connection that fails before is retried). */
  anyByte = false;
  mapError: ((err: Error) => Error) | null = null;

  constructor(
    private readonly conn: BodyConnection,
    private readonly onHead: (head: ResponseHead) => void,
    private readonly onHeadError: (err: Error) => void,
  ) {
    super({ highWaterMark: 256 * 1024 });
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
    const buffers = this.conn.buffers;
    if (this.held !== buffers.primary) return buffers.primary;
    buffers.spare ??= Buffer.allocUnsafeSlow(buffers.primary.length);
    return buffers.spare;
  };

  /** For net/tls `onread.callback`. Returns false to pause the socket. */
  onRead = (n: number, into: Uint8Array): boolean => {
    if (this.destroyed || this.complete) return false;
    this.anyByte ||= n > 0;
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

  /**
   * For a socket that cannot read into our buffers (TLS inside a proxy tunnel: Node ignores
   * `onread` there) and hands over a fresh buffer per read instead. Such a chunk is nobody else's,
   * so it is lent (or kept) as it is. Returns false to pause the socket.
   */
  onChunk = (chunk: Buffer): boolean => {
    if (this.destroyed || this.complete) return false;
    this.anyByte ||= chunk.length > 0;
    if (!this.headDone) return this.readHead(chunk);
    if (this.busy || !this.consuming() || this.backlog.length > 0) {
      this.backlog.push(chunk);
      return false;
    }
    return this.process(chunk, null);
  };

  onEof = (): void => {
    this.eof = true;
    if (!this.busy && this.backlog.length === 0) this.finishAtEof();
  };

  private readHead(raw: Buffer): boolean {
    this.headBytes = this.headBytes.length === 0 ? Buffer.from(raw) : Buffer.concat([this.headBytes, raw]);
    for (;;) {
      const end = this.headBytes.indexOf('\r\n\r\n');
      if (end === -1) {
        if (this.headBytes.length > MAX_HEAD_BYTES) {
          this.onHeadError(new Error(`response head larger than ${MAX_HEAD_BYTES} bytes`));
          return false;
        }
        return true;
      }
      let head: ResponseHead;
      try {
        head = parseHead(this.headBytes.toString('latin1', 0, end));
        this.headBytes = this.headBytes.subarray(end + 4);
        if (head.status >= 100 && head.status < 200) continue; // interim: the real head follows
        ({ decoder: this.decoder, reusable: this.reusable } = decoderFor(head));
      } catch (err) {
        this.onHeadError(err as Error);
        return false;
      }
      this.head = head;
      this.headDone = true;
      if (this.headBytes.length > 0) this.backlog.push(this.headBytes);
      this.headBytes = Buffer.alloc(0);
      this.onHead(head);
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

  dump(maxBytes = DUMP_BYTES): void {
    if (this.mode !== null || this.complete || this.destroyed) {
      if (!this.complete) this.destroy();
      return;
    }
    this.limit = { bytes: maxBytes, exact: false, error: () => new Error('body too large to drop') };
    this.lend(() => undefined).catch(() => undefined);
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
        this.conn.pause();
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
      // Bytes after the end of the body: the server is not speaking one response per request.
      if (at < raw.length) this.reusable = false;
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
    else this.conn.resume();
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
    this.reusable = false;
    this.finish();
  }

  private finish(): void {
    if (this.complete) return;
    if (this.limit?.exact && this.received !== this.limit.bytes) {
      this.destroy(this.limit.error(this.received > this.limit.bytes ? 'overflow' : 'short', this.received));
      return;
    }
    this.complete = true;
    // No view of the read buffers is lent any more (the last loan ended before we got here), so the
    // connection and its buffers may serve the next exchange.
    this.conn.release(this.reusable && !this.eof && this.backlog.length === 0, this.head);
    if (this.mode === 'lend') this.settle?.resolve();
    else this.push(null);
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.complete) this.conn.destroy();
    const failure = err && this.mapError ? this.mapError(err) : err;
    if (!this.complete) {
      this.settle?.reject(failure ?? new Error('the response body was destroyed before its end'));
    }
    callback(failure);
  }
}
