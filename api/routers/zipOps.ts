import {
  zipPreflightInputSchema,
  zipProgressInputSchema,
  zipProgressOutputSchema,
  zipStartInputSchema,
  zipStartOutputSchema,
} from '../schemas/zip.js';
import { adminProcedure, router, viewerProcedure } from '../trpc.js';

/**
 * The ZIP operations of ota-zip-updates.md. Both change what the gateway trusts and runs, so both
 * are admin-only; following one's progress is a read.
 */
export const zipOpsRouter = router({
  /** Everything `start` checks that can be checked before a large upload is read. */
  preflight: adminProcedure.input(zipPreflightInputSchema).query(({ ctx }) => {
    ctx.deps.zipOps.assertIdle(ctx.gateway.id);
    return { ready: true as const };
  }),

  start: adminProcedure
    .input(zipStartInputSchema)
    .output(zipStartOutputSchema)
    .mutation(({ ctx, input }) =>
      ctx.deps.zipOps.start({
        gatewayId: ctx.gateway.id,
        kind: input.kind,
        uploadId: input.upload_id,
        username: ctx.user.username,
      }),
    ),

  progress: viewerProcedure
    .input(zipProgressInputSchema)
    .output(zipProgressOutputSchema)
    .query(({ ctx, input }) => ctx.deps.zipOps.progress(ctx.gateway.id, input.update_id)),

  /** What the configuration and plugin operations installed (for the UI and for tests). */
  provisioning: viewerProcedure.query(({ ctx }) => {
    const p = ctx.deps.provisioning;
    const id = ctx.gateway.id;
    const feed = p.feed(id);
    return {
      configuration_version: p.configurationVersion(id),
      feed: feed ? { metadata_url: feed.metadataUrl, targets_url: feed.targetsUrl } : null,
      trusted_keys: p.trustedKeys(id).length,
      plugins: p.plugins(id).map((pl) => ({ name: pl.name, version: pl.version, hooks: pl.hooks })),
    };
  }),
});
