import { createHash, type KeyObject } from 'node:crypto';
import { Readable, Writable, type Transform } from 'node:stream';
import { createDecompressor } from '../../bundle/compression.js';
import { compressionOf, type Manifest, type Payload } from '../../bundle/manifest.js';
import { inlineDigests, threadDigests } from '../../bundle/digests.js';
import type { BundleFrame } from '../../bundle/frame.js';
import { streamBundle, type PayloadPosition } from '../../bundle/stream.js';
import { GantryError } from '../../core/errors.js';
import { writeLent } from '../../core/lending.js';
import { youngGenerationSweeper } from '../../core/young-gc.js';
import type { SlotWriter } from '../../device/slot-writer.js';
import type { GatewayDevice, SlotId } from '../../device/types.js';

/** Where bundle bytes come from: the feed over HTTP (with Range) or an uploaded file on disk. */
export interface BundleSource {
  readonly description: string;
  /** SHA-256 the whole bundle must have (the feed's signed target hash, an upload's checksum). */
  readonly sha256?: string;
  /**
   * The bundle's frame as the feed signed it (target `custom.frame`): with it, the frame and the
   * payloads are checked and the whole-bundle hash is not computed (bundle/frame.ts says why that
   * binds the same bytes).
   */
  readonly frame?: BundleFrame;
  /** The bundle's size in bytes, when known (it picks where the hashing runs). */
  readonly length?: number;
  /** The bundle from byte `offset` to its end. */
  open(offset: number, signal: AbortSignal): Promise<Readable>;
}

/** What a resumed transfer needs to know about the earlier attempt (kept in the job). */
export interface ResumePoint {
  /** Payload bytes durably on the slot. */
  slotBytes: number;
  /** Offset of the payload's data inside the bundle. */
  payloadOffset: number;
  payloadName: string;
}

export interface StreamToSlotOptions {
  device: GatewayDevice;
  slot: SlotId;
  source: BundleSource;
  trustedKeys: KeyObject[];
  hardwareModel: string;
  currentVersion: string | null;
  allowDowngrade: boolean;
  /** Writing the booted slot is only for the in-place strategy. */
  allowBooted?: boolean;
  resume: ResumePoint | null;
  signal: AbortSignal;
  /** Called once the manifest is verified and before the first payload byte is written. */
  onManifest?(manifest: Manifest, payload: Payload): Promise<void> | void;
  /**
   * Where the other payloads of a multi-component bundle (manifest `components`) go: a staging
   * file per payload (services/components/). Without it, or in a bundle without components, a
   * payload other than the one rootfs image is refused as before.
   */
  componentPayloadSink?(payload: Payload, manifest: Manifest): Promise<Writable>;
  /** Called after each fsync with the payload bytes now durable on the slot. */
  onDurable?(point: ResumePoint): void;
  /**
   * Called on every chunk with the payload bytes taken so far (a resume's slot prefix included):
   * what the slow-retrieval check measures.
   */
  onBytes?(bytes: number): void;
  /** A compressed payload: image bytes decoded so far (it reports no durable point, see below). */
  onImageBytes?(bytes: number): void;
  /** Durability cadence: fsync after this many new bytes, or this long since the last one. */
  checkpointBytes?: number;
  checkpointMs?: number;
  /**
   * Bundles of this size and more without a signed frame (each byte hashed twice) are hashed on a
   * worker thread; unknown sizes and framed bundles on this one.
   */
  threadHashingMinBytes?: number;
  now?: () => number;
}

export interface StreamToSlotResult {
  manifest: Manifest;
  payload: Payload;
  sha256: string;
  bytes: number;
}

/**
 * A resumed transfer whose bytes failed their hash. The slot prefix read back or the bytes fetched
 * now are wrong, and the hashes cannot tell which: a caller may start over from byte 0. Still the
 * OTA_INVALID_IMAGE it replaces for a caller that does not.
 */
export class ResumedHashMismatchError extends GantryError {
  constructor(
    readonly mismatch: GantryError,
    /** Payload bytes that came from the slot. */
    readonly prefixBytes: number,
  ) {
    super('OTA_INVALID_IMAGE', mismatch.message, mismatch.details, mismatch);
    this.name = 'ResumedHashMismatchError';
  }
}

/** A payload or bundle hash mismatch: the only OTA_INVALID_IMAGE errors that carry an `actual` hash. */
function isHashMismatch(err: unknown): err is GantryError {
  return (
    err instanceof GantryError &&
    err.gantryCode === 'OTA_INVALID_IMAGE' &&
    typeof err.details?.actual === 'string'
  );
}

/** Reads `n` bytes of a stream then stops (and destroys) it. */
async function* take(stream: Readable, n: number): AsyncGenerator<Buffer> {
  let left = n;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (chunk.length >= left) {
        yield chunk.subarray(0, left);
        left = 0;
        return;
      }
      left -= chunk.length;
      yield chunk;
    }
    if (left > 0) throw new GantryError('OTA_DOWNLOAD_FAILED', 'Bundle ended early while resuming');
  } finally {
    stream.destroy();
  }
}

/**
 * The resumed bundle as the parser must see it: the bundle's head (manifest, signature, payload
 * header) fetched again, the payload prefix read back from the slot (so it is hashed again —
 * whatever the slot holds is what gets verified), then the rest from the server.
 */
function resumedBundle(opts: StreamToSlotOptions, resume: ResumePoint): Readable {
  const { source, device, slot, signal } = opts;
  return Readable.from(
    (async function* () {
      yield* take(await source.open(0, signal), resume.payloadOffset);
      if (resume.slotBytes > 0) {
        yield* device.openSlotReader(slot, { start: 0, end: resume.slotBytes - 1 }) as AsyncIterable<Buffer>;
      }
      yield* (await source.open(resume.payloadOffset + resume.slotBytes, signal)) as AsyncIterable<Buffer>;
    })(),
    { objectMode: false },
  );
}

/**
 * The payload sink: discards the prefix already on the slot, writes the rest at its offset, and
 * fsyncs at a steady cadence so the durable count handed to `onDurable` is always true.
 */
class CheckpointingSink extends Writable {
  private seen = 0;
  private sinceCheckpoint = 0;
  private lastCheckpointAt: number;
  private inFlight: Promise<void> | null = null;

  constructor(
    private readonly writer: SlotWriter,
    private readonly skip: number,
    private readonly every: { bytes: number; ms: number },
    private readonly now: () => number,
    private readonly onDurable: (bytes: number) => void,
  ) {
    // Never more than the one chunk in _write is held (see writeLent): the mark only decides
    // whether write() returns false, and a chunk copied at once should not look like a full sink.
    super({ highWaterMark: 4 * 1024 * 1024 });
    this.lastCheckpointAt = now();
    writer.on('error', (err) => this.destroy(err));
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (error?: Error | null) => void): void {
    let data = chunk;
    if (this.seen < this.skip) {
      const drop = Math.min(this.skip - this.seen, data.length);
      data = data.subarray(drop);
      this.seen += drop;
    }
    if (data.length === 0) return callback();
    this.seen += data.length;
    this.sinceCheckpoint += data.length;
    // Synchronous in the common case (the writer copied the chunk into a block). Otherwise the
    // writer holds it until a block frees, and so do we: the chunk may be lent (see writeLent).
    const releasing = writeLent(this.writer, data);
    this.checkpointIfDue();
    if (!releasing) callback();
    else void releasing.then(() => callback());
  }

  private checkpointIfDue(): void {
    const due =
      this.sinceCheckpoint >= this.every.bytes || this.now() - this.lastCheckpointAt >= this.every.ms;
    // One fsync in flight at a time, never awaited here: the stream keeps writing while the disk
    // syncs; the durable count reported is the one captured before that sync began.
    if (!due || this.inFlight) return;
    this.sinceCheckpoint = 0;
    this.lastCheckpointAt = this.now();
    this.inFlight = this.writer
      .checkpoint()
      .then((bytes) => this.onDurable(bytes))
      .catch((err: Error) => void this.destroy(err))
      .finally(() => {
        this.inFlight = null;
      });
  }

  override _final(callback: (error?: Error | null) => void): void {
    void (this.inFlight ?? Promise.resolve()).then(() =>
      this.writer.end(() => {
        this.onDurable(this.writer.offset);
        callback();
      }),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.writer.destroyed) this.writer.destroy();
    callback(error);
  }
}

/**
 * The sink of a compressed (v2) payload: the stored bytes go through a streaming decoder (memory
 * bounded by the codec's window), the image that comes out is counted, hashed and written to the
 * slot. It finishes only when the image has exactly the signed size and SHA-256; the stored bytes'
 * own hash is checked by the bundle reader before it ends this sink. No resume point: a decoder's
 * state cannot be saved, so an interrupted compressed payload is fetched again from its start.
 */
class DecompressingSink extends Writable {
  private readonly hash = createHash('sha256');
  private produced = 0;
  private decodedAll: Promise<void>;
  /**
   * The decoder allocates a new buffer for every piece of image it outputs (brotli: 256 KiB pieces;
   * fzstd: a block and its copy), about twice the bytes received: dead ones pile up
   * between V8's collections unless one is asked for. Every 1 MiB of image: decoding 256 MiB of a
   * compressible image alone (the launcher's flags), the resident set rose 24.8 -> 13.5 MiB for
   * zstd and 24.5 -> 20.6 for brotli (16 of it brotli's window) against every 4 MiB, the upload's
   * cadence; every 512 KiB or less, the pieces still in flight at two collections are promoted and
   * pile up in the old generation instead (+68 MiB for brotli).
   */
  private readonly sweep = youngGenerationSweeper(1024 * 1024);

  constructor(
    private readonly writer: SlotWriter,
    private readonly decoder: Transform,
    private readonly payload: Payload,
    private readonly onImageBytes: (bytes: number) => void,
  ) {
    super({ highWaterMark: 1024 * 1024 });
    writer.on('error', (err) => this.destroy(err));
    decoder.on('error', (err) => this.destroy(asInvalid(err, payload)));
    decoder.on('data', (chunk: Buffer) => {
      this.produced += chunk.length;
      if (this.produced > payload.size) {
        this.destroy(
          new GantryError(
            'OTA_INVALID_IMAGE',
            `payload ${payload.name} decompresses to more than its signed ${payload.size} bytes`,
            { payload: payload.name },
          ),
        );
        return;
      }
      this.hash.update(chunk);
      this.onImageBytes(this.produced);
      this.sweep(chunk.length);
      if (!writer.write(chunk)) {
        decoder.pause();
        writer.once('drain', () => decoder.resume());
      }
    });
    this.decodedAll = new Promise((resolve) => decoder.once('end', resolve));
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (error?: Error | null) => void): void {
    // The chunk may be lent (see writeLent): the decoder gets a copy, so it can hold on to a tail.
    this.decoder.write(Buffer.from(chunk), (err) => callback(err ? asInvalid(err, this.payload) : null));
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.decoder.end();
    void this.decodedAll.then(() =>
      this.writer.end(() => {
        const digest = this.hash.digest('hex');
        if (this.produced !== this.payload.size || digest !== this.payload.sha256) {
          callback(
            new GantryError(
              'OTA_INVALID_IMAGE',
              `payload ${this.payload.name} does not decompress to its signed image (${this.produced} bytes, expected ${this.payload.size})`,
              { payload: this.payload.name, expected: this.payload.sha256, actual: digest },
            ),
          );
          return;
        }
        callback();
      }),
    );
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.writer.destroyed) this.writer.destroy();
    if (!this.decoder.destroyed) this.decoder.destroy();
    callback(error);
  }
}

function asInvalid(err: Error, payload: Payload): Error {
  if (err instanceof GantryError) return err;
  return new GantryError(
    'OTA_INVALID_IMAGE',
    `payload ${payload.name} does not decompress: ${err.message}`,
    { payload: payload.name },
    err,
  );
}

/**
 * Streams a signed bundle onto a slot: the manifest's signature is checked before a single payload
 * byte is written, the slot is marked invalid before its first byte and the payload is hashed on
 * the way. Marking the slot bootable is the caller's job, after this resolves.
 */
export async function streamImageToSlot(opts: StreamToSlotOptions): Promise<StreamToSlotResult> {
  const now = opts.now ?? Date.now;
  const resume = opts.resume;
  // The bundle is checked against the feed's signed target as it passes (a resumed one too: head +
  // slot prefix + rest are its exact bytes), not only against the manifest: by its signed frame
  // and the payloads' hashes when the feed signed a frame, else by hashing it whole as well.
  // One hash per byte (a signed frame) runs on this thread: measured on 1 GiB downloads, handing
  // the bytes to a hashing thread cost more CPU than the hash itself saved here (1.86 CPU s against
  // 2.4-2.8, with direct slot writes; the copy into shared blocks, the messages, the thread's own
  // ~6 MiB) and was no faster. Two hashes per byte (a feed without frames) still go to a thread
  // for big bundles, started before the request so it boots while the server answers.
  const frame = opts.source.frame;
  const onThread =
    !frame &&
    opts.source.length !== undefined &&
    opts.source.length >= (opts.threadHashingMinBytes ?? Infinity);
  const digests = (onThread ? threadDigests : inlineDigests)({ whole: !frame });
  let input: Readable;
  try {
    input = resume ? resumedBundle(opts, resume) : await opts.source.open(0, opts.signal);
  } catch (err) {
    digests.close();
    throw err;
  }
  let slotPayload: Payload | null = null;
  let manifestSeen = false;
  let payloadOffset = 0;
  const fromSlot = resume?.slotBytes ?? 0;
  const asResumed = (err: unknown): unknown =>
    fromSlot > 0 && isHashMismatch(err) ? new ResumedHashMismatchError(err, fromSlot) : err;

  const result = await streamBundle(input, {
    signal: opts.signal,
    onProgress: opts.onBytes,
    trustedKeys: opts.trustedKeys,
    hardwareModel: opts.hardwareModel,
    currentVersion: opts.currentVersion,
    allowDowngrade: opts.allowDowngrade,
    digests: () => digests, // closed by the reader when it is done
    expectedFrame: frame,
    openPayloadSink: async (payload: Payload, manifest: Manifest, at: PayloadPosition) => {
      if (payload.kind !== 'rootfs' && manifest.components && opts.componentPayloadSink) {
        // Verified manifest, before this payload's first byte: the same refusal point as a rootfs.
        if (!manifestSeen) await opts.onManifest?.(manifest, payload);
        manifestSeen = true;
        return opts.componentPayloadSink(payload, manifest);
      }
      if (payload.kind !== 'rootfs' || slotPayload) {
        throw new GantryError(
          'OTA_INVALID_IMAGE',
          `Bundle payload ${payload.name} (${payload.kind}) is not supported: one rootfs image per bundle`,
        );
      }
      slotPayload = payload;
      const slots = await opts.device.slots();
      if (payload.size > slots[opts.slot].capacityBytes) {
        throw new GantryError(
          'OTA_INSUFFICIENT_SPACE',
          `Image of ${payload.size} bytes does not fit slot ${opts.slot} (${slots[opts.slot].capacityBytes} bytes)`,
        );
      }
      payloadOffset = at.dataOffset;
      const compressed = compressionOf(payload) !== 'none';
      const skip = !compressed && resume && resume.payloadName === payload.name ? resume.slotBytes : 0;
      if (!manifestSeen) await opts.onManifest?.(manifest, payload);
      manifestSeen = true;
      // Invalid before the first byte: a torn write can never be mistaken for a bootable image.
      await opts.device.writeSlotRecord(opts.slot, {
        state: 'invalid',
        version: null,
        kernel: null,
        sha256: null,
        imageBytes: skip,
        installedAt: null,
      });
      const writer = await opts.device.openSlotWriter(opts.slot, {
        offset: skip,
        allowBooted: opts.allowBooted,
      });
      if (compressed) {
        return new DecompressingSink(
          writer,
          createDecompressor(compressionOf(payload), payload.size),
          payload,
          (bytes) => opts.onImageBytes?.(bytes),
        );
      }
      return new CheckpointingSink(
        writer,
        skip,
        { bytes: opts.checkpointBytes ?? 16 * 1024 * 1024, ms: opts.checkpointMs ?? 250 },
        now,
        (bytes) => opts.onDurable?.({ slotBytes: bytes, payloadOffset, payloadName: payload.name }),
      );
    },
  }).catch((err: unknown) => {
    throw asResumed(err);
  });
  if (opts.source.sha256 && !frame) {
    const digest = result.sha256;
    if (digest !== opts.source.sha256) {
      throw asResumed(
        new GantryError(
          'OTA_INVALID_IMAGE',
          `Bundle does not match its signed hash (${opts.source.description})`,
          {
            expected: opts.source.sha256,
            actual: digest,
          },
        ),
      );
    }
  }
  const payload = slotPayload as Payload | null;
  const verified = payload ? result.payloads.find((p) => p.name === payload.name) : undefined;
  if (!payload || !verified) throw new GantryError('OTA_INVALID_IMAGE', 'Bundle holds no rootfs image');
  return { manifest: result.manifest, payload, sha256: verified.sha256, bytes: verified.size };
}

/** Drains a stream into nothing (used to hash-verify an uploaded bundle without a slot). */
export function nullSink(): Writable {
  return new Writable({
    write(_chunk, _enc, cb) {
      cb();
    },
  });
}
