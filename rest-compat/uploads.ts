import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import type { Readable } from 'node:stream';
import type { Request } from 'express';
import multer, { type StorageEngine } from 'multer';
import type { UploadTarget } from '../api/meta.js';
import { GantryError } from '../core/errors.js';
import type { GantryDeps } from '../server/deps.js';
import type { GatewayRuntime } from '../services/gateways.js';
import { incomingUploadDir, receiveFile } from '../services/updates/uploads.js';
import type { StoredFile } from './multipart.js';

/** Where an upload route's file goes, and how it becomes the procedure's input. */
export interface UploadSession {
  storage: StorageEngine;
  /** Refuses before a byte of the body is read (it would not fit). */
  admit(declaredBytes: number): Promise<void>;
  /** The procedure's input for the stored file, and how to drop the file if the procedure did not keep it. */
  accept(file: StoredFile): { input: Record<string, unknown>; release(): void };
}

/** The service side of an upload: where the body's bytes go, and how an unwanted file goes away. */
interface UploadReceiver {
  /** Streams the file part to disk (hashed, fsynced), resolving once it is all stored. */
  receive(stream: Readable): Promise<{ path: string; size: number; sha256: string | null }>;
  remove(path: string): void;
}

/**
 * A multer storage engine that hands the file part's stream to `receiver` (a service streams it to
 * disk, hashing and possibly verifying it on the way: a 1 GiB image is never held in memory).
 */
function receivingStorage(receiver: UploadReceiver): StorageEngine {
  return {
    _handleFile(_req: Request, file, cb) {
      receiver.receive(file.stream).then(
        ({ path, size, sha256 }) => cb(null, { path, size, ...(sha256 === null ? {} : { sha256 }) } as never),
        (err: Error) => cb(err),
      );
    },
    _removeFile(_req: Request, file, cb) {
      try {
        receiver.remove(file.path);
        cb(null);
      } catch (err) {
        cb(err as Error);
      }
    },
  };
}

/** A signed bundle bound for the device: it must fit there, and the procedure takes its hash. */
function deviceUpload(deps: GantryDeps, gw: GatewayRuntime, receiver: UploadReceiver): UploadSession {
  return {
    storage: receivingStorage(receiver),
    async admit(declaredBytes) {
      const space = await gw.device.storageSpace();
      if (declaredBytes > space.freeBytes) {
        throw new GantryError(
          'OTA_INSUFFICIENT_SPACE',
          `Upload of ${declaredBytes} bytes does not fit (${space.freeBytes} bytes free)`,
        );
      }
    },
    accept(file) {
      return {
        input: {
          path: file.path,
          originalName: file.originalName,
          size: file.size,
          ...(file.sha256 ? { sha256: file.sha256 } : {}),
        },
        // Whatever the procedure did not keep goes: a kept upload has left the incoming area.
        release() {
          try {
            receiver.remove(file.path);
          } catch (err) {
            deps.logs.warn(gw.id, 'ota', `Removing upload ${file.path} failed: ${String(err)}`);
          }
        },
      };
    },
  };
}

export const uploadTargets: Record<
  UploadTarget,
  (deps: GantryDeps, gw: GatewayRuntime, username: string) => UploadSession
> = {
  /** SECTION 3: written, hashed and verified as a signed bundle in one pass. */
  bundle: (deps, gw) =>
    deviceUpload(deps, gw, {
      receive: (stream) => deps.updates.receiveUpload(gw, stream),
      remove: (file) => deps.updates.discardUpload(gw, file),
    }),

  /** SECTION 5: hashed into the incoming area; the procedure verifies it. */
  'recovery-image': (deps, gw) => {
    const dir = incomingUploadDir(deps.gateways, gw.id);
    return deviceUpload(deps, gw, {
      receive: (stream) => receiveFile(stream, dir),
      remove: (file) => fs.rmSync(file, { force: true }),
    });
  },

  /** ota-zip-updates.md: staged under the data dir for a single-use upload id bound to gateway and user. */
  'zip-archive': (deps, gw, username) => ({
    storage: multer.diskStorage({
      destination: (_req, _file, cb) => {
        const dir = deps.zipOps.uploadDir();
        fs.mkdir(dir, { recursive: true }, (err) => cb(err, dir));
      },
      filename: (_req, _file, cb) => cb(null, `${randomBytes(16).toString('hex')}.upload`),
    }),
    admit: () => Promise.resolve(),
    accept(file) {
      const uploadId = deps.zipOps.registerUpload({
        gatewayId: gw.id,
        username,
        path: file.path,
        originalName: file.originalName,
        size: file.size,
      });
      // A no-op once the operation claimed the file; otherwise the refused upload is deleted.
      return { input: { upload_id: uploadId }, release: () => deps.zipOps.discardUpload(uploadId) };
    },
  }),
};
