import {
  debugBundleDownloadInputSchema,
  debugBundleDownloadOutputSchema,
  debugBundleInputSchema,
  debugBundleOutputSchema,
  snapshotInputSchema,
  snapshotListOutputSchema,
  snapshotOutputSchema,
} from '../schemas/system-ops.js';
import { operatorProcedure, router, viewerProcedure } from '../trpc.js';

/** SECTION 1 maintenance: system snapshots (progress via updates.progress) and debug bundles. */
export const maintenanceRouter = router({
  createSnapshot: operatorProcedure
    .input(snapshotInputSchema)
    .output(snapshotOutputSchema)
    .mutation(({ ctx, input }) => ctx.deps.snapshots.create(ctx.gateway, input, ctx.user.username)),

  snapshots: viewerProcedure
    .output(snapshotListOutputSchema)
    .query(({ ctx }) => ctx.deps.snapshots.view(ctx.gateway.id)),

  createDebugBundle: operatorProcedure
    .input(debugBundleInputSchema)
    .output(debugBundleOutputSchema)
    .mutation(({ ctx, input }) => ctx.deps.debugBundles.create(ctx.gateway, input, ctx.user.username)),

  /**
   * Authorizes a download (operator, this gateway, bundle ready) before the REST layer streams it.
   * A query, so not audited by the mutation middleware: a bundle leaving the gateway is recorded here.
   */
  debugBundle: operatorProcedure
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
