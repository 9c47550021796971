import {
  safetyOverrideInputSchema,
  safetyOverrideOutputSchema,
  safetyStatusOutputSchema,
} from '../schemas/safety.js';
import { adminProcedure, router, viewerProcedure } from '../trpc.js';

/** SECTION 6: the interlock's state for everyone, the PIN-verified force override for admins. */
export const safetyRouter = router({
  status: viewerProcedure
    .output(safetyStatusOutputSchema)
    .query(({ ctx }) => ctx.deps.safety.status(ctx.gateway.id)),

  override: adminProcedure
    .input(safetyOverrideInputSchema)
    .output(safetyOverrideOutputSchema)
    .mutation(({ ctx, input }) => ctx.deps.safety.override(ctx.gateway.id, input, ctx.user)),
});
