import fs from 'node:fs/promises';
import { Readable, type Writable } from 'node:stream';

/**
 * Lending I/O: how Gantry moves bulk bytes (feed downloads, files, slot images) without allocating a
 * buffer per read. Every lender and every consumer of lent chunks is in this module or implements its
 * two interfaces; the HTTP client's body (feed/http/body.ts) is the one lender elsewhere.
 *
 * Why: Node's streams hand out a fresh Buffer per read (64 KiB from a socket, `highWaterMark` from a
 * file). V8 frees them only when a scavenge happens to run, so a 1 GiB transfer at disk speed keeps
 * 20-40 MiB of dead read buffers resident (measured, README "Performance (measured)"). A lender
 * reads into one buffer it owns and reuses, and lends views of it.
 *
 * The contract, for both sides:
 *
 * 1. A lender calls `consume(chunk)` with a view of its own buffer. The chunk is valid while the
 *    call runs. The consumer either finishes with it there (copies what it keeps: into a slot block,
 *    a hash, a metadata buffer) and returns `undefined`, or returns a promise.
 * 2. A returned promise extends the loan: the lender leaves those bytes untouched, and hands over
 *    no further chunk, until it settles. It may keep reading meanwhile, but only into another buffer
 *    (the HTTP body's spare, or a copy kept in order), never into the lent one.
 * 3. A rejected promise, or a throw from `consume`, fails the lender: `lend` rejects with that error
 *    and the source is closed. The lender's own failures (a dropped connection, a framing error, a
 *    limit) reject `lend` too, never as an unhandled 'error' event.
 * 4. `lend` resolves once the last chunk's loan ended and the data is complete. It is called at most
 *    once; a lender read as an ordinary Readable (`pipe`, `for await`, 'data') copies each chunk
 *    instead and can no longer lend (`canLend`).
 * 5. A consumer never keeps a chunk (or a view of it) past its loan. Writable sinks follow this
 *    through `writeLent`: a stream that takes the chunk synchronously (copies it) lets go at once;
 *    one that holds it keeps the loan until its write callback runs.
 *
 * `consumeChunks` and `pipeChunks` are the way to read any Readable under these rules: they lend
 * when the source lends and fall back to 'data' events (one buffer per read, no extra copy) when it
 * does not. The property tests in test/unit/lending.test.ts and test/feed/http-client.test.ts hold a
 * lent chunk across turns of the event loop and check its bytes did not change.
 */

/**
 * Takes one chunk. The chunk is only lent: the consumer must copy what it keeps before returning,
 * or return a promise, in which case the chunk stays valid until that promise settles (and no
 * further chunk comes before).
 */
export type ChunkConsumer = (chunk: Buffer) => Promise<void> | undefined;

/**
 * A source that lends its chunks (views of a buffer it reuses) instead of allocating one per read:
 * see feed/http/body.ts. `lend` resolves at the end of the data and rejects on any failure.
 */
export interface ChunkLender {
  canLend(): boolean;
  lend(consume: ChunkConsumer): Promise<void>;
}

/** No one reads `stream` as a Readable ('data' or 'readable' listeners): a lender may still lend. */
export function hasNoReader(stream: Readable): boolean {
  return stream.listenerCount('data') === 0 && stream.listenerCount('readable') === 0;
}

/** Is `source` a lender that can still lend (nobody reads it as a stream yet)? */
export function canLendChunks(source: object): source is ChunkLender {
  return typeof (source as Partial<ChunkLender>).lend === 'function' && (source as ChunkLender).canLend();
}

/**
 * Writes a lent chunk (see ChunkConsumer): returns undefined when the stream was done with it at
 * once (copied it, kept nothing), else a promise that settles when the stream let go of it: its
 * write callback ran, or it closed.
 */
export function writeLent(stream: Writable, chunk: Buffer): Promise<void> | undefined {
  let written = false;
  let release: (() => void) | undefined;
  stream.write(chunk, () => {
    written = true;
    release?.();
  });
  if (stream.writableLength === 0) return undefined;
  return new Promise<void>((resolve) => {
    if (written) return resolve();
    const done = (): void => {
      stream.off('close', done);
      resolve();
    };
    release = done;
    stream.on('close', done);
  });
}

/**
 * Hands each chunk of `source` to `consume` as it arrives, pausing the source while a returned
 * promise is pending. A source that lends its chunks (the feed's HTTP body, a file) is consumed so:
 * no buffer allocated per read. Others through 'data' events, not `for await`: a Readable's async
 * iterator calls read(), which concatenates whatever is buffered into a new buffer: a copy of every
 * byte, and twice the garbage for the GC on a download's hot path.
 */
export function consumeChunks(source: Readable, consume: ChunkConsumer): Promise<void> {
  if (canLendChunks(source)) return source.lend(consume);
  return new Promise<void>((resolve, reject) => {
    const queue: Buffer[] = [];
    let busy = false;
    let ended = false;
    let done = false;
    const finish = (err?: unknown): void => {
      if (done) return;
      done = true;
      source.off('data', onData).off('end', onEnd).off('error', finish).off('close', onClose);
      if (err === undefined) resolve();
      else reject(err);
    };
    const run = (): void => {
      while (!done && queue.length > 0) {
        let pending: Promise<void> | undefined;
        try {
          pending = consume(queue.shift()!);
        } catch (err) {
          finish(err);
          return;
        }
        if (pending) {
          busy = true;
          source.pause();
          pending.then(() => {
            busy = false;
            if (done) return;
            source.resume();
            run();
          }, finish);
          return;
        }
      }
      if (ended && !busy) finish();
    };
    const onData = (chunk: Buffer): void => {
      queue.push(chunk);
      if (!busy) run();
    };
    const onEnd = (): void => {
      ended = true;
      if (!busy) run();
    };
    const onClose = (): void => {
      if (!ended) finish(new Error('the bundle stream closed before its end'));
    };
    source.on('data', onData).on('end', onEnd).on('error', finish).on('close', onClose);
  });
}

/**
 * Streams `source` into `sink`, then ends the sink and waits for its 'finish'. Lends the chunks
 * when the source lends (a LendingFileReader: one reused buffer for a whole image), so the sink
 * must copy what it keeps (SlotWriter does; see writeLent). `onChunk` sees every chunk first
 * (hashing, progress). Aborting, or a failure on either side, destroys both and rejects.
 */
export async function pipeChunks(
  source: Readable,
  sink: Writable,
  opts: { signal?: AbortSignal; onChunk?(chunk: Buffer): void } = {},
): Promise<void> {
  const { signal } = opts;
  signal?.throwIfAborted();
  let sinkError: unknown;
  const onSinkError = (err: unknown): void => {
    sinkError ??= err;
    source.destroy(err as Error);
  };
  const onAbort = (): void => {
    source.destroy(signal!.reason as Error);
    sink.destroy(signal!.reason as Error);
  };
  sink.on('error', onSinkError);
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await consumeChunks(source, (chunk) => {
      if (sinkError !== undefined) throw sinkError;
      if (sink.destroyed) throw new Error('the destination closed before the end of the data');
      opts.onChunk?.(chunk);
      return writeLent(sink, chunk);
    });
    if (sinkError !== undefined) throw sinkError;
    await new Promise<void>((resolve, reject) => {
      sink.end((err?: Error | null) => (err ? reject(err) : resolve()));
    });
  } catch (err) {
    const failure = signal?.aborted ? signal.reason : (sinkError ?? err);
    if (!sink.destroyed) sink.destroy(failure as Error);
    if (!source.destroyed) source.destroy();
    throw failure;
  } finally {
    // The error listener stays: a sink destroyed here reports its error a tick later.
    signal?.removeEventListener('abort', onAbort);
  }
}

const DEFAULT_BUFFER_BYTES = 1024 * 1024;

/**
 * A file (or a byte range of it: slot images, uploaded bundles) read into one reused buffer and
 * lent to a ChunkConsumer, so that hashing or installing a 1 GiB image allocates 1 MiB instead of
 * a new buffer per read (which V8 frees only when ~64 MiB of them piled up). Read as an ordinary
 * Readable (pipeline, for await), each chunk is a fresh buffer, like fs.createReadStream.
 */
export class LendingFileReader extends Readable implements ChunkLender {
  private mode: 'lend' | 'read' | null = null;
  private opening: Promise<fs.FileHandle> | null = null;
  private position: number;
  /** Bytes left to read; Infinity reads to the end of the file. */
  private left: number;

  constructor(
    private readonly file: string,
    range: { start?: number; end?: number } = {},
    private readonly bufferBytes = DEFAULT_BUFFER_BYTES,
  ) {
    super({ highWaterMark: bufferBytes });
    this.position = range.start ?? 0;
    this.left = range.end === undefined ? Infinity : Math.max(0, range.end - this.position + 1);
  }

  private handle(): Promise<fs.FileHandle> {
    this.opening ??= fs.open(this.file, 'r');
    return this.opening;
  }

  /** Reads the next chunk into `into`; 0 at the end of the range. */
  private async readInto(into: Buffer): Promise<number> {
    if (this.left === 0) return 0;
    const fh = await this.handle();
    const want = Math.min(into.length, this.left);
    const { bytesRead } = await fh.read(into, 0, want, this.position);
    this.position += bytesRead;
    this.left -= bytesRead;
    return bytesRead;
  }

  /**
   * A buffer no larger than what is left of the range: a hop delta reads ~3,500 small ranges of a
   * slot, and a 1 MiB buffer for each (3.5 GB in all) had the GC run ~0.9 s of a 3 s apply.
   */
  private chunkBytes(): number {
    return Math.max(1, Math.min(this.bufferBytes, this.left));
  }

  canLend(): boolean {
    return this.mode === null && hasNoReader(this);
  }

  async lend(consume: ChunkConsumer): Promise<void> {
    if (this.mode !== null) throw new Error('the file is already being read');
    this.mode = 'lend';
    // Failures reach the lender through the promise, not as an unhandled 'error'.
    this.on('error', () => undefined);
    const buffer = Buffer.allocUnsafeSlow(this.chunkBytes());
    try {
      for (;;) {
        if (this.destroyed) throw this.errored ?? new Error('the file reader was destroyed');
        const n = await this.readInto(buffer);
        if (this.destroyed) throw this.errored ?? new Error('the file reader was destroyed');
        if (n === 0) break;
        const wait = consume(buffer.subarray(0, n));
        if (wait) await wait;
      }
    } finally {
      this.destroy();
    }
  }

  override _read(): void {
    if (this.mode === 'lend') return;
    this.mode = 'read';
    const chunk = Buffer.allocUnsafe(this.chunkBytes());
    this.readInto(chunk).then(
      (n) => this.push(n === 0 ? null : chunk.subarray(0, n)),
      (err: Error) => this.destroy(err),
    );
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    const opening = this.opening;
    if (!opening) return callback(err);
    // A read under way finishes before its descriptor is closed (FileHandle waits for it).
    opening
      .then((fh) => fh.close())
      .then(
        () => callback(err),
        () => callback(err),
      );
  }
}

/** Positional reads of a file through one open descriptor (see `openFileReadAt`). */
export interface FileReadAt {
  /** Reads into `into` from byte `position`; resolves with the bytes read (fewer only at the end). */
  read(into: Buffer, position: number): Promise<number>;
  close(): Promise<void>;
}

/**
 * One descriptor for many small reads: a stream per range costs an open and a close around each
 * read (three thread-pool round trips); a hop delta reads ~6,700 ranges of the active slot.
 */
export async function openFileReadAt(file: string): Promise<FileReadAt> {
  const handle = await fs.open(file, 'r');
  return {
    read: async (into, position) => {
      let got = 0;
      while (got < into.length) {
        const { bytesRead } = await handle.read(into, got, into.length - got, position + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return got;
    },
    close: () => handle.close(),
  };
}
