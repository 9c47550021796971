import { z } from 'zod';
import { UPDATE_STRATEGIES, WEEKDAYS } from '../../core/vocabulary.js';
import { settingsPatchSchema, type SettingsPatch } from '../../core/settings-document.js';

export {
  autoUpdateSettingsSchema,
  maintenanceWindowSchema,
  safetySettingsSchema,
  settingsDocumentSchema,
  type SafetySettings,
  type SettingsDocument,
} from '../../core/settings-document.js';

/**
 * Per-gateway settings: the GET/POST payloads and OpenAPI, beside the stored document's schema
 * (core/settings-document.ts), which they re-export.
 */

/** POST /settings: the domain's patch (any subset, nested objects merged; unknown fields an error). */
export const settingsUpdateInputSchema = settingsPatchSchema;
export type SettingsUpdateInput = SettingsPatch;

export const settingsOutputSchema = z.lazy(() =>
  z.object({
    auto_update: z.object({
      enabled: z.boolean(),
      auto_download: z.boolean(),
      auto_security: z.boolean(),
      auto_reboot: z.boolean(),
    }),
    maintenance_window: z.object({
      enabled: z.boolean(),
      schedule: z.enum(['daily', 'weekly']),
      time: z.string(),
      day: z.enum(WEEKDAYS),
      duration_minutes: z.number(),
      timezone: z.string(),
    }),
    update_strategy: z.enum(UPDATE_STRATEGIES),
    auto_rollback: z.boolean(),
    rollback_retries: z.number(),
    auto_check: z.boolean(),
    check_interval_hours: z.number(),
    safety: z.object({
      crane_motion: z.boolean(),
      acs_collision: z.boolean(),
      ups_battery: z.boolean(),
      network: z.boolean(),
      system_load: z.boolean(),
      ups_min_battery_percent: z.number(),
      max_system_load: z.number(),
    }),
  }),
);

export const settingsUpdateOutputSchema = z.lazy(() =>
  z.object({
    updated: z.literal(true),
    next_maintenance_window: z.string().nullable(),
  }),
);

export const autoUpdateInputSchema = z.lazy(() => z.strictObject({ enabled: z.boolean() }));
export const autoUpdateOutputSchema = z.lazy(() =>
  z.object({ auto_update: z.boolean(), auto_check_enabled: z.boolean() }),
);
export type AutoUpdateOutput = z.infer<typeof autoUpdateOutputSchema>;
