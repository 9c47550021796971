import {
  cancelInputSchema,
  cancelOutputSchema,
  checkUpdatesInputSchema,
  checkUpdatesOutputSchema,
  deployInputSchema,
  deployOutputSchema,
  downloadInputSchema,
  downloadOutputSchema,
  installInputSchema,
  installOutputSchema,
  progressInputSchema,
  progressOutputSchema,
  updatesOutputSchema,
  uploadVerifyInputSchema,
  uploadVerifyOutputSchema,
} from '../schemas/updates.js';
import { operatorProcedure, router, viewerProcedure } from '../trpc.js';

/** The update pipeline: feed, download, manual upload, install, cancel, progress. */
export const updatesRouter = router({
  list: viewerProcedure
    .output(updatesOutputSchema)
    .query(({ ctx }) => ctx.deps.updates.listUpdates(ctx.gateway)),

  check: operatorProcedure
    .input(checkUpdatesInputSchema)
    .output(checkUpdatesOutputSchema)
    .mutation(({ ctx, input }) => ctx.deps.updates.checkForUpdates(ctx.gateway, input)),

  download: operatorProcedure
    .input(downloadInputSchema)
    .output(downloadOutputSchema)
    .mutation(({ ctx, input }) => ctx.deps.updates.startDownload(ctx.gateway, input, ctx.user.username)),

  progress: viewerProcedure
    .input(progressInputSchema)
    .output(progressOutputSchema)
    .query(({ ctx, input }) => ctx.deps.updates.progress(ctx.gateway, (input.job_id ?? input.snapshot_id)!)),

  install: operatorProcedure
    .input(installInputSchema)
    .output(installOutputSchema)
    .mutation(({ ctx, input }) => ctx.deps.updates.install(ctx.gateway, input, ctx.user.username)),

  cancel: operatorProcedure
    .input(cancelInputSchema)
    .output(cancelOutputSchema)
    .mutation(({ ctx, input }) => ctx.deps.updates.cancel(ctx.gateway, input, ctx.user.username)),

  /** Cheap check the REST layer runs before accepting an upload body (role, gateway, token). */
  authorizeUpload: operatorProcedure.query(() => true),

  /** Takes a file the REST layer already streamed into the gateway's upload area (never a client path). */
  verifyUpload: operatorProcedure
    .input(uploadVerifyInputSchema)
    .output(uploadVerifyOutputSchema)
    .mutation(({ ctx, input }) => ctx.deps.updates.verifyUpload(ctx.gateway, input)),

  deploy: operatorProcedure
    .input(deployInputSchema)
    .output(deployOutputSchema)
    .mutation(({ ctx, input }) => ctx.deps.updates.deploy(ctx.gateway, input, ctx.user.username)),
});
