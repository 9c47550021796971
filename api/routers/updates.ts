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
  uploadVerifyFormSchema,
  uploadVerifyOutputSchema,
} from '../schemas/updates.js';
import { presentProgress } from '../presenters/progress.js';
import { presentUploadVerified } from '../presenters/operations.js';
import { presentDownloadStarted, presentUpdateCheck, presentUpdateList } from '../presenters/updates.js';
import { envelope } from '../meta.js';
import { operatorProcedure, router, viewerProcedure } from '../trpc.js';

/** The update pipeline: feed, download, manual upload, install, cancel, progress. */
export const updatesRouter = router({
  list: viewerProcedure
    .meta({
      rest: {
        method: 'get',
        path: '/api/v1/ota/updates',
        spec: 'gateway-ota-system-api',
        tag: 'Available Updates',
        summary: 'Updates offered by the feed at the last check',
        reply: envelope('Available updates retrieved successfully'),
      },
    })
    .output(updatesOutputSchema)
    .query(({ ctx }) => presentUpdateList(ctx.deps.updates.listUpdates(ctx.gateway))),

  check: operatorProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/ota/check-updates',
        spec: 'gateway-ota-system-api',
        tag: 'Available Updates',
        summary:
          'Refresh the signed (TUF) feed metadata; background:true answers at once. ' +
          'A gateway with no feed configured answers 409 OTA_FEED_NOT_CONFIGURED.',
        reply: envelope('Update check initiated'),
        refusals: { 409: 'No feed configured (OTA_FEED_NOT_CONFIGURED)' },
      },
    })
    .input(checkUpdatesInputSchema)
    .output(checkUpdatesOutputSchema)
    .mutation(async ({ ctx, input }) =>
      presentUpdateCheck(await ctx.deps.updates.checkForUpdates(ctx.gateway, input)),
    ),

  download: operatorProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/ota/download',
        spec: 'gateway-ota-system-api',
        tag: 'Available Updates',
        summary: 'Stream an update from the feed onto the inactive slot (verified on the way)',
        reply: envelope('Update download started'),
      },
    })
    .input(downloadInputSchema)
    .output(downloadOutputSchema)
    .mutation(async ({ ctx, input }) =>
      presentDownloadStarted(await ctx.deps.updates.startDownload(ctx.gateway, input, ctx.user.username)),
    ),

  progress: viewerProcedure
    .meta({
      rest: {
        method: 'get',
        path: '/api/v1/ota/progress',
        spec: 'gateway-ota-system-api',
        tag: 'Monitor',
        summary: 'Progress of a download, deployment or installation',
        reply: envelope('Update progress retrieved successfully'),
      },
    })
    .input(progressInputSchema)
    .output(progressOutputSchema)
    .query(({ ctx, input }) =>
      presentProgress(ctx.deps.updates.progress(ctx.gateway, (input.job_id ?? input.snapshot_id)!)),
    ),

  install: operatorProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/ota/install',
        spec: 'gateway-ota-system-api',
        tag: 'Monitor',
        summary: 'Install a downloaded update (blocked by active safety constraints)',
        reply: envelope('Update installation started'),
      },
    })
    .input(installInputSchema)
    .output(installOutputSchema)
    .mutation(({ ctx, input }) => ctx.deps.updates.install(ctx.gateway, input, ctx.user.username)),

  cancel: operatorProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/ota/cancel',
        spec: 'gateway-ota-system-api',
        tag: 'Monitor',
        summary: 'Cancel a job before installation starts (the partly written slot is marked invalid)',
        reply: envelope('Update operation cancelled'),
      },
    })
    .input(cancelInputSchema)
    .output(cancelOutputSchema)
    .mutation(({ ctx, input }) => ctx.deps.updates.cancel(ctx.gateway, input, ctx.user.username)),

  /** Cheap check the REST layer runs before accepting an upload body (role, gateway, token). */
  authorizeUpload: operatorProcedure.query(() => true),

  /** Takes a file the REST layer already streamed into the gateway's upload area (never a client path). */
  verifyUpload: operatorProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/ota/upload/verify',
        spec: 'gateway-ota-system-api',
        tag: 'Manual Upload',
        summary: 'Upload a signed bundle (multipart `file`), verify signature, hashes and compatibility',
        reply: envelope('Image verified successfully'),
        upload: {
          form: uploadVerifyFormSchema,
          file: 'file',
          authorize: 'updates.authorizeUpload',
          target: 'bundle',
        },
        refusals: { 507: 'The upload does not fit on the gateway (OTA_INSUFFICIENT_SPACE)' },
      },
    })
    .input(uploadVerifyInputSchema)
    .output(uploadVerifyOutputSchema)
    .mutation(async ({ ctx, input }) =>
      presentUploadVerified(await ctx.deps.updates.verifyUpload(ctx.gateway, input)),
    ),

  deploy: operatorProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/ota/upload/deploy',
        spec: 'gateway-ota-system-api',
        tag: 'Manual Upload',
        summary: 'Deploy a verified upload to the inactive slot',
        reply: envelope('Manual image deployment started'),
      },
    })
    .input(deployInputSchema)
    .output(deployOutputSchema)
    .mutation(({ ctx, input }) => ctx.deps.updates.deploy(ctx.gateway, input, ctx.user.username)),
});
