import fs from 'node:fs';
import path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type JSZip from 'jszip';
import { checkRelativePath } from '../core/relative-path.js';

/**
 * Safe extraction of an uploaded ZIP (configuration or plugin archive).
 *
 * JSZip alone is not enough to judge an archive: it silently keeps only the last of two entries
 * with the same name, may take an entry's name from a "unicode path" extra field instead of the
 * name we checked, and trusts the declared sizes until it has inflated everything. So the central
 * directory is read here first, byte by byte, and every entry is judged on what it declares
 * (names, type, sizes, ratio, overlap); JSZip then only inflates, and what it inflates is counted
 * and checksummed as it streams, so an archive that lies about its sizes is stopped at the first
 * byte past its declaration, not after filling the disk.
 */

export interface ZipLimits {
  /** Entries (files and directories) in the central directory. */
  maxEntries: number;
  /** Total uncompressed bytes, declared and actually inflated. */
  maxTotalBytes: number;
  /** Uncompressed ÷ compressed size of one entry. */
  maxRatio: number;
  /** Entries smaller than this are not ratio-checked (a small JSON of spaces compresses very well). */
  ratioFloorBytes: number;
  /** Bytes of one entry name. */
  maxNameBytes: number;
}

export const DEFAULT_ZIP_LIMITS: ZipLimits = {
  maxEntries: 1000,
  maxTotalBytes: 256 * 1024 * 1024,
  maxRatio: 100,
  ratioFloorBytes: 64 * 1024,
  maxNameBytes: 1024,
};

export type ZipRejection =
  | 'not_zip'
  | 'corrupt'
  | 'unsupported'
  | 'unsafe_path'
  | 'symlink'
  | 'special_file'
  | 'duplicate'
  | 'too_many_entries'
  | 'too_large'
  | 'ratio'
  | 'size_mismatch'
  | 'crc_mismatch';

export class ZipRejectedError extends Error {
  constructor(
    readonly reason: ZipRejection,
    message: string,
    readonly entry?: string,
  ) {
    super(message);
    this.name = 'ZipRejectedError';
  }
}

/** `PK\x03\x04` (a local file header: any non-empty archive) or `PK\x05\x06` (an empty archive). */
export function isZipMagic(head: Uint8Array): boolean {
  return (
    head.length >= 4 &&
    head[0] === 0x50 &&
    head[1] === 0x4b &&
    ((head[2] === 0x03 && head[3] === 0x04) || (head[2] === 0x05 && head[3] === 0x06))
  );
}

/** Reads the first bytes of a file and tells whether they are a ZIP signature. */
export async function sniffZipFile(file: string): Promise<boolean> {
  const fh = await fs.promises.open(file, 'r');
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await fh.read(head, 0, 4, 0);
    return isZipMagic(head.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

export interface ZipEntryInfo {
  /** As it will be written, relative, '/'-separated; directories end with '/'. */
  name: string;
  isDirectory: boolean;
  compressedSize: number;
  uncompressedSize: number;
  crc32: number;
  method: number;
  /** Byte range of the entry's compressed data in the archive. */
  dataStart: number;
  dataEnd: number;
}

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const MAX16 = 0xffff;
const MAX32 = 0xffffffff;
const MADE_BY_UNIX = 3;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

const utf8 = new TextDecoder('utf-8', { fatal: true });

function corrupt(message: string): ZipRejectedError {
  return new ZipRejectedError('corrupt', `Corrupt ZIP archive: ${message}`);
}

/** Bounds-checked little-endian reads: a truncated or crafted archive must not read past the end. */
class Reader {
  constructor(private readonly buf: Buffer) {}
  u16(at: number): number {
    if (at < 0 || at + 2 > this.buf.length) throw corrupt('truncated');
    return this.buf.readUInt16LE(at);
  }
  u32(at: number): number {
    if (at < 0 || at + 4 > this.buf.length) throw corrupt('truncated');
    return this.buf.readUInt32LE(at);
  }
  u64(at: number): number {
    if (at < 0 || at + 8 > this.buf.length) throw corrupt('truncated');
    const v = this.buf.readBigUInt64LE(at);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt('64-bit field out of range');
    return Number(v);
  }
  bytes(at: number, len: number): Buffer {
    if (at < 0 || len < 0 || at + len > this.buf.length) throw corrupt('truncated');
    return this.buf.subarray(at, at + len);
  }
}

interface Directory {
  count: number;
  offset: number;
  size: number;
  /** Where the end records start: the central directory and all data must lie before. */
  end: number;
}

function findDirectory(buf: Buffer, r: Reader): Directory {
  if (buf.length < 22) throw corrupt('too short');
  const lowest = Math.max(0, buf.length - 22 - MAX16);
  let eocd = -1;
  // The comment length must reach exactly the end of the file: a signature inside the comment,
  // or trailing bytes after the archive, are not accepted as the real end record.
  for (let at = buf.length - 22; at >= lowest; at--) {
    if (buf.readUInt32LE(at) === SIG_EOCD && at + 22 + buf.readUInt16LE(at + 20) === buf.length) {
      eocd = at;
      break;
    }
  }
  if (eocd < 0) throw corrupt('end of central directory not found');
  if (r.u16(eocd + 4) !== 0 || r.u16(eocd + 6) !== 0) {
    throw new ZipRejectedError('unsupported', 'Multi-disk ZIP archives are not supported');
  }
  let count = r.u16(eocd + 10);
  let size = r.u32(eocd + 12);
  let offset = r.u32(eocd + 16);
  let end = eocd;
  if (count === MAX16 || size === MAX32 || offset === MAX32) {
    const locator = eocd - 20;
    if (locator < 0 || r.u32(locator) !== SIG_ZIP64_LOCATOR) throw corrupt('ZIP64 locator missing');
    const at = r.u64(locator + 8);
    if (at + 56 > locator || r.u32(at) !== SIG_ZIP64_EOCD) throw corrupt('ZIP64 end record missing');
    count = r.u64(at + 32);
    size = r.u64(at + 40);
    offset = r.u64(at + 48);
    end = at;
  }
  if (offset + size > end) throw corrupt('central directory out of bounds');
  return { count, offset, size, end };
}

/** The extra field 0x0001 holds, in this order, whichever 32-bit fields were saturated. */
function zip64Fields(
  r: Reader,
  extraStart: number,
  extraLen: number,
  need: { uncompressed: boolean; compressed: boolean; offset: boolean },
) {
  let at = extraStart;
  const end = extraStart + extraLen;
  while (at + 4 <= end) {
    const id = r.u16(at);
    const len = r.u16(at + 2);
    if (at + 4 + len > end) throw corrupt('extra field out of bounds');
    if (id === 0x0001) {
      let p = at + 4;
      const take = () => {
        if (p + 8 > at + 4 + len) throw corrupt('ZIP64 extra field too short');
        const v = r.u64(p);
        p += 8;
        return v;
      };
      return {
        uncompressed: need.uncompressed ? take() : undefined,
        compressed: need.compressed ? take() : undefined,
        offset: need.offset ? take() : undefined,
      };
    }
    at += 4 + len;
  }
  throw corrupt('ZIP64 extra field missing');
}

/** Names that collide on a case-insensitive or normalizing file system collide here too. */
function foldKey(name: string): string {
  return (name.endsWith('/') ? name.slice(0, -1) : name).normalize('NFC').toLowerCase();
}

/**
 * Reads and judges the central directory of an archive held in memory, without inflating anything.
 * Throws ZipRejectedError for anything unsafe; returns the entries in directory order.
 */
export function inspectZip(buf: Buffer, limits: ZipLimits = DEFAULT_ZIP_LIMITS): ZipEntryInfo[] {
  if (!isZipMagic(buf.subarray(0, 4))) {
    throw new ZipRejectedError('not_zip', 'Invalid file type. Please upload a ZIP file');
  }
  const r = new Reader(buf);
  const dir = findDirectory(buf, r);
  if (dir.count > limits.maxEntries) {
    throw new ZipRejectedError(
      'too_many_entries',
      `ZIP archive has ${dir.count} entries; at most ${limits.maxEntries} are allowed`,
    );
  }

  const entries: ZipEntryInfo[] = [];
  const seen = new Map<string, string>();
  let declaredTotal = 0;
  let at = dir.offset;
  for (let i = 0; i < dir.count; i++) {
    if (r.u32(at) !== SIG_CENTRAL) throw corrupt(`central directory entry ${i} malformed`);
    const madeBy = r.u16(at + 4) >> 8;
    const flags = r.u16(at + 8);
    const method = r.u16(at + 10);
    const crc32 = r.u32(at + 16);
    let compressedSize = r.u32(at + 20);
    let uncompressedSize = r.u32(at + 24);
    const nameLen = r.u16(at + 28);
    const extraLen = r.u16(at + 30);
    const commentLen = r.u16(at + 32);
    const external = r.u32(at + 38);
    let localOffset = r.u32(at + 42);
    const rawName = r.bytes(at + 46, nameLen);
    if (compressedSize === MAX32 || uncompressedSize === MAX32 || localOffset === MAX32) {
      const z = zip64Fields(r, at + 46 + nameLen, extraLen, {
        uncompressed: uncompressedSize === MAX32,
        compressed: compressedSize === MAX32,
        offset: localOffset === MAX32,
      });
      uncompressedSize = z.uncompressed ?? uncompressedSize;
      compressedSize = z.compressed ?? compressedSize;
      localOffset = z.offset ?? localOffset;
    }
    at += 46 + nameLen + extraLen + commentLen;
    if (at > dir.offset + dir.size) throw corrupt('central directory overruns its declared size');

    if (nameLen > limits.maxNameBytes) {
      throw new ZipRejectedError('unsafe_path', `ZIP entry name longer than ${limits.maxNameBytes} bytes`);
    }
    let name: string;
    try {
      name = utf8.decode(rawName);
    } catch {
      throw new ZipRejectedError('unsafe_path', `ZIP entry ${i} has a name that is not valid UTF-8`);
    }
    if (flags & 0x0001) throw new ZipRejectedError('unsupported', `Encrypted ZIP entry: ${name}`, name);
    if (method !== 0 && method !== 8) {
      throw new ZipRejectedError('unsupported', `Unsupported compression method ${method}: ${name}`, name);
    }

    const unixType = madeBy === MADE_BY_UNIX ? (external >>> 16) & S_IFMT : 0;
    if (unixType === S_IFLNK) throw new ZipRejectedError('symlink', `Symbolic link in ZIP: ${name}`, name);
    if (unixType !== 0 && unixType !== S_IFREG && unixType !== S_IFDIR) {
      throw new ZipRejectedError('special_file', `Special file in ZIP: ${name}`, name);
    }
    const dosDir = (external & 0x10) !== 0;
    const isDirectory = name.endsWith('/') || dosDir || unixType === S_IFDIR;
    if (isDirectory && !name.endsWith('/')) {
      // JSZip treats a DOS-flagged entry as a directory and appends the slash; a Unix directory
      // mode without either marker would be written as a file by JSZip: refuse the ambiguity.
      if (!dosDir) throw new ZipRejectedError('special_file', `Ambiguous directory entry: ${name}`, name);
      name += '/';
    }
    const pathProblem = checkRelativePath(name, 'ZIP entry');
    if (pathProblem) throw new ZipRejectedError('unsafe_path', pathProblem, name);
    if (isDirectory && uncompressedSize !== 0) {
      throw new ZipRejectedError('corrupt', `Directory entry with content: ${name}`, name);
    }

    const key = foldKey(name);
    const clash = seen.get(key);
    if (clash !== undefined) {
      throw new ZipRejectedError(
        'duplicate',
        clash === name
          ? `Duplicate ZIP entry: ${name}`
          : `ZIP entries differ only in case: ${clash} and ${name}`,
        name,
      );
    }
    seen.set(key, name);

    declaredTotal += uncompressedSize;
    if (declaredTotal > limits.maxTotalBytes) {
      throw new ZipRejectedError(
        'too_large',
        `ZIP archive expands to more than ${limits.maxTotalBytes} bytes`,
        name,
      );
    }
    if (
      uncompressedSize >= limits.ratioFloorBytes &&
      uncompressedSize > limits.maxRatio * Math.max(compressedSize, 1)
    ) {
      throw new ZipRejectedError(
        'ratio',
        `ZIP entry ${name} has a compression ratio above ${limits.maxRatio}:1`,
        name,
      );
    }

    if (r.u32(localOffset) !== SIG_LOCAL) throw corrupt(`local header of ${name} not found`);
    const dataStart = localOffset + 30 + r.u16(localOffset + 26) + r.u16(localOffset + 28);
    const dataEnd = dataStart + compressedSize;
    if (dataEnd > dir.offset) throw corrupt(`data of ${name} out of bounds`);
    entries.push({ name, isDirectory, compressedSize, uncompressedSize, crc32, method, dataStart, dataEnd });
  }

  // Entries sharing compressed bytes are how "overlapping" bombs multiply a small kernel.
  const byOffset = entries.filter((e) => !e.isDirectory).sort((a, b) => a.dataStart - b.dataStart);
  for (let i = 1; i < byOffset.length; i++) {
    const prev = byOffset[i - 1]!;
    const cur = byOffset[i]!;
    if (cur.dataStart < prev.dataEnd) throw corrupt(`entries ${prev.name} and ${cur.name} overlap`);
  }

  // A file "a" and an entry "a/b" cannot both exist on disk.
  for (const e of entries) {
    const parts = e.name.split('/');
    for (let depth = 1; depth < parts.length - (e.isDirectory ? 1 : 0); depth++) {
      const parent = seen.get(foldKey(parts.slice(0, depth).join('/')));
      if (parent !== undefined && !parent.endsWith('/')) {
        throw new ZipRejectedError('duplicate', `ZIP entry ${e.name} lies inside file ${parent}`, e.name);
      }
    }
  }
  return entries;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32Update(crc: number, chunk: Uint8Array): number {
  let c = crc ^ 0xffffffff;
  for (let i = 0; i < chunk.length; i++) c = CRC_TABLE[(c ^ chunk[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Counts and checksums one entry's inflated bytes, failing the moment they exceed a limit. */
class EntryMeter extends Transform {
  private bytes = 0;
  private crc = 0;

  constructor(
    private readonly entry: ZipEntryInfo,
    private readonly limits: ZipLimits,
    private readonly total: { bytes: number },
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const { entry, limits } = this;
    this.bytes += chunk.length;
    this.total.bytes += chunk.length;
    if (this.bytes > entry.uncompressedSize) {
      return done(
        new ZipRejectedError(
          'size_mismatch',
          `ZIP entry ${entry.name} inflates to more than its declared ${entry.uncompressedSize} bytes`,
          entry.name,
        ),
      );
    }
    if (this.total.bytes > limits.maxTotalBytes) {
      return done(
        new ZipRejectedError(
          'too_large',
          `ZIP archive expands to more than ${limits.maxTotalBytes} bytes`,
          entry.name,
        ),
      );
    }
    if (
      this.bytes >= limits.ratioFloorBytes &&
      this.bytes > limits.maxRatio * Math.max(entry.compressedSize, 1)
    ) {
      return done(
        new ZipRejectedError(
          'ratio',
          `ZIP entry ${entry.name} has a compression ratio above ${limits.maxRatio}:1`,
          entry.name,
        ),
      );
    }
    this.crc = crc32Update(this.crc, chunk);
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    const { entry } = this;
    if (this.bytes !== entry.uncompressedSize) {
      return done(
        new ZipRejectedError(
          'size_mismatch',
          `ZIP entry ${entry.name} inflates to ${this.bytes} bytes, not the declared ${entry.uncompressedSize}`,
          entry.name,
        ),
      );
    }
    if (this.crc !== entry.crc32) {
      return done(
        new ZipRejectedError('crc_mismatch', `ZIP entry ${entry.name} fails its CRC-32`, entry.name),
      );
    }
    done();
  }
}

export interface ExtractResult {
  files: string[];
  directories: string[];
  totalBytes: number;
}

function decodeName(bytes: string[] | Uint8Array | Buffer): string {
  if (Array.isArray(bytes)) throw new Error('unexpected file name representation');
  return utf8.decode(bytes);
}

/**
 * Extracts `zipFile` into `destDir`, which must not exist yet (it is created, and removed again
 * if anything is refused). Files are written 0644 whatever the archive says: modes (setuid, the
 * executable bit) are granted by the installer from the manifest, never taken from an upload.
 */
export async function extractZip(
  zipFile: string,
  destDir: string,
  limits: ZipLimits = DEFAULT_ZIP_LIMITS,
): Promise<ExtractResult> {
  const buf = await fs.promises.readFile(zipFile);
  const entries = inspectZip(buf, limits);

  // Loaded by the first ZIP operation: most servers never run one.
  const { default: JSZipLib } = await import('jszip');
  let zip: JSZip;
  try {
    zip = await JSZipLib.loadAsync(buf, {
      createFolders: false,
      checkCRC32: false,
      decodeFileName: decodeName,
    });
  } catch (err) {
    throw corrupt((err as Error).message);
  }
  const jszipNames = Object.keys(zip.files);
  if (jszipNames.length !== entries.length || entries.some((e) => zip.files[e.name] === undefined)) {
    // The names JSZip would write are not the names checked above (a unicode-path extra field).
    throw new ZipRejectedError('unsafe_path', 'ZIP entry names are ambiguous');
  }

  const root = path.resolve(destDir);
  await fs.promises.mkdir(path.dirname(root), { recursive: true });
  await fs.promises.mkdir(root);
  const result: ExtractResult = { files: [], directories: [], totalBytes: 0 };
  const total = { bytes: 0 };
  try {
    for (const entry of entries) {
      const target = path.resolve(root, entry.name);
      // Names were checked already; this is the belt to those braces.
      if (!target.startsWith(root + path.sep)) {
        throw new ZipRejectedError(
          'unsafe_path',
          `ZIP entry escapes its directory: ${entry.name}`,
          entry.name,
        );
      }
      if (entry.isDirectory) {
        await fs.promises.mkdir(target, { recursive: true, mode: 0o755 });
        result.directories.push(entry.name);
        continue;
      }
      await fs.promises.mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
      const object = zip.files[entry.name]!;
      try {
        await pipeline(
          object.nodeStream('nodebuffer') as NodeJS.ReadableStream,
          new EntryMeter(entry, limits, total),
          fs.createWriteStream(target, { flags: 'wx', mode: 0o644 }),
        );
      } catch (err) {
        if (err instanceof ZipRejectedError) throw err;
        throw new ZipRejectedError(
          'corrupt',
          `Corrupt ZIP entry ${entry.name}: ${(err as Error).message}`,
          entry.name,
        );
      }
      result.files.push(entry.name);
    }
  } catch (err) {
    await fs.promises.rm(root, { recursive: true, force: true });
    throw err;
  }
  result.totalBytes = total.bytes;
  return result;
}
