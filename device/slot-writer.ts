import fs from 'node:fs/promises';
import { Writable } from 'node:stream';

/**
 * A Writable onto a slot (image file or block device) at a byte position, that can be made
 * durable mid-stream: `checkpoint()` waits for every queued write and fsyncs, so the caller may
 * then record "N bytes are on the slot" in the store and resume from exactly there after a crash.
 * The stream fsyncs before 'finish' as well.
 */
export class SlotWriter extends Writable {
  private position: number;
  private handle: fs.FileHandle | null = null;

  constructor(
    private readonly file: string,
    private readonly startOffset: number,
    private readonly truncate: boolean,
  ) {
    super({ highWaterMark: 4 * 1024 * 1024 });
    this.position = startOffset;
  }

  /** Bytes durably or not yet durably written, counted from the start of the slot. */
  get offset(): number {
    return this.position;
  }

  override _construct(callback: (error?: Error | null) => void): void {
    fs.open(this.file, this.truncate ? 'w' : 'r+')
      .then(async (h) => {
        this.handle = h;
        // Block devices cannot be truncated; regular files drop a torn tail past the resume point.
        if (!this.truncate && (await h.stat()).isFile()) await h.truncate(this.startOffset);
        callback();
      })
      .catch((err: Error) => callback(err));
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.writeAll(chunk).then(() => callback(), callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    // Queued chunks go to the kernel as they are (writev), not copied into one buffer first.
    this.writeAllv(chunks.map((c) => c.chunk)).then(() => callback(), callback);
  }

  private async writeAllv(buffers: Buffer[]): Promise<void> {
    const pending = buffers.filter((b) => b.length > 0);
    while (pending.length > 0) {
      const { bytesWritten } = await this.handle!.writev(pending, this.position);
      this.position += bytesWritten;
      // A short write: drop what went out, keep the rest (rare, but the kernel may do it).
      let left = bytesWritten;
      while (pending.length > 0 && left >= pending[0]!.length) left -= pending.shift()!.length;
      if (left > 0) pending[0] = pending[0]!.subarray(left);
    }
  }

  private async writeAll(buf: Buffer): Promise<void> {
    let done = 0;
    while (done < buf.length) {
      const { bytesWritten } = await this.handle!.write(buf, done, buf.length - done, this.position);
      done += bytesWritten;
      this.position += bytesWritten;
    }
  }

  /** Resolves once every byte written so far is on stable storage; returns that byte count. */
  async checkpoint(): Promise<number> {
    await new Promise<void>((resolve, reject) =>
      this.write(Buffer.alloc(0), (err) => (err ? reject(err) : resolve())),
    );
    // Writes queued after this point may land during the fsync; only what preceded it is promised.
    const durable = this.position;
    await this.handle!.sync();
    return durable;
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.handle!.sync().then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const h = this.handle;
    this.handle = null;
    if (!h) return callback(error);
    h.close().then(
      () => callback(error),
      () => callback(error),
    );
  }
}
