import { createHash, randomBytes, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Manifest } from '../../bundle/manifest.js';
import { inlineDigests } from '../../bundle/digests.js';
import { checkInstallable, verifyBundle } from '../../bundle/stream.js';
import { GantryError } from '../../core/errors.js';
import { LendingFileReader } from '../../core/lending.js';
import { drained } from '../../core/streams.js';
import { SlotWriter } from '../../device/slot-writer.js';
import { fullCollectionSweeper, releaseAfterOperation, youngGenerationSweeper } from '../../core/young-gc.js';
import type { GatewayRegistry, GatewayRuntime } from '../gateways.js';
import type { VerifiedUpload } from '../job-records.js';
import type { CleanUpOutcome } from '../job-restart.js';
import type { JobStore, StoredJobOf } from '../jobs.js';
import type { LogService } from '../logs.js';

export type { VerifiedUpload } from '../job-records.js';

/** A file streamed into an upload area: where it is, its length and its SHA-256 (hex). */
export interface ReceivedFile {
  path: string;
  size: number;
  sha256: string;
}

/** What verifying a bundle found: its signed manifest, or why it was refused. */
export type UploadVerification = { ok: true; manifest: Manifest } | { ok: false; error: unknown };

/** What a verifier reports of a bundle it read whole: its manifest and the SHA-256 of every byte. */
export interface CheckedBundle {
  manifest: Manifest;
  sha256: string;
}

/** An upload received by {@link UploadStore.receive}: verified while it arrived. */
export interface ReceivedUpload {
  path: string;
  size: number;
  /** SHA-256 of the whole file, from the verifier's pass; null when it was refused (its file removed). */
  sha256: string | null;
  verification: UploadVerification;
}

/** Where upload bodies land while they are received, before they are kept or refused. */
export function incomingUploadDir(gateways: GatewayRegistry, gatewayId: string): string {
  return path.join(gateways.gatewayDir(gatewayId), 'uploads', 'incoming');
}

/** The server's own record of a received upload, waiting for `verify` to consume it. */
interface ReceivedRecord extends ReceivedUpload {
  gatewayId: string;
}

const MiB = 1024 * 1024;
/**
 * An upload's body is Node's: every piece a new Buffer (64 KiB at most), malloc'd one by one. What
 * piles up between two young-generation collections, and what waits in the streams' queues, is
 * what its peak is made of: a collection every 1 MiB of body and 256 KiB queues instead of 4 MiB
 * and 1 MiB took a 1 GiB upload's own peak from 12-16.8 to 9.1-10.8 MiB above its idle, at the same
 * CPU time and speed (`npm run bench -- pipeline`, four interleaved runs each).
 */
const UPLOAD_SWEEP_BYTES = MiB;
/** And a full collection every 128 MiB of body, for the pieces promoted (core/young-gc.ts). */
const UPLOAD_FULL_SWEEP_BYTES = 128 * MiB;
const UPLOAD_QUEUE_BYTES = MiB / 4;

export interface UploadStoreDeps {
  jobs: JobStore;
  logs: LogService;
  gateways: GatewayRegistry;
  clock: () => number;
}

/**
 * SECTION 3's manual uploads: a bundle the REST layer streams through {@link receive} into the
 * gateway's `uploads/incoming` (written, hashed and verified in one pass), then {@link verify}d:
 * kept for deployment and recorded as a completed `upload` job (its artifact names the file), so a
 * deploy can find it by name + checksum.
 */
/**
 * A received upload: where its bytes were kept, what the client called it, and what the receiver
 * measured (sha256 absent when the bytes were not hashed while received).
 */
export interface HashedUploadInput {
  path: string;
  originalName: string;
  size: number;
  sha256: string;
  version?: string | undefined;
}
export type UploadVerifyInput = Omit<HashedUploadInput, 'sha256'> & { sha256?: string | undefined };

export class UploadStore {
  /** Outcomes of {@link receive}, by `.part` path, until `verify` consumes them or `discard`. */
  private readonly received = new Map<string, ReceivedRecord>();

  constructor(private readonly deps: UploadStoreDeps) {}

  dir(gw: GatewayRuntime): string {
    return path.join(this.deps.gateways.gatewayDir(gw.id), 'uploads');
  }

  incomingDir(gw: GatewayRuntime): string {
    return incomingUploadDir(this.deps.gateways, gw.id);
  }

  /**
   * Receives an upload body for `gw`: writes it to a new `.part` file in the incoming area (fsynced)
   * and verifies it as a signed bundle on the way (manifest signature against `trustedKeys`, tar
   * structure, each payload's size and SHA-256; the verifier also hashes every byte: the file's
   * SHA-256), so `verify` need not read the file back. The outcome is kept server-side under the
   * file's path; a refused upload resolves too (with its error, its file already removed) so the
   * body is drained and the route answers the refusal through `verify` (audited like any other).
   * Rejects only when the body or the disk failed (its partial file removed).
   */
  async receive(gw: GatewayRuntime, source: Readable, trustedKeys: KeyObject[]): Promise<ReceivedUpload> {
    // Both SHA-256 on this thread, between the body's chunks: a hashing thread cost more CPU and
    // memory than it saved (services/updates/transfer.ts threadHashingMinBytes).
    const upload = await receiveFile(source, this.incomingDir(gw), (bytes) =>
      verifyBundle(bytes, { trustedKeys, digests: inlineDigests }),
    );
    this.received.set(upload.path, { ...upload, gatewayId: gw.id });
    return upload;
  }

  /**
   * Removes a received upload and its record unless `verify` took it (the REST route calls this
   * once its request is over: multer dropped the file, the procedure's input was refused, the
   * client went away); a verified upload has left the incoming area, so this is then a no-op.
   */
  discard(gw: GatewayRuntime, filePath: string): void {
    const file = path.resolve(filePath);
    if (path.dirname(file) !== this.incomingDir(gw) || !file.endsWith('.part')) return;
    this.received.delete(file);
    fs.rmSync(file, { force: true });
  }

  async verify(gw: GatewayRuntime, input: UploadVerifyInput, trustedKeys: KeyObject[]) {
    const file = path.resolve(input.path);
    const record = this.received.get(file);
    // The path comes from our own upload handler; refuse anything else (a client may call tRPC directly).
    if (
      path.dirname(file) !== this.incomingDir(gw) ||
      !file.endsWith('.part') ||
      (record?.gatewayId ?? gw.id) !== gw.id ||
      !(record || fs.existsSync(file))
    ) {
      throw new GantryError('VALIDATION_ERROR', 'Invalid request: path: not an upload of this gateway');
    }
    this.received.delete(file);
    try {
      // The size and hash are the server's own (recorded while received, or read now); the
      // caller's, when given, must agree with them.
      let manifest: Manifest;
      let size: number;
      let sha256: string;
      if (record) {
        // Verified while it was received: the recorded outcome, never anything the caller says.
        if (!record.verification.ok) throw record.verification.error;
        if (!fs.existsSync(file)) {
          throw new GantryError('VALIDATION_ERROR', 'Invalid request: path: the upload is gone');
        }
        manifest = record.verification.manifest;
        size = record.size;
        sha256 = record.sha256!; // set whenever the verification passed
      } else {
        // No record (a file this process did not receive): verify it by reading it.
        size = fs.statSync(file).size;
        ({ manifest, sha256 } = await verifyBundle(new LendingFileReader(file), {
          trustedKeys,
        }));
      }
      if (input.size !== size || (input.sha256 !== undefined && input.sha256 !== sha256)) {
        throw new GantryError(
          'VALIDATION_ERROR',
          'Invalid request: size and sha256 must be those of the received upload',
        );
      }
      let hardware: 'compatible' | 'incompatible' = 'compatible';
      try {
        checkInstallable(manifest, { hardwareModel: gw.row().model, currentVersion: null });
      } catch {
        hardware = 'incompatible';
      }
      const stored = path.join(this.dir(gw), `${sha256}.bundle`);
      fs.renameSync(file, stored);
      const label = input.version ?? manifest.version;
      const upload: VerifiedUpload = {
        path: stored,
        name: input.originalName,
        size,
        sha256,
        manifest,
        label,
      };
      this.deps.jobs.create({
        id: `UPLOAD-${sha256.slice(0, 12)}-${this.deps.clock()}`,
        gatewayId: gw.id,
        kind: 'upload',
        state: 'complete',
        request: { name: input.originalName, version: input.version ?? null },
        artifact: upload,
      });
      this.deps.logs.info(
        gw.id,
        'ota',
        `Uploaded image ${input.originalName} (${manifest.version}) verified`,
      );
      return {
        verified: true as const,
        file: {
          name: input.originalName,
          sizeBytes: size,
          checksum: `sha256:${sha256}`,
          version: label,
        },
        metadata: { kernel: manifest.kernel, signature: 'verified' as const },
        compatibility: { hardware },
      };
    } catch (err) {
      fs.rmSync(file, { force: true });
      this.deps.logs.warn(
        gw.id,
        'ota',
        `Uploaded image ${input.originalName} refused: ${(err as Error).message}`,
      );
      throw err;
    }
  }

  /** The newest verified upload with this name and checksum ("sha256:…" or bare hex). */
  find(gw: GatewayRuntime, filename: string, checksum: string): VerifiedUpload {
    const sha256 = checksum.toLowerCase().replace(/^sha256:/, '');
    const upload = this.deps.jobs
      .list(gw.id, 'upload')
      .map((job) => job.artifact)
      .find((a) => a?.name === filename && a.sha256 === sha256);
    if (!upload || !fs.existsSync(upload.path)) {
      throw new GantryError(
        'NOT_FOUND',
        `No verified upload ${filename} with checksum sha256:${sha256}; verify it first`,
      );
    }
    return upload;
  }
}

/**
 * The `clean-up` restart policy of upload records (services/job-restart.ts). An upload's job is
 * recorded complete in the step that keeps its file, so none is ever left unfinished; one found so
 * is failed, and its file goes to the start-up sweep unless another record names it.
 */
export function uploadAfterRestart(job: StoredJobOf<'upload'>): CleanUpOutcome<'upload'> {
  return {
    state: 'error',
    failure: { code: 'INTERNAL_ERROR', message: `Upload ${job.id} was not recorded whole before a restart` },
  };
}

/**
 * Streams `source` into a new `upload-….part` file under `dir`, fsyncing it before resolving;
 * nothing is held in memory beyond the streams' buffers. Without `check`, every byte is hashed
 * (SHA-256) on the way. With `check`, the same chunks also go through a PassThrough to `check`
 * (the bundle verifier, which hashes every byte itself: hashing them here too would be a third
 * SHA-256 pass over a 1 GiB upload on the event loop), with backpressure from both the file and
 * the verifier, and the result carries its outcome and its hash.
 *
 * Once `check` has failed, nothing more is written: the file is closed and removed, and the rest of
 * the body is only counted as it is drained (multer answers only after the whole request body was
 * read, and storing or hashing bytes already known to be refused would only cost disk and time: a
 * refused upload has no SHA-256). Rejects, with the partial file removed, when the source or the
 * disk fails.
 */
export async function receiveFile(source: Readable, dir: string): Promise<ReceivedFile>;
export async function receiveFile(
  source: Readable,
  dir: string,
  check: (bytes: Readable) => Promise<CheckedBundle>,
): Promise<ReceivedUpload>;
export async function receiveFile(
  source: Readable,
  dir: string,
  check?: (bytes: Readable) => Promise<CheckedBundle>,
): Promise<ReceivedFile | ReceivedUpload> {
  fs.mkdirSync(dir, { recursive: true });
  const filePath = path.join(dir, `upload-${Date.now()}-${randomBytes(6).toString('hex')}.part`);
  // The slot writer's direct I/O: a 1 GiB upload copied into the page cache cost ~1.8 CPU s in
  // the kernel; it is read once more, by a deploy (device/slot-writer.ts). It fsyncs before 'finish'.
  const out = new SlotWriter(filePath, 0, true);
  let outError: unknown;
  out.on('error', (err) => (outError ??= err));
  const outClosed = closed(out);
  const hash = check ? null : createHash('sha256');
  let size = 0;

  let refused = false;
  const tap = check ? new PassThrough({ highWaterMark: UPLOAD_QUEUE_BYTES }) : null;
  const checked: Promise<{ verification: UploadVerification; sha256: string | null }> | undefined =
    tap && check
      ? check(tap).then(
          ({ manifest, sha256 }) => ({ verification: { ok: true as const, manifest }, sha256 }),
          (error: unknown) => {
            refused = true;
            out.destroy(); // stop writing: the file is removed once the body is drained
            return { verification: { ok: false as const, error }, sha256: null };
          },
        )
      : undefined;

  const sweepYoung = youngGenerationSweeper(UPLOAD_SWEEP_BYTES);
  const sweepPromoted = fullCollectionSweeper(UPLOAD_FULL_SWEEP_BYTES);
  const sink = new Writable({
    highWaterMark: UPLOAD_QUEUE_BYTES,
    write(chunk: Buffer, _enc, cb) {
      size += chunk.length;
      sweepYoung(chunk.length);
      sweepPromoted(chunk.length);
      if (refused) return cb();
      if (outError !== undefined) return cb(outError as Error);
      hash?.update(chunk);
      const waits: Promise<void>[] = [];
      if (!out.write(chunk)) waits.push(drained(out));
      if (tap && !tap.destroyed && !tap.write(chunk)) waits.push(drained(tap));
      if (waits.length === 0) return cb();
      // drained() never rejects (it settles on 'drain' or 'close'), so cb is always called.
      void Promise.all(waits).then(() => cb(refused ? undefined : (outError as Error | undefined)));
    },
    final(cb) {
      if (tap && !tap.destroyed) tap.end();
      if (!refused) out.end();
      // The file is closed (fsynced: `flush`) and the verifier has seen the end before we resolve.
      Promise.all([outClosed, checked]).then(() => {
        cb(refused ? undefined : (outError as Error | undefined));
      }, cb);
    },
  });

  try {
    await pipeline(source, sink);
  } catch (err) {
    tap?.destroy();
    out.destroy();
    await Promise.all([outClosed, checked]);
    fs.rmSync(filePath, { force: true });
    throw err;
  } finally {
    releaseAfterOperation();
  }
  if (!checked) return { path: filePath, size, sha256: hash!.digest('hex') };
  const { verification, sha256 } = await checked;
  if (!verification.ok) {
    await outClosed;
    fs.rmSync(filePath, { force: true });
  }
  return { path: filePath, size, sha256, verification };
}

/** Resolves once the file stream closed (its fds are closed: after its fsync), however. */
function closed(stream: Writable): Promise<void> {
  return new Promise((resolve) => {
    if (stream.closed) resolve();
    else stream.once('close', () => resolve());
  });
}
