import { formatEta, isoSeconds } from '../../core/format.js';
import type { OverrideResult, SafetyStatus } from '../../services/safety.js';
import type { SafetyOverrideOutput, SafetyStatusOutput } from '../schemas/safety.js';

/** GET /safety as documented: a crane's `estimated_clear` as "MM:SS", `expires_at` in ISO seconds. */
export function presentSafetyStatus(s: SafetyStatus): SafetyStatusOutput {
  const { estimatedClearSeconds, ...crane } = s.constraints.crane_motion;
  return {
    constraints: {
      ...s.constraints,
      crane_motion: {
        ...crane,
        estimated_clear: estimatedClearSeconds === null ? null : formatEta(estimatedClearSeconds),
      },
    },
    force_override: s.forceOverride,
    update_allowed: s.updateAllowed,
    override: s.override && {
      constraints: s.override.constraints,
      expires_at: isoSeconds(s.override.expiresAt),
      reason: s.override.reason,
      enabled_by: s.override.enabledBy,
    },
    thresholds: {
      ups_min_battery_percent: s.thresholds.upsMinBatteryPercent,
      max_system_load: s.thresholds.maxSystemLoad,
    },
  };
}

export function presentOverrideResult(r: OverrideResult): SafetyOverrideOutput {
  return {
    override_enabled: r.overrideEnabled,
    expires_at: r.expiresAt === null ? null : isoSeconds(r.expiresAt),
    overridden_constraints: r.overriddenConstraints,
    update_allowed: r.updateAllowed,
  };
}
