import { GantryError } from '../../core/errors.js';
import { isoSeconds } from '../../core/format.js';
import { nextUpdateCheck, systemActivity } from '../../services/system.js';
import { presentGatewayEvent, presentLogEntry } from '../presenters/events.js';
import { formatPercent } from '../presenters/system.js';
import { createContextInner } from '../context.js';
import { gantryEventSchema } from '../schemas/events.js';
import { logsInputSchema, logsOutputSchema, monitorOutputSchema } from '../schemas/system.js';
import { envelope } from '../meta.js';
import { router, viewerProcedure } from '../trpc.js';

export const monitorRouter = router({
  logs: viewerProcedure
    .meta({
      rest: {
        method: 'get',
        path: '/api/v1/ota/logs',
        spec: 'gateway-ota-system-api',
        tag: 'Monitor',
        summary: 'Activity log, newest first',
        reply: envelope('System logs retrieved successfully'),
      },
    })
    .input(logsInputSchema)
    .output(logsOutputSchema)
    .query(({ ctx, input }) => {
      const { logs, total } = ctx.deps.logs.list(ctx.gateway.id, input);
      return { logs: logs.map(presentLogEntry), total };
    }),

  status: viewerProcedure
    .meta({
      rest: {
        method: 'get',
        path: '/api/v1/ota/monitor',
        spec: 'gateway-ota-system-api',
        tag: 'Monitor',
        summary: 'Real-time system monitoring status',
        reply: envelope('Monitor status retrieved successfully'),
      },
    })
    .output(monitorOutputSchema)
    .query(async ({ ctx }) => {
      const { deps, gateway } = ctx;
      const now = deps.clock();
      const row = gateway.row();
      const activity = await systemActivity(gateway, now);
      const next = nextUpdateCheck(deps.settings.get(gateway.id), row.lastUpdateCheckAt, row.createdAt, now);
      return {
        system_status: activity.status,
        current_operation: activity.currentOperation,
        last_update_check: row.lastUpdateCheckAt ? isoSeconds(row.lastUpdateCheckAt) : null,
        next_check: next ? isoSeconds(next) : null,
        resources: {
          cpu_usage: activity.cpuUsage,
          memory_usage: formatPercent(activity.memoryUsage),
        },
      };
    }),

  /** Live events of the gateway (log entries, status, progress, safety), the WS messages typed. */
  events: viewerProcedure.subscription(async function* ({ ctx, signal }) {
    for await (const event of ctx.deps.bus.stream(ctx.gateway.id, signal)) {
      // The token was checked when the stream opened; a logout or expiry since ends it, before
      // anything more is delivered.
      const now = createContextInner(ctx.deps, ctx.meta);
      if (!now.user) throw now.authError ?? new GantryError('AUTH_INVALID_TOKEN', 'Session ended');
      yield gantryEventSchema.parse(presentGatewayEvent(event));
    }
  }),
});
