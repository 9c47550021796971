import {
  factoryInputSchema,
  factoryOutputSchema,
  recoveryUploadFormSchema,
  recoveryUploadOutputSchema,
  restoreInputSchema,
  restoreOutputSchema,
  rollbackInputSchema,
  rollbackOutputSchema,
} from '../schemas/recovery.js';
import { presentFactoryResetStarted, presentRecoveryImageStored } from '../presenters/operations.js';
import { hashedUploadInputSchema } from '../schemas/updates.js';
import { incomingUploadDir } from '../../services/updates/uploads.js';
import { envelope } from '../meta.js';
import { adminProcedure, router } from '../trpc.js';

/** SECTION 5: recovery is the admin's (it can undo an update or wipe a gateway). */
export const recoveryRouter = router({
  rollback: adminProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/ota/recovery/rollback',
        spec: 'gateway-ota-system-api',
        tag: 'Recovery',
        summary: 'Point the next boot at the other slot (it must hold a verified image)',
        reply: envelope('Rollback executed successfully'),
      },
    })
    .input(rollbackInputSchema)
    .output(rollbackOutputSchema)
    .mutation(({ ctx, input }) => ctx.deps.recovery.rollback(ctx.gateway, input, ctx.user.username)),

  restore: adminProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/ota/recovery/restore',
        spec: 'gateway-ota-system-api',
        tag: 'Recovery',
        summary: 'Write a snapshot of the given version to the inactive slot and make it the next boot',
        reply: envelope('OS restoration started'),
      },
    })
    .input(restoreInputSchema)
    .output(restoreOutputSchema)
    .mutation(({ ctx, input }) => ctx.deps.recovery.restore(ctx.gateway, input, ctx.user.username)),

  factoryReset: adminProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/ota/recovery/factory',
        spec: 'gateway-ota-system-api',
        tag: 'Recovery',
        summary: 'Factory reset from the recovery image (PIN and confirm: true required)',
        reply: envelope('Factory reset started'),
      },
    })
    .input(factoryInputSchema)
    .output(factoryOutputSchema)
    .mutation(async ({ ctx, input }) =>
      presentFactoryResetStarted(await ctx.deps.recovery.factoryReset(ctx.gateway, input, ctx.user.username)),
    ),

  authorizeUpload: adminProcedure.query(() => true),

  /** Takes a file the REST layer already streamed into the gateway's upload area. */
  storeRecoveryImage: adminProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/ota/recovery/upload',
        spec: 'gateway-ota-system-api',
        tag: 'Recovery',
        summary: 'Upload a signed bundle as the recovery image (multipart `file`)',
        reply: envelope('Recovery image uploaded successfully'),
        upload: {
          form: recoveryUploadFormSchema,
          file: 'file',
          authorize: 'recovery.authorizeUpload',
          target: 'recovery-image',
        },
        refusals: { 507: 'The upload does not fit on the gateway (OTA_INSUFFICIENT_SPACE)' },
      },
    })
    .input(hashedUploadInputSchema)
    .output(recoveryUploadOutputSchema)
    .mutation(async ({ ctx, input }) =>
      presentRecoveryImageStored(
        await ctx.deps.recovery.storeRecoveryImage(
          ctx.gateway,
          input,
          incomingUploadDir(ctx.deps.gateways, ctx.gateway.id),
        ),
      ),
    ),
});
