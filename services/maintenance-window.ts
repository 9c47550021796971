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
  // UTC needs no zone data: croner then never creates an Intl.DateTimeFormat, whose first use pages
  // in ~6 MiB of ICU's locale and zone data for the life of the process (same dates either way).
  const zone = timezone === 'UTC' ? { utcOffset: 0 } : { timezone };
  const cron = new Cron(`0 ${mm} ${hh} * * ${dayOfWeek}`, { ...zone, paused: true });
  return cron.nextRun(from);
}
