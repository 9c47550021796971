import { envelope } from '../meta.js';
import type { AutoUpdateOutput, SettingsDocument } from '../schemas/settings.js';
import {
  autoUpdateInputSchema,
  autoUpdateOutputSchema,
  settingsOutputSchema,
  settingsUpdateInputSchema,
  settingsUpdateOutputSchema,
} from '../schemas/settings.js';
import { isoSeconds } from '../../core/format.js';
import { nextMaintenanceWindow } from '../../services/maintenance-window.js';
import { adminProcedure, operatorProcedure, router, viewerProcedure } from '../trpc.js';

function settingsView(doc: SettingsDocument, timezone: string) {
  return { ...doc, maintenance_window: { ...doc.maintenance_window, timezone } };
}

export const settingsRouter = router({
  get: viewerProcedure
    .meta({
      rest: {
        method: 'get',
        path: '/api/v1/ota/settings',
        spec: 'gateway-ota-system-api',
        tag: 'Settings',
        summary: 'Current update settings and maintenance window',
        reply: envelope('Update settings retrieved successfully'),
      },
    })
    .output(settingsOutputSchema)
    .query(({ ctx }) => settingsView(ctx.deps.settings.get(ctx.gateway.id), ctx.gateway.timezone)),

  /** Configuration: admin only. */
  update: adminProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/ota/settings',
        spec: 'gateway-ota-system-api',
        tag: 'Settings',
        summary: 'Update settings (any subset; nested objects are merged)',
        reply: envelope('Settings updated successfully'),
      },
    })
    .input(settingsUpdateInputSchema)
    .output(settingsUpdateOutputSchema)
    .mutation(({ ctx, input }) => {
      const { deps, gateway } = ctx;
      const doc = deps.settings.update(gateway.id, input);
      deps.logs.info(gateway.id, 'settings', `Settings updated by ${ctx.user.username}`);
      const next = nextMaintenanceWindow(doc.maintenance_window, gateway.timezone, new Date(deps.clock()));
      return { updated: true as const, next_maintenance_window: next ? isoSeconds(next.getTime()) : null };
    }),

  /** The Auto-Update toggle of SECTION 2: an operator's switch, not configuration. */
  setAutoUpdate: operatorProcedure
    .meta({
      rest: {
        method: 'post',
        path: '/api/v1/ota/auto-update',
        spec: 'gateway-ota-system-api',
        tag: 'Available Updates',
        summary: 'Toggle auto-update',
        reply: envelope((data: AutoUpdateOutput) =>
          data.auto_update ? 'Auto-update enabled' : 'Auto-update disabled',
        ),
      },
    })
    .input(autoUpdateInputSchema)
    .output(autoUpdateOutputSchema)
    .mutation(({ ctx, input }) => {
      const { deps, gateway } = ctx;
      const doc = deps.settings.update(gateway.id, { auto_update: { enabled: input.enabled } });
      deps.logs.info(
        gateway.id,
        'settings',
        `Auto-update ${input.enabled ? 'enabled' : 'disabled'} by ${ctx.user.username}`,
      );
      return {
        auto_update: doc.auto_update.enabled,
        auto_check_enabled: doc.auto_update.enabled || doc.auto_check,
      };
    }),
});
