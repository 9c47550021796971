import { gatewayStatus } from '../../services/system.js';
import { presentStatus } from '../presenters/system.js';
import { statusOutputSchema } from '../schemas/system.js';
import { envelope } from '../meta.js';
import { router, viewerProcedure } from '../trpc.js';

export const systemRouter = router({
  status: viewerProcedure
    .meta({
      rest: {
        method: 'get',
        path: '/api/v1/ota/status',
        spec: 'gateway-ota-system-api',
        tag: 'System Information',
        summary: 'Gateway system information, partitions and auto-rollback status',
        reply: envelope('Gateway status retrieved successfully'),
      },
    })
    .output(statusOutputSchema)
    .query(async ({ ctx }) => ({
      ...presentStatus(await gatewayStatus(ctx.gateway, ctx.deps.settings.get(ctx.gateway.id))),
      components: await ctx.deps.components.list(ctx.gateway),
    })),
});
