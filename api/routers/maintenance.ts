import {
  debugBundleDownloadInputSchema,
  debugBundleDownloadOutputSchema,
  debugBundleInputSchema,
  debugBundleOutputSchema,
  snapshotInputSchema,
  snapshotListOutputSchema,
  snapshotOutputSchema,
} from '../schemas/system-ops.js';
import { presentDebugBundleStarted, presentSnapshotStarted } from '../presenters/operations.js';
import { envelope } from '../meta.js';
import { presentSnapshotList } from '../presenters/snapshots.js';
import { operatorProcedure, router, viewerProcedure } from '../trpc.js';

/** SECTION 1 maintenance: system snapshots (progress via updates.progress) and debug bundles. */
export const maintenanceRouter = router({
  createSnapshot: operatorProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/ota/snapshot',
        spec: 'gateway-ota-system-api',
        tag: 'System Information',
        summary:
          'Snapshot the booted slot image and the configuration (a job: follow progress_url; holds the operation lock)',
        reply: envelope('Snapshot creation started'),
      },
    })
    .input(snapshotInputSchema)
    .output(snapshotOutputSchema)
    .mutation(async ({ ctx, input }) =>
      presentSnapshotStarted(await ctx.deps.snapshots.create(ctx.gateway, input, ctx.user.username)),
    ),

  snapshots: viewerProcedure
    .meta({
      rest: {
        method: 'get',
        path: '/api/v1/ota/snapshots',
        tag: 'System Information',
        summary: 'Complete snapshots of the gateway, newest first (not in the spec: what restore can use)',
        reply: envelope('Snapshots retrieved successfully'),
      },
    })
    .output(snapshotListOutputSchema)
    .query(({ ctx }) =>
      presentSnapshotList(ctx.deps.snapshots.list(ctx.gateway.id), ctx.deps.snapshots.retention),
    ),

  createDebugBundle: operatorProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/ota/debug-bundle',
        spec: 'gateway-ota-system-api',
        tag: 'System Information',
        summary: 'Build a .tar.gz of logs, configuration (secrets redacted), metrics and job histories',
        reply: envelope('Debug bundle creation started'),
      },
    })
    .input(debugBundleInputSchema)
    .output(debugBundleOutputSchema)
    .mutation(async ({ ctx, input }) =>
      presentDebugBundleStarted(await ctx.deps.debugBundles.create(ctx.gateway, input, ctx.user.username)),
    ),

  /**
   * Authorizes a download (operator, this gateway, bundle ready) before the REST layer streams it.
   * A query, so not audited by the mutation middleware: a bundle leaving the gateway is recorded here.
   */
  debugBundle: operatorProcedure
    .meta({
      rest: {
        method: 'get',
        // The spec names this path only as the `download_url` of POST /debug-bundle.
        path: '/api/v1/ota/debug/download/:file',
        tag: 'System Information',
        summary: 'Download a ready debug bundle (<bundle_id>.tar.gz)',
        reply: { kind: 'file', source: 'debug-bundle', contentType: 'application/gzip' },
        refusals: { 404: 'Unknown gateway, or no ready bundle of that name' },
      },
    })
    .input(debugBundleDownloadInputSchema)
    .output(debugBundleDownloadOutputSchema)
    .query(({ ctx, input }) => {
      const info = ctx.deps.debugBundles.describe(ctx.gateway, input.bundle_id);
      ctx.deps.audit.record({
        username: ctx.user.username,
        gatewayId: ctx.gateway.id,
        action: 'maintenance.debugBundleDownload',
        outcome: 'success',
        detail: input.bundle_id,
        remoteAddress: ctx.meta.remoteAddress ?? null,
      });
      return info;
    }),
});
