/**
 * An incremental reader for the bundle's tar stream (POSIX ustar, as `buildBundle` writes it).
 *
 * Written for the download path rather than taken from tar-stream (which still writes bundles):
 * the bundle parser is on the hot path of every update, and this reader hands out slices of the
 * caller's chunks without copying, queueing or a stream per entry, and knows each entry's byte
 * offset in the bundle, which resuming a download needs (HTTP Range from the payload's offset).
 * Only what a bundle may hold is understood: regular files, with names up to 255 bytes (ustar
 * prefix) and sizes in octal or GNU base-256. Every other entry type is reported by name so the
 * caller can refuse it; pax and GNU long-name headers are never produced by the publishing tool.
 */

export const TAR_BLOCK = 512;

export interface TarHeader {
  name: string;
  /** tar-stream's names for the type flags: 'file', 'symlink', 'directory', … */
  type: string;
  size: number;
  /** Offset of the entry's first data byte from the start of the archive. */
  dataOffset: number;
}

/** One step through the archive; `data` slices the chunk passed in (no copy). */
export type TarStep =
  | { kind: 'header'; header: TarHeader }
  | { kind: 'data'; data: Buffer }
  | { kind: 'entry-end'; header: TarHeader }
  | { kind: 'end' };

const TYPES: Record<string, string> = {
  '0': 'file',
  '\0': 'file',
  '1': 'link',
  '2': 'symlink',
  '3': 'character-device',
  '4': 'block-device',
  '5': 'directory',
  '6': 'fifo',
  '7': 'contiguous-file',
  x: 'pax-header',
  g: 'pax-global-header',
  L: 'gnu-long-path',
  K: 'gnu-long-link-path',
};

export class TarFormatError extends Error {}

function cString(field: Buffer): string {
  const end = field.indexOf(0);
  return field.subarray(0, end === -1 ? field.length : end).toString('utf8');
}

function parseNumber(field: Buffer, what: string): number {
  if (field[0]! & 0x80) {
    // GNU base-256 (sizes of 8 GiB and more): big-endian after the marker byte.
    if (field[0] !== 0x80) throw new TarFormatError(`negative ${what} in tar header`);
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i]!;
    if (!Number.isSafeInteger(n)) throw new TarFormatError(`${what} too large in tar header`);
    return n;
  }
  const text = field.toString('ascii').replace(/\0.*$/s, '').trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError(`invalid ${what} in tar header`);
  return parseInt(text, 8);
}

function checksumOk(block: Buffer): boolean {
  let sum = 8 * 0x20; // the checksum field itself counts as spaces
  for (let i = 0; i < TAR_BLOCK; i++) if (i < 148 || i >= 156) sum += block[i]!;
  return sum === parseNumber(block.subarray(148, 156), 'checksum');
}

function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < TAR_BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

function parseHeader(block: Buffer, dataOffset: number): TarHeader {
  if (!checksumOk(block)) throw new TarFormatError('invalid tar header checksum');
  const flag = String.fromCharCode(block[156]!);
  const base = cString(block.subarray(0, 100));
  const ustar = block.subarray(257, 262).toString('ascii') === 'ustar';
  const prefix = ustar ? cString(block.subarray(345, 500)) : '';
  return {
    name: prefix ? `${prefix}/${base}` : base,
    type: TYPES[flag] ?? `unknown (${JSON.stringify(flag)})`,
    size: parseNumber(block.subarray(124, 136), 'size'),
    dataOffset,
  };
}

/**
 * Feed chunks in order with `step(chunk, at)` while `at` is short of the chunk's length or
 * `entryComplete` holds, then call `finish()` at the end of the input. Bytes after the end-of-archive marker must be zero.
 */
export class TarReader {
  /** Bytes of the archive consumed so far. */
  position = 0;
  private header = Buffer.alloc(TAR_BLOCK);
  private headerFill = 0;
  private entry: TarHeader | null = null;
  private dataLeft = 0;
  private padLeft = 0;
  private ended = false;

  /** An entry's data is complete and its `entry-end` step is due (it consumes no bytes). */
  get entryComplete(): boolean {
    return this.entry !== null && this.dataLeft === 0;
  }

  /**
   * Consumes bytes of `chunk` from `at` up to the next step; returns it (null if the bytes only
   * filled padding or part of a header) and where the next call starts.
   */
  step(chunk: Buffer, at: number): { step: TarStep | null; next: number } {
    const left = chunk.length - at;
    if (this.ended) {
      for (let i = at; i < chunk.length; i++) {
        if (chunk[i] !== 0) throw new TarFormatError('data after the end-of-archive marker');
      }
      this.position += left;
      return { step: null, next: chunk.length };
    }
    if (this.entry && this.dataLeft > 0) {
      const n = Math.min(left, this.dataLeft);
      this.dataLeft -= n;
      this.position += n;
      return { step: { kind: 'data', data: chunk.subarray(at, at + n) }, next: at + n };
    }
    if (this.entry) {
      const done = this.entry;
      this.entry = null;
      this.padLeft = (TAR_BLOCK - (done.size % TAR_BLOCK)) % TAR_BLOCK;
      return { step: { kind: 'entry-end', header: done }, next: at };
    }
    if (this.padLeft > 0) {
      const n = Math.min(left, this.padLeft);
      this.padLeft -= n;
      this.position += n;
      return { step: null, next: at + n };
    }
    const n = Math.min(left, TAR_BLOCK - this.headerFill);
    chunk.copy(this.header, this.headerFill, at, at + n);
    this.headerFill += n;
    this.position += n;
    if (this.headerFill < TAR_BLOCK) return { step: null, next: at + n };
    this.headerFill = 0;
    if (isZeroBlock(this.header)) {
      this.ended = true;
      return { step: { kind: 'end' }, next: at + n };
    }
    const header = parseHeader(this.header, this.position);
    this.entry = header;
    this.dataLeft = header.size;
    return { step: { kind: 'header', header }, next: at + n };
  }

  /**
   * The end of the input. Returns the pending `entry-end` of an entry whose last bytes closed the
   * input; throws if the input stopped inside a header, an entry or its padding.
   */
  finish(): TarStep | null {
    if (this.entry && this.dataLeft === 0) {
      const done = this.entry;
      this.entry = null;
      this.padLeft = (TAR_BLOCK - (done.size % TAR_BLOCK)) % TAR_BLOCK;
      if (this.padLeft === 0) return { kind: 'entry-end', header: done };
    }
    if (this.entry || this.padLeft > 0 || this.headerFill > 0) {
      throw new TarFormatError('unexpected end of data');
    }
    return null;
  }
}
