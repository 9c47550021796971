/**
 * Where the bytes of a hop delta go (issue 14): builds the delta of --v2 from --v1 with Gantry's
 * publisher (or reads an existing one with --delta), then decodes it and reports, per operation
 * kind, the operations, output bytes, data bytes and those data bytes compressed alone (brotli 11,
 * 16 MiB window), and the largest data-carrying operations with the file they write (debugfs
 * icheck/ncheck on --v2 when it is ext4).
 *
 * With --apply, the delta is then applied by the gateway's own code (createHopPlan on files: the
 * active slot is --v1, the output a temporary file) and the result's SHA-256 checked against --v2,
 * with the time and the process's peak RSS; when --delta names an existing file, only applied (no
 * breakdown), so the RSS is the gateway path's own.
 *
 *   npx tsx bench/hop-breakdown.ts --v1 V1.img --v2 V2.img [--delta OUT.hop] [--keep] [--zstd19 BYTES]
 *     [--apply]
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import zlib from 'node:zlib';
import { createDecompressor, hashFile } from '../bundle/compression.js';
import { LendingFileReader, openFileReadAt } from '../core/lending.js';
import { createHopPlan } from '../delta/hop/apply.js';
import { SlotWriter } from '../device/slot-writer.js';
import { buildHopDelta } from '../delta/hop/build.js';
import {
  carriesSourceDigest,
  decodeOpHeader,
  HOP_MAGIC,
  HopHeaderSchema,
  OP_HEADER_BYTES,
  SOURCE_DIGEST_BYTES,
  type HopHeader,
} from '../delta/hop/format.js';
import type { DeltaOutput } from '../delta/path.js';

const NAMES = ['', 'COPY', 'ZERO', 'NEW', 'PATCH', 'BSDIFF'];

function brotli(b: Buffer): number {
  if (b.length === 0) return 0;
  return zlib.brotliCompressSync(b, {
    params: {
      [zlib.constants.BROTLI_PARAM_QUALITY]: 11,
      [zlib.constants.BROTLI_PARAM_LGWIN]: 24,
      [zlib.constants.BROTLI_PARAM_SIZE_HINT]: b.length,
    },
  }).length;
}

async function decodeBody(file: string): Promise<{ header: HopHeader; body: Buffer; size: number }> {
  const all = fs.readFileSync(file);
  if (!all.subarray(0, HOP_MAGIC.length).equals(HOP_MAGIC)) throw new Error('not a hop delta');
  const len = all.readUInt32BE(HOP_MAGIC.length);
  const header = HopHeaderSchema.parse(JSON.parse(all.subarray(12, 12 + len).toString('utf8')));
  const dec = createDecompressor(header.codec, header.body_bytes);
  const parts: Buffer[] = [];
  dec.on('data', (c: Buffer) => parts.push(Buffer.from(c)));
  const done = new Promise((resolve, reject) => {
    dec.on('end', resolve);
    dec.on('error', reject);
  });
  dec.end(all.subarray(12 + len));
  await done;
  return { header, body: Buffer.concat(parts), size: all.length };
}

function fileAt(image: string, offset: number): string {
  try {
    const block = Math.floor(offset / 4096);
    const ic = execFileSync('debugfs', ['-R', `icheck ${block}`, image], {
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .toString()
      .split('\n')[1];
    const ino = ic?.trim().split(/\s+/)[1];
    if (!ino || !/^\d+$/.test(ino)) return '?';
    const nc = execFileSync('debugfs', ['-R', `ncheck ${ino}`, image], {
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .toString()
      .split('\n')[1];
    return nc?.trim().split(/\s+/).slice(1).join(' ') ?? '?';
  } catch {
    return '?';
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      v1: { type: 'string' },
      v2: { type: 'string' },
      delta: { type: 'string' },
      keep: { type: 'boolean', default: false },
      zstd19: { type: 'string', default: '104485296' },
      top: { type: 'string', default: '25' },
      apply: { type: 'boolean', default: false },
    },
  });
  if (!values.v2 || (!values.v1 && !values.delta)) throw new Error('usage: --v1 IMG --v2 IMG [--delta FILE]');
  let file = values.delta;
  if (!file || !fs.existsSync(file)) {
    file ??= path.join(os.tmpdir(), `hop-breakdown-${process.pid}.hop`);
    const t0 = Date.now();
    const built = await buildHopDelta({ source: values.v1!, target: values.v2, out: file });
    console.log(`built in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${JSON.stringify(built.ops)}`);
  }
  if (values.apply && values.v1 && values.delta && fs.existsSync(values.delta)) {
    // Only the apply, so the peak RSS is the gateway path's own.
    await applyOnFiles(values.v1, values.v2, values.delta);
    return;
  }
  const { header, body, size } = await decodeBody(file);
  const zstd19 = Number(values.zstd19);
  console.log(`delta ${size} bytes = ${((size / zstd19) * 100).toFixed(3)}% of zstd -19 (${zstd19})`);
  const perKind = new Map<number, { ops: number; out: number; data: Buffer[]; dataBytes: number }>();
  const carrying: { kind: number; out: number; at: number; src: number; srcLen: number; data: Buffer }[] = [];
  let at = 0;
  let out = 0;
  while (at < body.length) {
    const op = decodeOpHeader(body.subarray(at, at + OP_HEADER_BYTES));
    at += OP_HEADER_BYTES;
    // PATCH and BSDIFF operations of a delta with source digests carry one after their header.
    if (header.source_digests === true && carriesSourceDigest(op.kind)) at += SOURCE_DIGEST_BYTES;
    const data = body.subarray(at, at + op.dataLen);
    at += op.dataLen;
    const k = perKind.get(op.kind) ?? { ops: 0, out: 0, data: [], dataBytes: 0 };
    k.ops++;
    k.out += op.outLen;
    k.data.push(data);
    k.dataBytes += data.length;
    perKind.set(op.kind, k);
    if (data.length)
      carrying.push({ kind: op.kind, out: op.outLen, at: out, src: op.srcOffset, srcLen: op.srcLen, data });
    out += op.outLen;
  }
  console.log('kind     ops    output_bytes   data_bytes   brotli_alone');
  for (const [kind, k] of [...perKind.entries()].sort((a, b) => a[0] - b[0])) {
    const c = brotli(Buffer.concat(k.data, k.dataBytes));
    console.log(
      `${NAMES[kind]!.padEnd(7)} ${String(k.ops).padStart(5)} ${String(k.out).padStart(15)} ${String(k.dataBytes).padStart(12)} ${String(c).padStart(14)}`,
    );
  }
  carrying.sort((a, b) => b.data.length - a.data.length);
  console.log(`top ${values.top} data-carrying operations (data bytes, brotli alone, output bytes, file):`);
  for (const c of carrying.slice(0, Number(values.top))) {
    const file2 = fs.existsSync(values.v2) ? fileAt(values.v2, c.at) : '?';
    console.log(
      `${NAMES[c.kind]!.padEnd(7)} ${String(c.data.length).padStart(9)} ${String(brotli(c.data)).padStart(9)} ${String(c.out).padStart(9)}  @${c.at} ${file2}`,
    );
  }
  if (values.apply && values.v1) await applyOnFiles(values.v1, values.v2, file);
  if (!values.keep && !values.delta) fs.rmSync(file, { force: true });
}

/** The gateway's hop path on files: --v1 is the active slot, a temporary file the inactive one. */
async function applyOnFiles(v1: string, v2: string, deltaFile: string): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hop-apply-'));
  try {
    const [source, target, delta] = await Promise.all([hashFile(v1), hashFile(v2), hashFile(deltaFile)]);
    const out = path.join(dir, 'slot.img');
    const workDir = path.join(dir, 'work');
    fs.mkdirSync(workDir);
    // The device's own reader and slot writer, so the time and memory are the gateway's.
    const openOutput = async (offset: number): Promise<DeltaOutput> =>
      new SlotWriter(out, offset, offset === 0);
    const t0 = Date.now();
    await createHopPlan({
      source_sha256: source.sha256,
      source_version: 'v1',
      artifact: { target: path.basename(deltaFile), size: delta.size, sha256: delta.sha256 },
    }).apply({
      payload: { name: 'rootfs.img', kind: 'rootfs', size: target.size, sha256: target.sha256 },
      source: {
        ...source,
        read: (s, e) => new LendingFileReader(v1, { start: s, end: e }),
        openReadAt: () => openFileReadAt(v1),
        stateDir: null,
      },
      fetch: { open: async () => fs.createReadStream(deltaFile) },
      openOutput,
      readOutput: (s, e) => new LendingFileReader(out, { start: s, end: e }),
      workDir,
      outputStateDir: null,
      signal: new AbortController().signal,
      onProgress: () => undefined,
    });
    const rss = process.resourceUsage().maxRSS / 1024;
    console.log(
      `applied by the gateway's hop path in ${((Date.now() - t0) / 1000).toFixed(1)} s: the image's SHA-256 matches v2 (peak RSS of this process ${rss.toFixed(0)} MiB)`,
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
