import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import tar from 'tar-stream';
import {
  buildBundle,
  generateKeyPair,
  type GeneratedKeyPair,
  type ManifestFields,
} from '../../bundle/index.js';

export const MODEL = 'Univa-GW-Pro';

export function fields(overrides: Partial<ManifestFields> = {}): ManifestFields {
  return {
    version: 'v5.0.5',
    type: 'security',
    severity: 'critical',
    compatible: [MODEL],
    kernel: '6.1.40-LTS',
    released: '2024-03-01',
    description: 'Security fixes',
    changelog: ['Fix CVE-2024-0001', 'Harden sshd'],
    ...overrides,
  };
}

/** Deterministic pseudo-random bytes, so a tampered byte is never accidentally equal. */
export function bytes(n: number, seed = 1): Buffer {
  const out = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A Writable that keeps what it is given and records how it ended. */
export class BufferSink extends Writable {
  chunks: Buffer[] = [];
  finished = false;
  destroyedWith: Error | null | undefined = undefined;

  constructor() {
    super();
    this.on('finish', () => {
      this.finished = true;
    });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.chunks.push(Buffer.from(chunk)); // a sink keeps copies: chunks may be lent
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.destroyedWith = err;
    cb(err);
  }

  get data(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

export async function collect(build: (out: Writable) => Promise<unknown>): Promise<Buffer> {
  const sink = new BufferSink();
  await build(sink);
  return sink.data;
}

export async function buildBundleBuffer(
  key: GeneratedKeyPair,
  payloads: { name: string; kind: 'rootfs' | 'kernel' | 'app' | 'bootloader'; data: Buffer }[],
  overrides: Partial<ManifestFields> = {},
): Promise<Buffer> {
  return collect((out) =>
    buildBundle({
      manifestFields: fields(overrides),
      payloadFiles: payloads.map((p) => ({
        name: p.name,
        kind: p.kind,
        open: () => Readable.from([p.data]),
      })),
      privateKey: key.privateKey,
      out,
    }),
  );
}

export interface TarItem {
  name: string;
  data: Buffer;
  type?: 'file' | 'symlink' | 'directory';
}

export async function unpack(bundle: Buffer): Promise<TarItem[]> {
  const extract = tar.extract();
  const items: TarItem[] = [];
  const done = (async () => {
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      items.push({ name: entry.header.name, data: Buffer.concat(chunks) });
    }
  })();
  extract.end(bundle);
  await done;
  return items;
}

export async function repack(items: TarItem[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const item of items) {
    if (item.type === 'symlink') pack.entry({ name: item.name, type: 'symlink', linkname: 'rootfs.img' });
    else pack.entry({ name: item.name, type: item.type ?? 'file' }, item.data);
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

export function keys(): GeneratedKeyPair {
  return generateKeyPair();
}
