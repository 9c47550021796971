import { Transform, type TransformCallback } from 'node:stream';

export interface TarEntryOffset {
  name: string;
  /** Byte offset of the entry's data within the tar stream. */
  dataOffset: number;
  size: number;
}

const BLOCK = 512;

function parseOctal(field: Buffer): number {
  // GNU base-256 for sizes over 8 GiB: high bit of the first byte set.
  if (field[0]! & 0x80) {
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i]!;
    return n;
  }
  const text = field.toString('ascii').replace(/\0.*$/s, '').trim();
  return text ? parseInt(text, 8) : 0;
}

function cString(field: Buffer): string {
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? field.length : end).toString('utf8');
}

/**
 * Passes a tar stream through unchanged while noting where each entry's data starts. A resumed
 * download needs the payload's offset inside the bundle to ask the server for just the rest
 * (HTTP Range) — the bundle parser itself does not expose byte positions.
 */
export class TarOffsetTracker extends Transform {
  readonly entries: TarEntryOffset[] = [];
  private position = 0;
  /** Next header starts here (absolute offset). */
  private nextHeaderAt = 0;
  private header = Buffer.alloc(0);
  private ended = false;

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    let local = 0;
    while (!this.ended && local < chunk.length) {
      const abs = this.position + local;
      if (abs < this.nextHeaderAt) {
        local += Math.min(chunk.length - local, this.nextHeaderAt - abs);
        continue;
      }
      const need = BLOCK - this.header.length;
      const take = chunk.subarray(local, local + need);
      this.header = this.header.length ? Buffer.concat([this.header, take]) : Buffer.from(take);
      local += take.length;
      if (this.header.length < BLOCK) break;
      this.onHeader(this.header, this.position + local);
      this.header = Buffer.alloc(0);
    }
    this.position += chunk.length;
    callback(null, chunk);
  }

  private onHeader(block: Buffer, dataOffset: number): void {
    if (block.every((b) => b === 0)) {
      this.ended = true;
      return;
    }
    const size = parseOctal(block.subarray(124, 136));
    const type = String.fromCharCode(block[156] || 48);
    const prefix = block.subarray(257, 263).toString('ascii').startsWith('ustar')
      ? cString(block.subarray(345, 500))
      : '';
    const base = cString(block.subarray(0, 100));
    if (type === '0' || type === '\0')
      this.entries.push({ name: prefix ? `${prefix}/${base}` : base, dataOffset, size });
    this.nextHeaderAt = dataOffset + Math.ceil(size / BLOCK) * BLOCK;
  }

  offsetOf(name: string): TarEntryOffset | undefined {
    return this.entries.find((e) => e.name === name);
  }
}
