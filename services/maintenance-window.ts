import { Cron } from 'croner';
import { WEEKDAYS } from '../core/vocabulary.js';
import type { SettingsDocument } from '../core/settings-document.js';

/**
 * Next start of the maintenance window after `from`, in the gateway's time zone (croner resolves
 * the zone's offset on that date, so a window at 02:00 stays at 02:00 local across DST changes).
 * Null when the window is disabled.
 */
export function nextMaintenanceWindow(
  window: SettingsDocument['maintenance_window'],
  timezone: string,
  from: Date,
): Date | null {
  if (!window.enabled) return null;
  const [hh, mm] = window.time.split(':').map(Number);
  const dayOfWeek = window.schedule === 'weekly' ? String(WEEKDAYS.indexOf(window.day)) : '*';
  const cron = new Cron(`0 ${mm} ${hh} * * ${dayOfWeek}`, { timezone, paused: true });
  return cron.nextRun(from);
}
