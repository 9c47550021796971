import {
  factoryInputSchema,
  factoryOutputSchema,
  recoveryUploadOutputSchema,
  restoreInputSchema,
  restoreOutputSchema,
  rollbackInputSchema,
  rollbackOutputSchema,
} from '../schemas/recovery.js';
import { hashedUploadInputSchema } from '../schemas/updates.js';
import { incomingUploadDir } from '../../services/updates/uploads.js';
import { adminProcedure, router } from '../trpc.js';

/** SECTION 5: recovery is the admin's (it can undo an update or wipe a gateway). */
export const recoveryRouter = router({
  rollback: adminProcedure
    .input(rollbackInputSchema)
    .output(rollbackOutputSchema)
    .mutation(({ ctx, input }) => ctx.deps.recovery.rollback(ctx.gateway, input, ctx.user.username)),

  restore: adminProcedure
    .input(restoreInputSchema)
    .output(restoreOutputSchema)
    .mutation(({ ctx, input }) => ctx.deps.recovery.restore(ctx.gateway, input, ctx.user.username)),

  factoryReset: adminProcedure
    .input(factoryInputSchema)
    .output(factoryOutputSchema)
    .mutation(({ ctx, input }) => ctx.deps.recovery.factoryReset(ctx.gateway, input, ctx.user.username)),

  authorizeUpload: adminProcedure.query(() => true),

  /** Takes a file the REST layer already streamed into the gateway's upload area. */
  storeRecoveryImage: adminProcedure
    .input(hashedUploadInputSchema)
    .output(recoveryUploadOutputSchema)
    .mutation(({ ctx, input }) =>
      ctx.deps.recovery.storeRecoveryImage(
        ctx.gateway,
        input,
        incomingUploadDir(ctx.deps.gateways, ctx.gateway.id),
      ),
    ),
});
