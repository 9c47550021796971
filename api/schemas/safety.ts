import { z } from 'zod';
import { SAFETY_CONSTRAINTS, SLOT_IDS } from '../../core/vocabulary.js';

/** SECTION 6 (GET /safety, POST /safety/override) and the simulator controls used by tests and demos. */

/**
 * A PIN attempt: any string up to 64 characters. Its form is deliberately not checked here: one that
 * is not 4 to 8 digits is a wrong PIN like any other (OTA_INVALID_PIN, counted towards the lockout),
 * so a malformed PIN is no free probe of the endpoint. Only a missing, non-string or oversized PIN
 * is a VALIDATION_ERROR (nothing to check, or not worth hashing).
 */
export const pinAttemptSchema = z.lazy(() => z.string().max(64, 'at most 64 characters'));
const pin = pinAttemptSchema;

/**
 * The documented `{enable, pin, reason, constraints}`. Enabling needs all four; disabling needs only
 * `enable: false` (the PIN, if sent, is not checked: ending an override only makes the gateway
 * safer, and a PIN lockout must never keep an override alive).
 */
export const safetyOverrideInputSchema = z.lazy(() =>
  z.discriminatedUnion('enable', [
    z.strictObject({
      enable: z.literal(true),
      pin,
      reason: z.string().trim().min(1, 'required').max(500),
      constraints: z.array(z.enum(SAFETY_CONSTRAINTS)).min(1, 'name at least one constraint'),
    }),
    z.strictObject({
      enable: z.literal(false),
      pin: pin.optional(),
      reason: z.string().max(500).optional(),
      constraints: z.array(z.enum(SAFETY_CONSTRAINTS)).optional(),
    }),
  ]),
);
export type SafetyOverrideInput = z.infer<typeof safetyOverrideInputSchema>;

export const safetyOverrideOutputSchema = z.lazy(() =>
  z.object({
    override_enabled: z.boolean(),
    expires_at: z.string().nullable(),
    overridden_constraints: z.array(z.enum(SAFETY_CONSTRAINTS)),
    update_allowed: z.boolean(),
  }),
);
export type SafetyOverrideOutput = z.infer<typeof safetyOverrideOutputSchema>;

const constraintBase = {
  enabled: z.boolean(),
  status: z.string(),
  /** Blocks updates now: condition met, enabled, not overridden. */
  blocking: z.boolean(),
  overridden: z.boolean(),
};

export const safetyStatusOutputSchema = z.lazy(() =>
  z.object({
    constraints: z.object({
      crane_motion: z.object({
        ...constraintBase,
        status: z.enum(['idle', 'moving', 'unknown']),
        /** "MM:SS" until a moving crane is expected to stop, where the crane controller says. */
        estimated_clear: z.string().nullable(),
      }),
      acs_collision: z.object({
        ...constraintBase,
        status: z.enum(['clear', 'warning', 'collision_risk', 'unknown']),
      }),
      ups_battery: z.object({
        ...constraintBase,
        status: z.enum(['ok', 'low', 'unknown']),
        /** Charge in percent; null when unknown. */
        level: z.number().nullable(),
      }),
      network: z.object({ ...constraintBase, status: z.enum(['connected', 'disconnected', 'unknown']) }),
      system_load: z.object({
        ...constraintBase,
        status: z.enum(['normal', 'high', 'unknown']),
        /** 1-minute load average per CPU; null when unknown. */
        load: z.number().nullable(),
      }),
    }),
    force_override: z.boolean(),
    update_allowed: z.boolean(),
    override: z
      .object({
        constraints: z.array(z.enum(SAFETY_CONSTRAINTS)),
        expires_at: z.string(),
        reason: z.string(),
        enabled_by: z.string(),
      })
      .nullable(),
    thresholds: z.object({ ups_min_battery_percent: z.number(), max_system_load: z.number() }),
  }),
);
export type SafetyStatusOutput = z.infer<typeof safetyStatusOutputSchema>;

// --- Simulator controls (development and tests; simulated gateways only) ----------------------

export const simulatorSensorsInputSchema = z.lazy(() =>
  z
    .strictObject({
      crane_motion: z.enum(['idle', 'moving']),
      acs_collision: z.enum(['clear', 'warning', 'collision_risk']),
      ups_battery: z.number().min(0).max(100),
      network_connected: z.boolean(),
      /** Load per CPU; null returns to the host's real load. */
      system_load: z.number().min(0).max(64).nullable(),
      crane_estimated_clear_seconds: z.int().min(0).max(86_400).nullable(),
    })
    .partial(),
);
export type SimulatorSensorsInput = z.infer<typeof simulatorSensorsInputSchema>;

export const simulatorSensorsOutputSchema = z.lazy(() =>
  z.object({
    crane_motion: z.enum(['idle', 'moving']),
    acs_collision: z.enum(['clear', 'warning', 'collision_risk']),
    ups_battery: z.number(),
    network_connected: z.boolean(),
    system_load: z.number(),
    crane_estimated_clear_seconds: z.number().nullable(),
  }),
);

export const simulatorBootFailuresInputSchema = z.lazy(() =>
  z.strictObject({
    slot: z.enum(SLOT_IDS),
    /** Boots of that slot that will fail (kernel panic / watchdog) before one succeeds; 0 clears. */
    count: z.int().min(0).max(16),
  }),
);
export const simulatorBootFailuresOutputSchema = z.lazy(() =>
  z.object({
    slot: z.enum(SLOT_IDS),
    count: z.int(),
  }),
);

export const simulatorIgnoredRebootsInputSchema = z.lazy(() =>
  z.strictObject({
    /** Reboot requests still to be accepted without the gateway going down (a stalled shutdown); 0 clears. */
    count: z.int().min(0).max(16),
  }),
);
export const simulatorIgnoredRebootsOutputSchema = z.lazy(() => z.object({ count: z.int() }));

export const simulatorSelfTestInputSchema = z.lazy(() =>
  z.strictObject({
    slot: z.enum(SLOT_IDS),
    /** true: the slot's self-test (the health check after each trial boot) fails until set false. */
    fails: z.boolean(),
  }),
);
export const simulatorSelfTestOutputSchema = z.lazy(() =>
  z.object({
    slot: z.enum(SLOT_IDS),
    fails: z.boolean(),
  }),
);

export const simulatorSlotWriteInputSchema = z.lazy(() =>
  z.strictObject({
    slot: z.enum(SLOT_IDS),
    /** Byte offset in the slot's image. */
    offset: z.int().nonnegative(),
    /** The bytes written there, base64 (at most 1 MiB). */
    data: z
      .string()
      .base64()
      .max(Math.ceil((1024 * 1024) / 3) * 4),
  }),
);
export const simulatorSlotWriteOutputSchema = z.lazy(() =>
  z.object({
    slot: z.enum(SLOT_IDS),
    offset: z.int(),
    bytes: z.int(),
  }),
);

export const simulatorRebootInputSchema = z.lazy(() => z.strictObject({}).optional());
export const simulatorRebootOutputSchema = z.lazy(() =>
  z.object({
    booted_slot: z.enum(SLOT_IDS),
    boot_count: z.int(),
    upgrade_available: z.boolean(),
  }),
);
