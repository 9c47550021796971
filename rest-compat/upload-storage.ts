import type { Readable } from 'node:stream';
import type { Request } from 'express';
import type { StorageEngine } from 'multer';

/** What the storage engine adds to multer's file object. */
export interface HashedUpload {
  path: string;
  size: number;
  /** Absent when the receiver refused the file before hashing it all (it answers why later). */
  sha256?: string;
}

/** The service side of an upload: where the body's bytes go, and how an unwanted file goes away. */
export interface UploadReceiver {
  /** Streams the file part to disk (hashed, fsynced), resolving once it is all stored. */
  receive(stream: Readable): Promise<{ path: string; size: number; sha256: string | null }>;
  /** Removes a received file multer drops (a limit or an error after the file part). */
  remove(path: string): void;
}

/**
 * A multer storage engine that hands the file part's stream to `receiver` (a service streams it to
 * disk, hashing and possibly verifying it on the way: a 1 GiB image is never held in memory).
 */
export function receivingStorage(receiver: UploadReceiver): StorageEngine {
  return {
    _handleFile(_req: Request, file, cb) {
      receiver.receive(file.stream).then(
        ({ path, size, sha256 }) => {
          const info: HashedUpload = { path, size, ...(sha256 === null ? {} : { sha256 }) };
          cb(null, info as never);
        },
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
