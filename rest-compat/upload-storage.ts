import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Request } from 'express';
import type { StorageEngine } from 'multer';

/** What the hashing storage adds to multer's file object. */
export interface HashedUpload {
  path: string;
  size: number;
  sha256: string;
}

/**
 * A multer storage engine that streams the upload to a file under `dir` and hashes it on the way,
 * so a 1 GiB image is never held in memory and never read twice. The file is fsynced before the
 * handler sees it.
 */
export function hashingDiskStorage(dir: () => string): StorageEngine {
  return {
    _handleFile(_req: Request, file, cb) {
      const target = dir();
      fs.mkdirSync(target, { recursive: true });
      const filePath = path.join(target, `upload-${Date.now()}-${randomBytes(6).toString('hex')}.part`);
      const hash = createHash('sha256');
      let size = 0;
      const hasher = new Transform({
        transform(chunk: Buffer, _enc, done) {
          hash.update(chunk);
          size += chunk.length;
          done(null, chunk);
        },
      });
      const out = fs.createWriteStream(filePath, { flush: true, highWaterMark: 1024 * 1024 });
      pipeline(file.stream, hasher, out).then(
        () => cb(null, { path: filePath, size, sha256: hash.digest('hex') } as HashedUpload as never),
        (err: Error) => {
          fs.rm(filePath, { force: true }, () => cb(err));
        },
      );
    },
    _removeFile(_req: Request, file, cb) {
      fs.rm(file.path, { force: true }, (err) => cb(err));
    },
  };
}
