import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { DeltaRef } from '../../bundle/manifest.js';
import { consumeChunks } from '../../core/lending.js';
import type { DeltaContext } from '../path.js';
import { HOP_MAGIC, HopHeaderSchema, MAX_HEADER_BYTES, type HopHeader } from './format.js';
import { invalid } from './verify.js';

/** While the delta downloads, progress is reported every this many bytes. */
const PROGRESS_BYTES = 16 * 1024;

/** Exactly-n-bytes reads over a stream (the decoded delta body). */
export class ByteReader {
  private readonly iterator: AsyncIterator<Buffer>;
  private pending: Buffer[] = [];
  private buffered = 0;

  constructor(stream: Readable) {
    this.iterator = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  async read(n: number): Promise<Buffer> {
    while (this.buffered < n) {
      const next = await this.iterator.next();
      if (next.done) throw invalid('the hop delta ends in the middle of an operation');
      this.pending.push(next.value);
      this.buffered += next.value.length;
    }
    const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.buffered);
    const result = all.subarray(0, n);
    const rest = all.subarray(n);
    this.pending = rest.length ? [rest] : [];
    this.buffered = rest.length;
    return result;
  }
}

export function readHeader(file: string): { header: HopHeader; bodyStart: number } {
  const fd = fs.openSync(file, 'r');
  try {
    const head = Buffer.alloc(HOP_MAGIC.length + 4);
    fs.readSync(fd, head, 0, head.length, 0);
    if (!head.subarray(0, HOP_MAGIC.length).equals(HOP_MAGIC)) throw invalid('not a hop delta (bad magic)');
    const len = head.readUInt32BE(HOP_MAGIC.length);
    if (len > MAX_HEADER_BYTES) throw invalid('hop delta header too large');
    const json = Buffer.alloc(len);
    fs.readSync(fd, json, 0, len, head.length);
    let parsed: unknown;
    try {
      parsed = JSON.parse(json.toString('utf8'));
    } catch {
      throw invalid('hop delta header is not JSON');
    }
    const header = HopHeaderSchema.safeParse(parsed);
    if (!header.success) throw invalid(`hop delta header is invalid: ${header.error.message}`);
    return { header: header.data, bodyStart: head.length + len };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The delta into the work directory, verified against the length and SHA-256 the manifest signed
 * before any operation runs (a tampered delta never writes a byte). An interrupted download goes on
 * from what the file holds with one ranged GET; the whole file is hashed again at the end either way.
 */
export async function downloadDelta(
  ref: DeltaRef,
  ctx: DeltaContext,
): Promise<{ file: string; wireBytes: number }> {
  const { artifact } = ref;
  const file = path.join(ctx.workDir, `${artifact.sha256}.hop`);
  const partial = `${file}.partial`;
  let wireBytes = 0;
  if (!fs.existsSync(file)) {
    let have = fs.existsSync(partial) ? fs.statSync(partial).size : 0;
    if (have > artifact.size) {
      fs.rmSync(partial);
      have = 0;
    }
    if (have < artifact.size) {
      const stream = await ctx.fetch.open(
        artifact,
        have > 0 ? { start: have, end: artifact.size } : null,
        ctx.signal,
      );
      const fd = fs.openSync(partial, have > 0 ? 'r+' : 'w');
      try {
        let at = have;
        let reported = 0;
        await consumeChunks(stream, (chunk) => {
          fs.writeSync(fd, chunk, 0, chunk.length, at);
          at += chunk.length;
          wireBytes += chunk.length;
          if (wireBytes - reported >= PROGRESS_BYTES) {
            reported = wireBytes;
            ctx.onProgress({ outputBytes: 0, wireBytes });
          }
          return undefined;
        });
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
    const got = await hashFileOf(partial);
    if (got.size !== artifact.size || got.sha256 !== artifact.sha256) {
      fs.rmSync(partial, { force: true });
      throw invalid(`hop delta ${artifact.target} does not match its signed length and SHA-256`, {
        expected: artifact.sha256,
        actual: got.sha256,
      });
    }
    fs.renameSync(partial, file);
  } else {
    const got = await hashFileOf(file);
    if (got.size !== artifact.size || got.sha256 !== artifact.sha256) {
      fs.rmSync(file, { force: true });
      throw invalid(`the downloaded hop delta ${artifact.target} changed on disk`);
    }
  }
  ctx.onProgress({ outputBytes: 0, wireBytes });
  return { file, wireBytes };
}

async function hashFileOf(file: string): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  await consumeChunks(fs.createReadStream(file), (chunk) => {
    hash.update(chunk);
    size += chunk.length;
    return undefined;
  });
  return { size, sha256: hash.digest('hex') };
}
