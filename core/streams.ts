import type { EventEmitter } from 'node:events';
import type { Readable, Writable } from 'node:stream';

/**
 * Resolves on 'drain', or on 'close' so a destroyed stream never leaves the writer hanging. Takes
 * any stream (Node's or the streamx ones tar-stream is built on) that emits those two events.
 */
export function drained(stream: { destroyed: boolean }): Promise<void> {
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

/**
 * Takes one chunk. The chunk is only lent: the consumer must copy what it keeps before returning,
 * or return a promise, in which case the chunk stays valid until that promise settles (and no
 * further chunk comes before).
 */
export type ChunkConsumer = (chunk: Buffer) => Promise<void> | undefined;

/**
 * A source that lends its chunks (views of a buffer it reuses) instead of allocating one per read:
 * see feed/http-get.ts. `lend` resolves at the end of the data and rejects on any failure.
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
