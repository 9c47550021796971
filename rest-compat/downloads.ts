import fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type { Request, Response } from 'express';
import type { Context } from '../api/context.js';
import type { FileSource } from '../api/meta.js';
import { GantryError } from '../core/errors.js';
import type { AppCaller as Caller } from '../api/routers/_app.js';

/**
 * Routes that answer with a file: the procedure authorizes and describes it (errors before the first
 * byte answer in the usual envelope), the source streams it.
 */
export interface FileDownload {
  path: string;
  filename: string;
  size: number;
}

const TAR_GZ = '.tar.gz';

export const fileSources: Record<
  FileSource,
  (ctx: Context, caller: Caller, req: Request) => Promise<FileDownload>
> = {
  /** GET /api/v1/ota/debug/download/<bundle_id>.tar.gz: the `download_url` of POST /debug-bundle. */
  'debug-bundle': async (ctx, caller, req) => {
    const file = String(req.params.file);
    const tarGz = file.endsWith(TAR_GZ);
    // Authorized (and looked up) first, so an anonymous caller learns nothing from the path.
    const info = await caller.maintenance.debugBundle({
      bundle_id: tarGz ? file.slice(0, -TAR_GZ.length) : file,
    });
    if (!tarGz) throw new GantryError('NOT_FOUND', `Debug bundle ${file} not found`);
    // The procedure resolved the gateway, so the header named one.
    const path = ctx.deps.debugBundles.filePath(ctx.meta.gatewayId!, info.bundle_id);
    return { path, filename: info.filename, size: info.size };
  },
};

export async function sendFile(res: Response, download: FileDownload, contentType: string): Promise<void> {
  const handle = await fs.promises.open(download.path, 'r');
  res.status(200);
  res.setHeader('Content-Type', contentType);
  res.setHeader('Content-Length', String(download.size));
  res.setHeader('Content-Disposition', `attachment; filename="${download.filename}"`);
  res.setHeader('Cache-Control', 'no-store');
  await pipeline(handle.createReadStream(), res);
}
