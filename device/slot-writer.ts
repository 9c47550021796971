import { constants } from 'node:fs';
import fs from 'node:fs/promises';
import { Writable } from 'node:stream';

/** Size of the blocks chunks are gathered into before they go to the slot. */
const BLOCK_BYTES = 1024 * 1024;
/**
 * Blocks filling or queued for the disk at most: bounds the memory a writer holds, and absorbs
 * the stalls of a concurrent fsync (a checkpoint) without stopping the network. Four measured as
 * fast as eight on 1 GiB downloads (`npm run bench -- pipeline`, interleaved runs), three slower.
 */
const MAX_BLOCKS = 4;
/**
 * Direct I/O wants memory addresses, file offsets and lengths in multiples of the device's logical
 * block size: 4096 covers every block size Linux devices report (512 or 4096).
 */
const DIRECT_ALIGN = 4096;
const WASM_PAGE_BYTES = 64 * 1024;

/**
 * MAX_BLOCKS blocks in one WebAssembly memory: the one memory JavaScript can allocate at a
 * page-aligned address (its base is mmapped), which direct I/O needs. Buffer.allocUnsafeSlow's are
 * malloc's, 16 bytes past a page. On 64-bit V8 a WebAssembly memory reserves ~10 GiB of address
 * space (not memory); where that is refused (an address-space limit), ordinary blocks: their
 * direct writes then fail with EINVAL and the writer goes through the page cache.
 */
function alignedBlocks(): Buffer[] {
  const pages = (MAX_BLOCKS * BLOCK_BYTES) / WASM_PAGE_BYTES;
  let memory: ArrayBuffer;
  try {
    memory = new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer;
  } catch {
    memory = new ArrayBuffer(MAX_BLOCKS * BLOCK_BYTES);
  }
  return Array.from({ length: MAX_BLOCKS }, (_, i) =>
    Buffer.from(memory, i * BLOCK_BYTES, BLOCK_BYTES),
  ).reverse();
}

/** Bytes of a block on their way to the slot at `position`; the last piece of a block frees it. */
interface Piece {
  block: Buffer;
  from: number;
  to: number;
  position: number;
  freesBlock: boolean;
}

/** A run of bytes for one write call: through the direct descriptor or the page cache. */
interface Segment {
  direct: boolean;
  position: number;
  buffers: Buffer[];
  length: number;
}

/**
 * A Writable onto a slot (image file or block device) at a byte position, that can be made
 * durable mid-stream: `checkpoint()` waits for every queued write and fsyncs, so the caller may
 * then record "N bytes are on the slot" in the store and resume from exactly there after a crash.
 * The stream fsyncs before 'finish' as well.
 *
 * Incoming chunks (64 KiB network reads) are copied into a few reused 1 MiB blocks and accepted at
 * once; the blocks ready are written together (writev), in order. The copy is cheap next to what it saves:
 * a chunk dies as soon as it is copied, in V8's young generation, instead of waiting in a queue
 * long enough to be promoted and freed only by a full GC (which is what made the resident set
 * grow with the download), and the disk gets 1 MiB writes.
 *
 * The blocks go to the slot by direct I/O (O_DIRECT) where the slot takes it: an image is written
 * once and not read again soon, and copying it into the page cache was the largest CPU cost of a
 * download (1 GiB: ~1.8 CPU s in the kernel on the bench machine, more than hashing it twice).
 * Only whole aligned 4 KiB runs go direct; a run's unaligned ends (a resume point, a checkpoint's
 * or the image's tail) go through the page cache on a second descriptor, so no byte is ever
 * written past the data and the two never overlap. A block's offsets are kept congruent with the
 * slot's modulo 4 KiB so its aligned runs start at aligned addresses. A slot that refuses direct
 * I/O (some file systems) is written through the page cache throughout. fsync covers both
 * descriptors: it is the file's, not the descriptor's.
 */
export class SlotWriter extends Writable {
  /** Bytes written to the slot (the kernel has them), counted from the start of the slot. */
  private position: number;
  /** Slot position of the next byte taken (written, queued or in the current block). */
  private takenTo: number;
  private handle: fs.FileHandle | null = null;
  /** The same slot opened with O_DIRECT; null where direct I/O is not available. */
  private direct: fs.FileHandle | null = null;
  private directWritten = 0;
  private spare: Buffer[] | null = null;
  private current: { block: Buffer; sent: number; fill: number } | null = null;
  private readonly queue: Piece[] = [];
  private writing: Promise<void> | null = null;
  /** Pieces handed to the write queue, and written, since the start (a checkpoint waits between). */
  private queuedPieces = 0;
  private writtenPieces = 0;
  private failure: Error | null = null;
  /** A chunk waiting for a free block: its callback is held back (that is the backpressure). */
  private waiting: (() => void) | null = null;

  constructor(
    private readonly file: string,
    private readonly startOffset: number,
    private readonly truncate: boolean,
  ) {
    super({ highWaterMark: BLOCK_BYTES });
    this.position = startOffset;
    this.takenTo = startOffset;
  }

  /** Bytes durably or not yet durably written, counted from the start of the slot. */
  get offset(): number {
    return this.position;
  }

  /** Bytes that went to the slot by direct I/O (none where the slot refused it). */
  get directBytes(): number {
    return this.directWritten;
  }

  override _construct(callback: (error?: Error | null) => void): void {
    fs.open(this.file, this.truncate ? 'w' : 'r+')
      .then(async (h) => {
        this.handle = h;
        // Block devices cannot be truncated; regular files drop a torn tail past the resume point.
        if (!this.truncate && (await h.stat()).isFile()) await h.truncate(this.startOffset);
        this.direct = await openDirect(this.file);
        callback();
      })
      .catch((err: Error) => callback(err));
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.take(chunk, 0, callback);
  }

  /** Copies `chunk` from `at` into blocks; calls back once all of it is copied. */
  private take(chunk: Buffer, at: number, callback: (error?: Error | null) => void): void {
    while (at < chunk.length) {
      if (this.failure) return callback(this.failure);
      if (!this.current) {
        this.spare ??= alignedBlocks();
        const block = this.spare.pop();
        if (!block) {
          this.waiting = () => this.take(chunk, at, callback);
          return;
        }
        // Block offset ≡ slot position (mod 4 KiB): the block's aligned runs sit at aligned addresses.
        const start = this.takenTo % DIRECT_ALIGN;
        this.current = { block, sent: start, fill: start };
      }
      const c = this.current;
      const n = chunk.copy(c.block, c.fill, at);
      c.fill += n;
      at += n;
      this.takenTo += n;
      if (c.fill === BLOCK_BYTES) this.queueCurrent(true);
    }
    callback();
  }

  /** Queues the current block's unsent bytes; `last` hands the block over (freed once written). */
  private queueCurrent(last: boolean): void {
    const c = this.current;
    if (!c) return;
    if (c.fill > c.sent || last) {
      this.queue.push({
        block: c.block,
        from: c.sent,
        to: c.fill,
        position: this.takenTo - (c.fill - c.sent),
        freesBlock: last,
      });
      this.queuedPieces++;
    }
    c.sent = c.fill;
    if (last) this.current = null;
    this.pump();
  }

  /** Starts writing every queued piece, unless a write is under way. */
  private pump(): void {
    if (this.writing || this.queue.length === 0 || this.failure) return;
    const batch = this.queue.splice(0, this.queue.length);
    this.writing = this.writePieces(batch)
      .then(
        () => {
          this.writtenPieces += batch.length;
          for (const piece of batch) if (piece.freesBlock) this.spare!.push(piece.block);
        },
        (err: Error) => {
          this.failure = err;
        },
      )
      .finally(() => {
        this.writing = null;
        const resume = this.waiting;
        this.waiting = null;
        resume?.();
        this.pump();
      });
  }

  /** Writes pieces that follow each other on the slot: aligned runs direct, their ends buffered. */
  private async writePieces(pieces: Piece[]): Promise<void> {
    const segments: Segment[] = [];
    const add = (direct: boolean, position: number, buffer: Buffer): void => {
      if (buffer.length === 0) return;
      const last = segments[segments.length - 1];
      if (last && last.direct === direct && last.position + last.length === position) {
        last.buffers.push(buffer);
        last.length += buffer.length;
      } else segments.push({ direct, position, buffers: [buffer], length: buffer.length });
    };
    for (const p of pieces) {
      const bytes = p.block.subarray(p.from, p.to);
      const end = p.position + bytes.length;
      const alignedFrom = Math.ceil(p.position / DIRECT_ALIGN) * DIRECT_ALIGN;
      const alignedTo = Math.floor(end / DIRECT_ALIGN) * DIRECT_ALIGN;
      if (!this.direct || alignedTo <= alignedFrom) {
        add(false, p.position, bytes);
        continue;
      }
      add(false, p.position, bytes.subarray(0, alignedFrom - p.position));
      add(true, alignedFrom, bytes.subarray(alignedFrom - p.position, alignedTo - p.position));
      add(false, alignedTo, bytes.subarray(alignedTo - p.position));
    }
    for (const s of segments) {
      if (s.direct && this.direct) {
        try {
          await writeAllv(this.direct, s.buffers, s.position);
          this.position = s.position + s.length;
          this.directWritten += s.length;
          continue;
        } catch (err) {
          // The slot took the descriptor but not the write (its alignment is larger than ours): the
          // page cache for the rest, this segment included (nothing of it was counted as written).
          if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
          const direct = this.direct;
          this.direct = null;
          await direct.close().catch(() => undefined);
        }
      }
      await writeAllv(this.handle!, s.buffers, s.position);
      this.position = s.position + s.length;
    }
  }

  /**
   * Sends the partly filled block and everything queued so far to the slot. Pieces queued after
   * the call are not waited for: a checkpoint must not chase a download that keeps coming.
   */
  private async flush(last = false): Promise<void> {
    this.queueCurrent(last);
    const target = this.queuedPieces;
    while (this.writtenPieces < target && !this.failure) {
      if (!this.writing) this.pump();
      await this.writing;
    }
    if (this.failure) throw this.failure;
  }

  /** Resolves once every byte written so far is on stable storage; returns that byte count. */
  async checkpoint(): Promise<number> {
    // Every chunk written before this call has gone through _write (copied into a block)...
    await new Promise<void>((resolve, reject) =>
      this.write(Buffer.alloc(0), (err) => (err ? reject(err) : resolve())),
    );
    // ...and is now handed to the kernel. Writes accepted after this point may land during the
    // fsync; only what preceded it is promised.
    await this.flush();
    const durable = this.position;
    await this.handle!.sync();
    return durable;
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.flush(true)
      .then(() => this.handle!.sync())
      .then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Stop the queue; an in-flight write must finish before its descriptors are closed.
    this.failure ??= error ?? new Error('slot writer destroyed');
    const settle = this.writing?.catch(() => undefined) ?? Promise.resolve();
    settle
      .then(async () => {
        const handles = [this.handle, this.direct];
        this.handle = null;
        this.direct = null;
        // Nothing of a closed writer keeps its blocks: a writer object still referenced (by a
        // sink, a job's closure) must not keep 4 MiB resident (core/young-gc.ts releaseAfterOperation).
        this.spare = null;
        this.current = null;
        await Promise.all(handles.map((h) => h?.close()));
      })
      .then(
        () => callback(error),
        () => callback(error),
      );
  }
}

/** The slot opened for direct I/O, or null where the platform or its file system has none. */
async function openDirect(file: string): Promise<fs.FileHandle | null> {
  if (constants.O_DIRECT === undefined) return null;
  try {
    return await fs.open(file, constants.O_WRONLY | constants.O_DIRECT);
  } catch {
    return null;
  }
}

/** Writes `buffers` whole at `position`, going on after a short write (rare, but the kernel may). */
async function writeAllv(handle: fs.FileHandle, buffers: Buffer[], position: number): Promise<void> {
  const pending = [...buffers];
  let at = position;
  while (pending.length > 0) {
    const { bytesWritten } = await handle.writev(pending, at);
    at += bytesWritten;
    let left = bytesWritten;
    while (pending.length > 0 && left >= pending[0]!.length) left -= pending.shift()!.length;
    if (left > 0) pending[0] = pending[0]!.subarray(left);
  }
}
