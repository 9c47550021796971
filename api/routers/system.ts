import { gatewayStatus } from '../../services/system.js';
import { statusOutputSchema } from '../schemas/system.js';
import { router, viewerProcedure } from '../trpc.js';

export const systemRouter = router({
  status: viewerProcedure
    .output(statusOutputSchema)
    .query(({ ctx }) => gatewayStatus(ctx.gateway, ctx.deps.settings.get(ctx.gateway.id))),
});
