import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import type { Request, Response } from 'express';
import multer, { type StorageEngine } from 'multer';
import { findGantryError, GantryError } from '../core/errors.js';

/**
 * The one multipart reader of the REST layer (manual upload, recovery image, both ZIP uploads):
 * multer over busboy, one file part streamed into a storage engine, every failure mapped here.
 */

/** A file part as the storage engine left it on disk. */
export interface StoredFile {
  path: string;
  size: number;
  originalName: string;
  /** Present when the engine hashed the file it kept. */
  sha256?: string;
}

export interface MultipartForm {
  file: StoredFile;
  /** The text fields, by name (a repeated name keeps its last value). */
  fields: Record<string, string>;
}

/** The client went away mid-body: nobody is left to answer, and nothing is wrong with the server. */
export class ClientGone extends Error {
  constructor() {
    super('The client closed the connection mid-body');
  }
}

/** What the limits allow beyond the file: a form of a few short fields. */
const FORM_LIMITS = { fields: 16, parts: 32, fieldSize: 64 * 1024, headerPairs: 200 } as const;

/** The busboy instance multer hands to `streamHandler` (busboy has no bundled types). */
interface BusboyLike extends NodeJS.WritableStream {
  on(event: 'file', listener: (name: string, stream: Readable, info: { filename?: string }) => void): this;
  on(event: 'field', listener: (name: string, value: string) => void): this;
}

/** multer 2.5's `streamHandler` option, which @types/multer does not know yet. */
type MulterOptionsWithStreamHandler = multer.Options & {
  streamHandler: (req: IncomingMessage, busboy: BusboyLike) => void;
};

/** "64 MiB" for whole mebibytes, else the exact byte count. */
export function describeLimit(bytes: number): string {
  const MiB = 1024 * 1024;
  return bytes % MiB === 0 ? `${bytes / MiB} MiB` : `${bytes} bytes`;
}

/**
 * Reads a multipart/form-data body whose file is the one part named `field`, streaming it into
 * `storage` (at most `maxFileBytes`). Rejects with the GantryError a client should get (the 400s
 * "No file provided" and "No file selected" of ota-zip-updates.md, 413, or the malformed form), with
 * {@link ClientGone}, or with the storage's own failure (a server error, such as a full disk).
 */
export function readMultipart(
  req: Request,
  res: Response,
  opts: { field: string; maxFileBytes: number; storage: StorageEngine },
): Promise<MultipartForm> {
  // multer 2 drops a file part whose filename is empty before any hook of its own sees it, so
  // "No file selected" (a browser's file input with nothing chosen) can only be told from "No file
  // provided" by listening to busboy itself.
  let emptyFilename = false;
  let fieldValue: string | undefined;
  const options: MulterOptionsWithStreamHandler = {
    storage: opts.storage,
    limits: { ...FORM_LIMITS, fileSize: opts.maxFileBytes },
    streamHandler: (request, busboy) => {
      busboy.on('file', (name, _stream, info) => {
        if (name === opts.field && !info.filename) emptyFilename = true;
      });
      // busboy's view of `filename=""` without a file content type: a plain field.
      busboy.on('field', (name, value) => {
        if (name === opts.field) fieldValue = value;
      });
      request.pipe(busboy);
    },
  };
  const upload = multer(options).single(opts.field);
  return new Promise((resolve, reject) => {
    upload(req, res, (err: unknown) => {
      if (err) return reject(multipartError(err, opts));
      const file = req.file as (Express.Multer.File & { sha256?: string }) | undefined;
      if (!file) {
        const selectedNothing = emptyFilename || fieldValue === '';
        return reject(
          new GantryError('VALIDATION_ERROR', selectedNothing ? 'No file selected' : 'No file provided'),
        );
      }
      const fields: Record<string, string> = {};
      for (const [name, value] of Object.entries((req.body ?? {}) as Record<string, unknown>)) {
        if (typeof value === 'string') fields[name] = value;
      }
      resolve({
        file: {
          path: file.path,
          size: file.size,
          originalName: file.originalname,
          ...(file.sha256 ? { sha256: file.sha256 } : {}),
        },
        fields,
      });
    });
  });
}

/** The one mapping from what multer, busboy or the storage threw to what the client is told. */
export function multipartError(err: unknown, opts: { field: string; maxFileBytes: number }): unknown {
  if (findGantryError(err)) return err;
  if (err instanceof multer.MulterError) {
    switch (err.code) {
      case 'LIMIT_FILE_SIZE':
        return new GantryError(
          'PAYLOAD_TOO_LARGE',
          `File too large: at most ${describeLimit(opts.maxFileBytes)}`,
        );
      case 'LIMIT_UNEXPECTED_FILE':
        return new GantryError(
          'VALIDATION_ERROR',
          err.field === opts.field ? `Only one file may be sent in ${opts.field}` : 'No file provided',
        );
      default:
        return new GantryError('VALIDATION_ERROR', `Invalid multipart body: ${err.message}`);
    }
  }
  if (err instanceof Error) {
    // multer's own words when the request ended before the body did.
    if (err.message === 'Request aborted' || err.message === 'Request closed') return new ClientGone();
    // A system error (ENOSPC, EACCES…) is the server's; busboy's parse errors carry no code.
    if (typeof (err as NodeJS.ErrnoException).code === 'string') return err;
    return new GantryError('VALIDATION_ERROR', `Invalid multipart body: ${err.message}`);
  }
  return err;
}
