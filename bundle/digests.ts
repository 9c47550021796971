import { createHash } from 'node:crypto';

/**
 * The SHA-256 a bundle download needs: each payload (checked against the signed manifest) and,
 * unless the feed signed the bundle's frame (bundle/frame.ts), the whole bundle (checked against
 * the feed's signed target hash). Fed once with the bundle's bytes in order; told where a payload
 * starts, it hashes that range out of the same bytes.
 */
export interface BundleDigests {
  /** The bundle's next bytes. */
  update(chunk: Buffer): void;
  /** A payload's bytes are bundle bytes [start, start + size); called before they are passed. */
  beginPayload(start: number, size: number): void;
  /** The digest of the last payload begun, once all its bytes were passed. */
  payloadDigest(): Promise<string>;
  /** The digest of every byte passed, once the bundle ended; null when made without it. */
  bundleDigest(): Promise<string | null>;
  /** A promise while the hasher is behind (the caller should wait before passing more). */
  behind(): Promise<void> | undefined;
  /** Frees what the hasher holds (its thread). */
  close(): void;
}

/**
 * The hashing itself, shared by both implementations: this class is also sent as source code to
 * the worker thread, so it must not use anything from its module scope (`hashFactory` is given).
 */
class RangeHasher {
  private position = 0;
  private readonly whole: ReturnType<typeof createHash> | null;
  private payload: { hash: ReturnType<typeof createHash>; start: number; end: number } | null = null;
  private payloadHex: string | null = null;

  constructor(
    private readonly hashFactory: typeof createHash,
    whole: boolean,
  ) {
    this.whole = whole ? hashFactory('sha256') : null;
  }

  update(chunk: Uint8Array): void {
    this.whole?.update(chunk);
    const p = this.payload;
    if (p) {
      const from = Math.max(p.start - this.position, 0);
      const to = Math.min(p.end - this.position, chunk.length);
      if (to > from) p.hash.update(chunk.subarray(from, to));
    }
    this.position += chunk.length;
  }

  beginPayload(start: number, size: number): void {
    this.payload = { hash: this.hashFactory('sha256'), start, end: start + size };
    this.payloadHex = null;
  }

  payloadDigest(): string {
    if (this.payloadHex === null) {
      this.payloadHex = this.payload ? this.payload.hash.digest('hex') : '';
      this.payload = null;
    }
    return this.payloadHex;
  }

  bundleDigest(): string | null {
    return this.whole ? this.whole.digest('hex') : null;
  }
}

/** What a download hashes besides its payloads. */
export interface DigestsOptions {
  /**
   * The whole bundle's SHA-256 (default). Skipped only when the feed signed the bundle's frame,
   * whose hash with the payloads' binds the same bytes (bundle/frame.ts).
   */
  whole?: boolean;
}

/** On the calling thread: for small bundles, where a thread costs more than it saves. */
export function inlineDigests(opts: DigestsOptions = {}): BundleDigests {
  const h = new RangeHasher(createHash, opts.whole ?? true);
  return {
    update: (chunk) => h.update(chunk),
    beginPayload: (start, size) => h.beginPayload(start, size),
    payloadDigest: async () => h.payloadDigest(),
    bundleDigest: async () => h.bundleDigest(),
    behind: () => undefined,
    close: () => undefined,
  };
}

/** Bytes copied per message to the hashing thread. */
const BLOCK_BYTES = 1024 * 1024;
/**
 * Blocks shared with the hashing thread: at most this many are out before the caller waits. Four
 * keep the thread busy (1 GiB downloads: as fast as eight, 4 MiB less resident; three were slower).
 */
const BLOCKS = 4;

type ToWorker =
  | { op: 'data'; index: number; length: number }
  | { op: 'add'; block: SharedArrayBuffer }
  | { op: 'begin'; start: number; size: number }
  | { op: 'payload'; id: number }
  | { op: 'bundle'; id: number };
type FromWorker = { op: 'free'; index: number } | { op: 'digest'; id: number; hex: string | null };

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
// esbuild with keepNames (tsx) wraps classes in its __name helper, which the source text names.
const __name = (target) => target;
const RangeHasher = (${RangeHasher.toString()});
const h = new RangeHasher(createHash, workerData.whole);
const blocks = workerData.blocks.map((b) => new Uint8Array(b));
parentPort.on('message', (m) => {
  if (m.op === 'data') {
    h.update(blocks[m.index].subarray(0, m.length));
    parentPort.postMessage({ op: 'free', index: m.index });
  } else if (m.op === 'add') blocks.push(new Uint8Array(m.block));
  else if (m.op === 'begin') h.beginPayload(m.start, m.size);
  else if (m.op === 'payload') parentPort.postMessage({ op: 'digest', id: m.id, hex: h.payloadDigest() });
  else if (m.op === 'bundle') parentPort.postMessage({ op: 'digest', id: m.id, hex: h.bundleDigest() });
});
`;

/**
 * On a worker thread: the hashes are most of a download's CPU (SHA-256 of every byte, twice without a signed frame),
 * and the main thread also runs the network, the slot writes and the API. Bytes are copied into
 * eight 1 MiB blocks of shared memory, handed to the thread by index and back, so nothing is
 * cloned, transferred or left for the GC; at most 8 MiB are out at once.
 */
export function threadDigests(opts: DigestsOptions = {}): BundleDigests {
  const shared = Array.from({ length: BLOCKS }, () => new SharedArrayBuffer(BLOCK_BYTES));
  // Loaded on first use (process.getBuiltinModule): only a large hop delta's image hash takes a
  // thread, and worker_threads is ~0.3 MiB resident (issue 16).
  const { Worker } = process.getBuiltinModule('node:worker_threads');
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { blocks: shared, whole: opts.whole ?? true },
  });
  const views = shared.map((b) => Buffer.from(b));
  const spare = views.map((_, i) => i).reverse();
  let current = -1;
  let fill = 0;
  let nextId = 0;
  let failure: Error | null = null;
  const pending = new Map<number, { resolve(hex: string | null): void; reject(err: Error): void }>();
  let waiting: (() => void)[] = [];
  const wake = (): void => {
    const woken = waiting;
    waiting = [];
    for (const w of woken) w();
  };

  const fail = (err: Error): void => {
    failure ??= err;
    for (const p of pending.values()) p.reject(failure);
    pending.clear();
    wake(); // a waiter then finds `failure` at its next behind()
  };
  worker.on('message', (m: FromWorker) => {
    if (m.op === 'free') {
      spare.push(m.index);
      wake();
    } else {
      pending.get(m.id)?.resolve(m.hex);
      pending.delete(m.id);
    }
  });
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`the hashing thread exited (${code})`)));

  const send = (m: ToWorker): void => worker.postMessage(m);
  const flush = (): void => {
    if (current < 0 || fill === 0) return;
    send({ op: 'data', index: current, length: fill });
    current = -1;
    fill = 0;
  };
  const ask = (op: 'payload' | 'bundle'): Promise<string | null> => {
    if (failure) return Promise.reject(failure);
    flush();
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      send({ op, id });
    });
  };

  return {
    update(chunk) {
      if (failure) return; // the digests reject; nothing more to hash
      let at = 0;
      while (at < chunk.length) {
        if (current < 0) {
          let free = spare.pop();
          if (free === undefined) {
            // A chunk larger than behind() leaves room for: grow the pool, never overwrite a block out.
            const block = new SharedArrayBuffer(BLOCK_BYTES);
            send({ op: 'add', block });
            free = views.push(Buffer.from(block)) - 1;
          }
          current = free;
          fill = 0;
        }
        const n = chunk.copy(views[current]!, fill, at);
        fill += n;
        at += n;
        if (fill === BLOCK_BYTES) flush();
      }
    },
    beginPayload(start, size) {
      flush(); // markers and bytes must reach the thread in order
      send({ op: 'begin', start, size });
    },
    payloadDigest: async () => (await ask('payload')) ?? '',
    bundleDigest: () => ask('bundle'),
    behind() {
      if (failure) return Promise.reject(failure);
      // Room for the largest chunk a caller passes at once (a network read, a 1 MiB file read).
      if (spare.length >= 2) return undefined;
      return new Promise<void>((resolve) => waiting.push(resolve));
    },
    close() {
      failure ??= new Error('digests closed');
      void worker.terminate();
    },
  };
}
