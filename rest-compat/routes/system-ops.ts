import fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type { Request, Response, Router } from 'express';
import type { z } from 'zod';
import { createContextInner } from '../../api/context.js';
import { createCaller } from '../../api/routers/_app.js';
import {
  debugBundleInputSchema,
  debugBundleOutputSchema,
  snapshotInputSchema,
  snapshotListOutputSchema,
  snapshotOutputSchema,
} from '../../api/schemas/system-ops.js';
import { GantryError } from '../../core/errors.js';
import type { GantryDeps } from '../../server/deps.js';
import { defineRoute, restMeta, sendError } from '../route.js';

/** SECTION 1 maintenance routes: snapshot, snapshot list (an addition), debug bundle. */
export const systemOpsRoutes = [
  defineRoute({
    method: 'post',
    path: '/api/v1/ota/snapshot',
    tag: 'System Information',
    summary:
      'Snapshot the booted slot image and the configuration (a job: follow progress_url; holds the operation lock)',
    role: 'operator',
    input: { from: 'body', schema: snapshotInputSchema },
    output: snapshotOutputSchema,
    message: 'Snapshot creation started',
    call: (caller, input: z.input<typeof snapshotInputSchema>) => caller.maintenance.createSnapshot(input),
  }),
  defineRoute({
    method: 'get',
    path: '/api/v1/ota/snapshots',
    tag: 'System Information',
    summary: 'Complete snapshots of the gateway, newest first (not in the spec: what restore can use)',
    role: 'viewer',
    output: snapshotListOutputSchema,
    message: 'Snapshots retrieved successfully',
    call: (caller) => caller.maintenance.snapshots(),
  }),
  defineRoute({
    method: 'post',
    path: '/api/v1/ota/debug-bundle',
    tag: 'System Information',
    summary: 'Build a .tar.gz of logs, configuration (secrets redacted), metrics and job histories',
    role: 'operator',
    input: { from: 'body', schema: debugBundleInputSchema },
    output: debugBundleOutputSchema,
    message: 'Debug bundle creation started',
    call: (caller, input: z.input<typeof debugBundleInputSchema>) =>
      caller.maintenance.createDebugBundle(input),
  }),
];

export const DEBUG_DOWNLOAD_PATH = '/api/v1/ota/debug/download/:file';
const TAR_GZ = '.tar.gz';

/**
 * GET /api/v1/ota/debug/download/<bundle_id>.tar.gz: not a JSON route. Authorized through the
 * procedure first (operator, this gateway's bundle, ready), then the file is streamed; errors before
 * the first byte answer in the usual envelope.
 */
export function mountDebugBundleDownload(router: Router, deps: GantryDeps): void {
  router.get(DEBUG_DOWNLOAD_PATH, async (req: Request, res: Response) => {
    try {
      const meta = restMeta(deps, req, res);
      const caller = createCaller(createContextInner(deps, meta));
      const file = String(req.params.file);
      const tarGz = file.endsWith(TAR_GZ);
      // Authorized (and looked up) first, so an anonymous caller learns nothing from the path.
      const info = await caller.maintenance.debugBundle({
        bundle_id: tarGz ? file.slice(0, -TAR_GZ.length) : file,
      });
      if (!tarGz) throw new GantryError('NOT_FOUND', `Debug bundle ${file} not found`);
      const handle = await fs.promises.open(deps.debugBundles.filePath(meta.gatewayId!, info.bundle_id), 'r');
      res.status(200);
      res.setHeader('Content-Type', 'application/gzip');
      res.setHeader('Content-Length', String(info.size));
      res.setHeader('Content-Disposition', `attachment; filename="${info.filename}"`);
      res.setHeader('Cache-Control', 'no-store');
      await pipeline(handle.createReadStream(), res);
    } catch (err) {
      if (res.headersSent) res.destroy();
      else sendError(deps, res, err, `GET ${DEBUG_DOWNLOAD_PATH}`);
    }
  });
}
