import fs from 'node:fs';
import type { NextFunction, Request, Response } from 'express';
import multer from 'multer';
import { z } from 'zod';
import { createContextInner } from '../../api/context.js';
import { createCaller } from '../../api/routers/_app.js';
import { uploadVerifyOutputSchema } from '../../api/schemas/updates.js';
import { GantryError } from '../../core/errors.js';
import type { GantryDeps } from '../../server/deps.js';
import { incomingUploadDir, receiveFile } from '../../services/updates/uploads.js';
import { defineRoute, restMeta, sendError } from '../route.js';
import { receivingStorage, type HashedUpload, type UploadReceiver } from '../upload-storage.js';

/** The form of POST /upload/verify, for the OpenAPI document. */
const uploadVerifyFormSchema = z.object({
  file: z.string().meta({ format: 'binary', description: 'Signed Gantry bundle (.bundle)' }),
  version: z
    .string()
    .optional()
    .meta({ description: 'Label shown for this image (the signed version still decides)' }),
});

/** Streams a file part into the gateway's incoming area, hashed, not verified (the procedure does). */
export function incomingFileReceiver(deps: GantryDeps, gatewayId: string): UploadReceiver {
  const dir = incomingUploadDir(deps.gateways, gatewayId);
  return {
    receive: (stream) => receiveFile(stream, dir),
    remove: (file) => fs.rmSync(file, { force: true }),
  };
}

/**
 * Multipart upload routes: authorization is checked BEFORE a byte of the body is accepted (a
 * stranger must not be able to fill the disk), then the file streams to disk, hashed and verified
 * as a signed bundle on the way (the procedure answers with the outcome recorded for that file).
 */
export function uploadRoutes(deps: GantryDeps) {
  const [authorize, receive] = uploadHandlers(
    deps,
    (caller) => caller.updates.authorizeUpload(),
    (gatewayId) => {
      const gw = deps.gateways.get(gatewayId)!; // known: `authorize` resolved it before the body
      return {
        receive: (stream) => deps.updates.receiveUpload(gw, stream),
        remove: (file) => deps.updates.discardUpload(gw, file),
      };
    },
  );
  return [
    defineRoute({
      method: 'post',
      path: '/api/v1/ota/upload/verify',
      tag: 'Manual Upload',
      summary: 'Upload a signed bundle (multipart `file`), verify signature, hashes and compatibility',
      role: 'operator',
      input: { from: 'multipart', schema: uploadVerifyFormSchema },
      before: [authorize, receive],
      output: uploadVerifyOutputSchema,
      message: 'Image verified successfully',
      call: (caller, input: Parameters<typeof caller.updates.verifyUpload>[0]) =>
        caller.updates.verifyUpload(input),
    }),
  ];
}

/**
 * The two middlewares of a multipart route: `authorize` runs the given procedure (role, gateway,
 * token) and checks free space before the body is read; `receive` hands the `file` part to the
 * gateway's `receiver` (which streams it to the upload area, hashed) and leaves the procedure's
 * input in `req.body`.
 */
export function uploadHandlers(
  deps: GantryDeps,
  check: (caller: ReturnType<typeof createCaller>) => Promise<unknown>,
  receiver: (gatewayId: string) => UploadReceiver,
) {
  const authorize = async (req: Request, res: Response, next: NextFunction) => {
    try {
      const caller = createCaller(createContextInner(deps, restMeta(deps, req, res)));
      await check(caller);
      const declared = Number(req.headers['content-length'] ?? 0);
      const gatewayId = String(req.headers['x-gateway-id']);
      const space = await deps.gateways.get(gatewayId)!.device.storageSpace();
      if (declared > space.freeBytes) {
        throw new GantryError(
          'OTA_INSUFFICIENT_SPACE',
          `Upload of ${declared} bytes does not fit (${space.freeBytes} bytes free)`,
        );
      }
      next();
    } catch (err) {
      req.resume();
      sendError(deps, res, err, 'upload authorize');
    }
  };

  const receive = (req: Request, res: Response, next: NextFunction) => {
    const gatewayId = String(req.headers['x-gateway-id']);
    const files = receiver(gatewayId);
    const upload = multer({
      storage: receivingStorage(files),
      limits: { fileSize: deps.config.maxUploadBytes, files: 1, fields: 4, fieldSize: 1024 },
    }).single('file');
    upload(req, res, (err: unknown) => {
      // multer's error when the client went away mid-body: nothing wrong with the server, and
      // nobody left to answer (a limit error, by contrast, must be answered).
      if (err instanceof Error && !('code' in err) && err.message === 'Request aborted') {
        deps.logs.warn(gatewayId, 'ota', 'Upload abandoned: the client closed the connection mid-file');
        if (!res.headersSent) res.destroy();
        return;
      }
      if (err) {
        const code = (err as { code?: string }).code;
        const mapped =
          code === 'LIMIT_FILE_SIZE'
            ? new GantryError('PAYLOAD_TOO_LARGE', `Upload exceeds ${deps.config.maxUploadBytes} bytes`)
            : code?.startsWith('LIMIT_')
              ? new GantryError('VALIDATION_ERROR', `Invalid upload: ${(err as Error).message}`)
              : err;
        return sendError(deps, res, mapped, 'upload');
      }
      const file = req.file as (Express.Multer.File & HashedUpload) | undefined;
      if (!file)
        return sendError(
          deps,
          res,
          new GantryError('VALIDATION_ERROR', 'Invalid request: file: required'),
          'upload',
        );
      // Once the request is over, whatever the procedure did not keep goes (its input refused, the
      // client gone): a kept upload has left the incoming area by then.
      res.once('close', () => {
        try {
          files.remove(file.path);
        } catch (cleanupErr) {
          deps.logs.warn(gatewayId, 'ota', `Removing upload ${file.path} failed: ${String(cleanupErr)}`);
        }
      });
      req.body = {
        path: file.path,
        originalName: file.originalname,
        size: file.size,
        ...(file.sha256 ? { sha256: file.sha256 } : {}),
        ...(typeof req.body?.version === 'string' && req.body.version ? { version: req.body.version } : {}),
      };
      next();
    });
  };

  return [authorize, receive] as const;
}
