import fs from 'node:fs/promises';
import { Readable } from 'node:stream';
import { hasNoReader, type ChunkConsumer, type ChunkLender } from './streams.js';

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

  canLend(): boolean {
    return this.mode === null && hasNoReader(this);
  }

  async lend(consume: ChunkConsumer): Promise<void> {
    if (this.mode !== null) throw new Error('the file is already being read');
    this.mode = 'lend';
    // Failures reach the lender through the promise, not as an unhandled 'error'.
    this.on('error', () => undefined);
    const buffer = Buffer.allocUnsafeSlow(this.bufferBytes);
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
    const chunk = Buffer.allocUnsafe(this.bufferBytes);
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
