import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import type { IRouter, Request, Response } from 'express';
import multer from 'multer';
import { createContextInner } from '../../api/context.js';
import { createCaller } from '../../api/routers/_app.js';
import { z } from 'zod';
import {
  zipErrorSchema,
  zipProgressOutputSchema,
  zipStartOutputSchema,
  type ZipProgressOutput,
} from '../../api/schemas/zip.js';
import { findGantryError, GantryError } from '../../core/errors.js';
import type { ZipOperationKind } from '../../machines/zip-operation.js';
import type { GantryDeps } from '../../server/deps.js';
import { toErrorResponse } from '../errors.js';
import { restMeta } from '../route.js';

/**
 * The routes of ota-zip-updates.md: POST /ota-configure, POST /ota-update (multipart, field
 * `ota_zip_file`) and GET /ota-update-progress/<update_id>. They answer in that spec's own shapes,
 * not the `{data, success, message}` envelope; a refusal is `{success: false, message, error}` with
 * `error` the Gantry error code and the HTTP status of the core mapping.
 *
 * Order of a POST: auth, gateway, role and the one-operation lock are checked before the body is
 * read (nobody streams 64 MiB to learn they are not an admin); then the upload streams to disk;
 * then the `start` procedure judges the file and starts the operation.
 */

export const ZIP_FIELD = 'ota_zip_file';
export const MAX_ZIP_UPLOAD_BYTES = 64 * 1024 * 1024;

interface ZipErrorBody {
  success: false;
  message: string;
  error: string;
}

function sendZipError(res: Response, err: unknown, where: string): void {
  const { status, body, internal } = toErrorResponse(err);
  if (internal) console.error(`[gantry] ${where}:`, err);
  if (res.headersSent) return;
  const out: ZipErrorBody = { success: false, message: body.message, error: body.error.code };
  res.status(status).json(out);
}

/** What busboy saw of the `ota_zip_file` part, which multer does not tell. */
interface PartNotes {
  /** A file part with an empty filename: a browser's file input with nothing chosen. */
  emptyFilename: boolean;
  /** The part came as a plain field (busboy's view of `filename=""` without a file content type). */
  fieldValue: string | undefined;
}

/** The busboy instance multer hands to `streamHandler` (busboy has no bundled types). */
interface BusboyLike extends NodeJS.WritableStream {
  on(event: 'file', listener: (name: string, stream: Readable, info: { filename?: string }) => void): this;
  on(event: 'field', listener: (name: string, value: string) => void): this;
}

/** multer 2.5's `streamHandler` option, which @types/multer does not know yet. */
type MulterOptionsWithStreamHandler = multer.Options & {
  streamHandler: (req: IncomingMessage, busboy: BusboyLike) => void;
};

function createUploader(deps: GantryDeps, notes: WeakMap<IncomingMessage, PartNotes>) {
  const options: MulterOptionsWithStreamHandler = {
    storage: multer.diskStorage({
      destination: (_req, _file, cb) => {
        const dir = deps.zipOps.uploadDir();
        fs.mkdir(dir, { recursive: true }, (err) => cb(err, dir));
      },
      filename: (_req, _file, cb) => cb(null, `${randomBytes(16).toString('hex')}.upload`),
    }),
    limits: { fileSize: MAX_ZIP_UPLOAD_BYTES, fields: 16, parts: 32, fieldSize: 64 * 1024, headerPairs: 200 },
    // multer 2 drops a file part whose filename is empty before any hook of its own sees it, so
    // "No file selected" can only be told from "No file provided" by listening to busboy here.
    streamHandler: (req, busboy) => {
      const seen: PartNotes = { emptyFilename: false, fieldValue: undefined };
      notes.set(req, seen);
      busboy.on('file', (name, _stream, info) => {
        if (name === ZIP_FIELD && !info.filename) seen.emptyFilename = true;
      });
      busboy.on('field', (name, value) => {
        if (name === ZIP_FIELD) seen.fieldValue = value;
      });
      req.pipe(busboy);
    },
  };
  return multer(options).single(ZIP_FIELD);
}

function receive(
  upload: ReturnType<typeof createUploader>,
  req: Request,
  res: Response,
): Promise<Express.Multer.File | undefined> {
  return new Promise((resolve, reject) => {
    upload(req, res, (err: unknown) => (err ? reject(err) : resolve(req.file)));
  });
}

function multerToGantry(err: unknown): GantryError | unknown {
  if (err instanceof multer.MulterError) {
    switch (err.code) {
      case 'LIMIT_FILE_SIZE':
        return new GantryError(
          'PAYLOAD_TOO_LARGE',
          `File too large: at most ${MAX_ZIP_UPLOAD_BYTES / (1024 * 1024)} MiB`,
        );
      case 'LIMIT_UNEXPECTED_FILE':
        return new GantryError(
          'VALIDATION_ERROR',
          err.field === ZIP_FIELD ? `Only one file may be sent in ${ZIP_FIELD}` : 'No file provided',
        );
      default:
        return new GantryError('VALIDATION_ERROR', `Invalid multipart body: ${err.message}`);
    }
  }
  if (findGantryError(err)) return err;
  // busboy's own parse errors ("Unexpected end of form", "Malformed part header", …).
  return new GantryError('VALIDATION_ERROR', `Invalid multipart body: ${(err as Error).message}`);
}

export function mountZipRoutes(router: IRouter, deps: GantryDeps): void {
  const notes = new WeakMap<IncomingMessage, PartNotes>();
  const upload = createUploader(deps, notes);

  const startRoute = (kind: ZipOperationKind) => async (req: Request, res: Response) => {
    const where = `POST ${req.path}`;
    const ctx = createContextInner(deps, restMeta(deps, req, res));
    const caller = createCaller(ctx);
    try {
      await caller.zipOps.preflight({ kind });
    } catch (err) {
      return sendZipError(res, err, where);
    }

    let file: Express.Multer.File | undefined;
    try {
      file = await receive(upload, req, res);
    } catch (err) {
      return sendZipError(res, multerToGantry(err), where);
    }
    if (!file) {
      const seen = notes.get(req);
      const selectedNothing = seen?.emptyFilename || seen?.fieldValue === '';
      return sendZipError(
        res,
        new GantryError('VALIDATION_ERROR', selectedNothing ? 'No file selected' : 'No file provided'),
        where,
      );
    }

    const uploadId = deps.zipOps.registerUpload({
      // Both known once preflight passed; `start` checks they still match who claims the file.
      gatewayId: ctx.meta.gatewayId ?? '',
      username: ctx.user?.username ?? '',
      path: file.path,
      originalName: file.originalname,
      size: file.size,
    });
    try {
      res.json(await caller.zipOps.start({ kind, upload_id: uploadId }));
    } catch (err) {
      sendZipError(res, err, where);
    } finally {
      // A no-op once the operation claimed the file; otherwise the refused upload is deleted.
      deps.zipOps.discardUpload(uploadId);
    }
  };

  router.post('/ota-configure', startRoute('configure'));
  router.post('/ota-update', startRoute('plugin'));

  router.get('/ota-update-progress/:update_id', async (req: Request, res: Response) => {
    const caller = createCaller(createContextInner(deps, restMeta(deps, req, res)));
    try {
      const out: ZipProgressOutput = await caller.zipOps.progress({
        update_id: String(req.params.update_id),
      });
      res.json(out);
    } catch (err) {
      if (findGantryError(err)?.gantryCode === 'NOT_FOUND') {
        const out: ZipProgressOutput = {
          success: false,
          status: 'not_found',
          progress: 0,
          message: 'Update not found',
        };
        return void res.status(404).json(out);
      }
      sendZipError(res, err, `GET ${req.path}`);
    }
  });
}

/** OpenAPI 3.1 paths of the three routes, merged into /api/v1/openapi.json by app.ts. */
export function zipOpenApiPaths(): Record<string, unknown> {
  const json = (schema: z.ZodType) => ({
    'application/json': { schema: z.toJSONSchema(schema, { io: 'output', unrepresentable: 'any' }) },
  });
  const refusal = (description: string) => ({ description, content: json(zipErrorSchema) });
  const gatewayHeader = {
    name: 'X-Gateway-ID',
    in: 'header',
    required: true,
    schema: { type: 'string' },
    example: 'GW-3920A9',
  };
  const security = [{ bearerAuth: [] }, { cookieAuth: [] }];
  const upload = (summary: string, what: string) => ({
    post: {
      tags: ['ZIP updates'],
      summary,
      description: `Requires role: admin. ${what} Progress: GET /ota-update-progress/{update_id}; terminal output: Socket.IO namespace /ota-update (event terminal_output) or ws://…/ota-update.`,
      security,
      parameters: [gatewayHeader],
      requestBody: {
        required: true,
        content: {
          'multipart/form-data': {
            schema: {
              type: 'object',
              required: [ZIP_FIELD],
              properties: { [ZIP_FIELD]: { type: 'string', format: 'binary' } },
            },
          },
        },
      },
      responses: {
        200: { description: 'Operation started', content: json(zipStartOutputSchema) },
        400: refusal(
          '"No file provided", "No file selected" or "Invalid file type. Please upload a ZIP file"',
        ),
        401: refusal('Missing, expired or invalid token'),
        403: refusal('Role below admin, gateway not allowed, or a cross-origin cookie write'),
        409: refusal('Another operation is in progress on this gateway (OTA_OPERATION_IN_PROGRESS)'),
        413: refusal(`Larger than ${MAX_ZIP_UPLOAD_BYTES / (1024 * 1024)} MiB`),
      },
    },
  });
  return {
    '/ota-configure': upload(
      'Apply a configuration ZIP (gantry-config.json: feed, trusted root, signing keys, PIN hash, settings)',
      'The layout is documented in the README.',
    ),
    '/ota-update': upload(
      'Install or update a plugin ZIP (gantry-plugin.json: name, version, hooks)',
      'The plugin’s post-install hook runs at once; if it fails the previous version is restored.',
    ),
    '/ota-update-progress/{update_id}': {
      get: {
        tags: ['ZIP updates'],
        summary: 'Progress of a configuration or plugin operation',
        description: 'Any role.',
        security,
        parameters: [
          gatewayHeader,
          { name: 'update_id', in: 'path', required: true, schema: { type: 'string' } },
        ],
        responses: {
          200: {
            description: 'idle, in_progress, complete or error',
            content: json(zipProgressOutputSchema),
          },
          401: refusal('Missing, expired or invalid token'),
          404: { description: 'Update not found (status not_found)', content: json(zipProgressOutputSchema) },
        },
      },
    },
  };
}
