import { envelope } from '../meta.js';
import { presentOverrideResult, presentSafetyStatus } from '../presenters/safety.js';
import {
  type SafetyOverrideOutput,
  safetyOverrideInputSchema,
  safetyOverrideOutputSchema,
  safetyStatusOutputSchema,
} from '../schemas/safety.js';
import { adminProcedure, router, viewerProcedure } from '../trpc.js';

/** SECTION 6: the interlock's state for everyone, the PIN-verified force override for admins. */
export const safetyRouter = router({
  status: viewerProcedure
    .meta({
      rest: {
        method: 'get',
        path: '/api/v1/ota/safety',
        spec: 'gateway-ota-system-api',
        tag: 'Safety',
        summary: 'Safety constraints status (crane motion, ACS, UPS battery, network, system load)',
        reply: envelope('Safety status retrieved successfully'),
      },
    })
    .output(safetyStatusOutputSchema)
    .query(async ({ ctx }) => presentSafetyStatus(await ctx.deps.safety.status(ctx.gateway.id))),

  override: adminProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/ota/safety/override',
        spec: 'gateway-ota-system-api',
        tag: 'Safety',
        summary:
          'Force override of safety constraints (PIN; 15 minutes or until the operation completes). ' +
          '5 wrong PINs lock overrides for 15 minutes (423 OTA_PIN_LOCKED).',
        reply: envelope((data: SafetyOverrideOutput) =>
          data.override_enabled ? 'Safety override enabled' : 'Safety override disabled',
        ),
        refusals: { 423: 'Overrides locked after 5 wrong PINs (OTA_PIN_LOCKED)' },
      },
    })
    .input(safetyOverrideInputSchema)
    .output(safetyOverrideOutputSchema)
    .mutation(async ({ ctx, input }) =>
      presentOverrideResult(await ctx.deps.safety.override(ctx.gateway.id, input, ctx.user)),
    ),
});
