import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

/**
 * The two SHA-256 a bundle download needs: the whole bundle (checked against the feed's signed
 * target hash) and each payload (checked against the signed manifest). Fed once with the bundle's
 * bytes in order; told where a payload starts, it hashes that range out of the same bytes.
 */
export interface BundleDigests {
  /** The bundle's next bytes. */
  update(chunk: Buffer): void;
  /** A payload's bytes are bundle bytes [start, start + size); called before they are passed. */
  beginPayload(start: number, size: number): void;
  /** The digest of the last payload begun, once all its bytes were passed. */
  payloadDigest(): Promise<string>;
  /** The digest of every byte passed, once the bundle ended. */
  bundleDigest(): Promise<string>;
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
  private readonly whole;
  private payload: { hash: ReturnType<typeof createHash>; start: number; end: number } | null = null;
  private payloadHex: string | null = null;

  constructor(private readonly hashFactory: typeof createHash) {
    this.whole = hashFactory('sha256');
  }

  update(chunk: Uint8Array): void {
    this.whole.update(chunk);
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

  bundleDigest(): string {
    return this.whole.digest('hex');
  }
}

/** On the calling thread: for small bundles, where a thread costs more than it saves. */
export function inlineDigests(): BundleDigests {
  const h = new RangeHasher(createHash);
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
/** Blocks at the hashing thread at most before the caller is asked to wait. */
const MAX_BLOCKS_OUT = 8;

type ToWorker =
  | { op: 'data'; block: ArrayBuffer; length: number }
  | { op: 'begin'; start: number; size: number }
  | { op: 'payload'; id: number }
  | { op: 'bundle'; id: number };
type FromWorker = { op: 'free'; block: ArrayBuffer } | { op: 'digest'; id: number; hex: string };

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const RangeHasher = (${RangeHasher.toString()});
const h = new RangeHasher(createHash);
parentPort.on('message', (m) => {
  if (m.op === 'data') {
    h.update(new Uint8Array(m.block, 0, m.length));
    parentPort.postMessage({ op: 'free', block: m.block }, [m.block]);
  } else if (m.op === 'begin') h.beginPayload(m.start, m.size);
  else if (m.op === 'payload') parentPort.postMessage({ op: 'digest', id: m.id, hex: h.payloadDigest() });
  else if (m.op === 'bundle') parentPort.postMessage({ op: 'digest', id: m.id, hex: h.bundleDigest() });
});
`;

/**
 * On a worker thread: the two hashes are most of a download's CPU (SHA-256 of every byte, twice),
 * and the main thread also runs the network, the slot writes and the API. Bytes are copied into
 * 1 MiB blocks that travel to the thread and back (transferred, not cloned) and are reused, so the
 * thread adds no garbage; at most 8 MiB are out at once.
 */
export function threadDigests(): BundleDigests {
  const worker = new Worker(WORKER_SOURCE, { eval: true });
  const spare: ArrayBuffer[] = [];
  let out = 0;
  let current: Buffer | null = null;
  let fill = 0;
  let nextId = 0;
  let failure: Error | null = null;
  const pending = new Map<number, { resolve(hex: string): void; reject(err: Error): void }>();
  let waiting: (() => void) | null = null;

  const fail = (err: Error): void => {
    failure ??= err;
    for (const p of pending.values()) p.reject(failure);
    pending.clear();
    waiting?.();
  };
  worker.on('message', (m: FromWorker) => {
    if (m.op === 'free') {
      out--;
      spare.push(m.block);
      const w = waiting;
      waiting = null;
      w?.();
    } else {
      pending.get(m.id)?.resolve(m.hex);
      pending.delete(m.id);
    }
  });
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`the hashing thread exited (${code})`)));

  const send = (m: ToWorker, transfer: ArrayBuffer[] = []): void => worker.postMessage(m, transfer);
  const flush = (): void => {
    if (!current || fill === 0) return;
    const block = current.buffer as ArrayBuffer;
    send({ op: 'data', block, length: fill }, [block]);
    out++;
    current = null;
    fill = 0;
  };
  const ask = (op: 'payload' | 'bundle'): Promise<string> => {
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
      let at = 0;
      while (at < chunk.length) {
        if (!current) {
          current = Buffer.from(spare.pop() ?? new ArrayBuffer(BLOCK_BYTES));
          fill = 0;
        }
        const n = chunk.copy(current, fill, at);
        fill += n;
        at += n;
        if (fill === BLOCK_BYTES) flush();
      }
    },
    beginPayload(start, size) {
      flush(); // markers and bytes must reach the thread in order
      send({ op: 'begin', start, size });
    },
    payloadDigest: () => ask('payload'),
    bundleDigest: () => ask('bundle'),
    behind() {
      if (failure) return Promise.reject(failure);
      if (out < MAX_BLOCKS_OUT) return undefined;
      return new Promise<void>((resolve) => {
        waiting = resolve;
      });
    },
    close() {
      failure ??= new Error('digests closed');
      void worker.terminate();
    },
  };
}
