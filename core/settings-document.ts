import { z } from 'zod';
import { UPDATE_STRATEGIES, WEEKDAYS } from './vocabulary.js';

/**
 * Per-gateway settings as the domain keeps them: the stored document, validated on the way in and
 * out of the settings table. Every field has a default so a document written by an older Gantry
 * still parses after upgrade. The API's payloads (api/schemas/settings.ts) are built on these.
 */

export const hhmm = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'expected a 24-hour time "HH:MM"');

export const autoUpdateSettingsSchema = z.object({
  enabled: z.boolean().default(false),
  auto_download: z.boolean().default(true),
  auto_security: z.boolean().default(true),
  auto_reboot: z.boolean().default(false),
});

export const maintenanceWindowSchema = z.object({
  enabled: z.boolean().default(true),
  schedule: z.enum(['daily', 'weekly']).default('daily'),
  /** Local time of the gateway's time zone. */
  time: hhmm.default('02:00'),
  /** Day of a weekly window; ignored for daily. */
  day: z.enum(WEEKDAYS).default('sunday'),
  duration_minutes: z.int().min(15).max(720).default(120),
});

/**
 * SECTION 6: which safety constraints are enforced (all by default) and their thresholds. Flat, so
 * a partial update merges with one spread. Turning a constraint off is configuration (admin).
 */
export const safetySettingsSchema = z.object({
  crane_motion: z.boolean().default(true),
  acs_collision: z.boolean().default(true),
  ups_battery: z.boolean().default(true),
  network: z.boolean().default(true),
  system_load: z.boolean().default(true),
  /** Below this UPS charge (percent) an update is blocked; the spec's "typically 30%". */
  ups_min_battery_percent: z.int().min(0).max(100).default(30),
  /** 1-minute load average per CPU above which an update is blocked. */
  max_system_load: z.number().min(0.1).max(10).default(0.9),
});
export type SafetySettings = z.infer<typeof safetySettingsSchema>;

export const settingsDocumentSchema = z.object({
  auto_update: autoUpdateSettingsSchema.prefault({}),
  maintenance_window: maintenanceWindowSchema.prefault({}),
  update_strategy: z.enum(UPDATE_STRATEGIES).default('seamless'),
  auto_rollback: z.boolean().default(true),
  rollback_retries: z.int().min(1).max(10).default(3),
  /** Periodic update checks against the feed (the `next_check` of /monitor). */
  auto_check: z.boolean().default(true),
  check_interval_hours: z.int().min(1).max(168).default(6),
  safety: safetySettingsSchema.prefault({}),
});
export type SettingsDocument = z.infer<typeof settingsDocumentSchema>;

/** POST /settings: any subset, nested objects merged field by field; unknown fields are an error. */
export const settingsPatchSchema = z.strictObject({
  auto_update: z
    .strictObject({
      enabled: z.boolean(),
      auto_download: z.boolean(),
      auto_security: z.boolean(),
      auto_reboot: z.boolean(),
    })
    .partial()
    .optional(),
  maintenance_window: z
    .strictObject({
      enabled: z.boolean(),
      schedule: z.enum(['daily', 'weekly']),
      time: hhmm,
      day: z.enum(WEEKDAYS),
      duration_minutes: z.int().min(15).max(720),
    })
    .partial()
    .optional(),
  update_strategy: z.enum(UPDATE_STRATEGIES).optional(),
  auto_rollback: z.boolean().optional(),
  rollback_retries: z.int().min(1).max(10).optional(),
  auto_check: z.boolean().optional(),
  check_interval_hours: z.int().min(1).max(168).optional(),
  safety: z
    .strictObject({
      crane_motion: z.boolean(),
      acs_collision: z.boolean(),
      ups_battery: z.boolean(),
      network: z.boolean(),
      system_load: z.boolean(),
      ups_min_battery_percent: z.int().min(0).max(100),
      max_system_load: z.number().min(0.1).max(10),
    })
    .partial()
    .optional(),
});
export type SettingsPatch = z.infer<typeof settingsPatchSchema>;
