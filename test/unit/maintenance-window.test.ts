import { describe, expect, it } from 'vitest';
import { settingsDocumentSchema, type SettingsDocument } from '../../api/schemas/settings.js';
import { nextMaintenanceWindow } from '../../services/maintenance-window.js';

type Window = SettingsDocument['maintenance_window'];

function windowOf(patch: Partial<Window> = {}): Window {
  return settingsDocumentSchema.parse({ maintenance_window: patch }).maintenance_window;
}

function next(patch: Partial<Window>, timezone: string, from: string): string | null {
  return nextMaintenanceWindow(windowOf(patch), timezone, new Date(from))?.toISOString() ?? null;
}

describe('nextMaintenanceWindow', () => {
  it('should return the default daily 02:00 window of the next day once today’s has passed', () => {
    // The spec's example: settings saved on 2025-03-15 → "2025-03-16T02:00:00Z".
    expect(next({}, 'UTC', '2025-03-15T10:00:00Z')).toBe('2025-03-16T02:00:00.000Z');
  });

  it('should return today’s window when its time is still ahead', () => {
    expect(next({ time: '23:30' }, 'UTC', '2025-03-15T10:00:00Z')).toBe('2025-03-15T23:30:00.000Z');
  });

  it('should move to tomorrow when the window starts exactly now', () => {
    expect(next({ time: '02:00' }, 'UTC', '2025-03-15T02:00:00Z')).toBe('2025-03-16T02:00:00.000Z');
  });

  it('should return null when the window is disabled', () => {
    expect(next({ enabled: false }, 'UTC', '2025-03-15T10:00:00Z')).toBeNull();
    expect(
      next({ enabled: false, schedule: 'weekly' }, 'Europe/Amsterdam', '2025-03-15T10:00:00Z'),
    ).toBeNull();
  });

  describe('weekly', () => {
    // 2025-03-15 is a Saturday.
    it('should return the named weekday later this week', () => {
      expect(
        next({ schedule: 'weekly', day: 'wednesday', time: '04:15' }, 'UTC', '2025-03-15T02:00:00Z'),
      ).toBe('2025-03-19T04:15:00.000Z');
    });

    it('should return today when today is the day and the time is still ahead', () => {
      expect(
        next({ schedule: 'weekly', day: 'saturday', time: '04:15' }, 'UTC', '2025-03-15T02:00:00Z'),
      ).toBe('2025-03-15T04:15:00.000Z');
    });

    it('should return next week when today is the day but the time has passed', () => {
      expect(
        next({ schedule: 'weekly', day: 'saturday', time: '01:15' }, 'UTC', '2025-03-15T02:00:00Z'),
      ).toBe('2025-03-22T01:15:00.000Z');
    });

    it('should map sunday to day 0 (not 7 or monday)', () => {
      expect(next({ schedule: 'weekly', day: 'sunday', time: '00:00' }, 'UTC', '2025-03-15T12:00:00Z')).toBe(
        '2025-03-16T00:00:00.000Z',
      );
    });

    it('should pick the weekday in the gateway’s zone, not in UTC', () => {
      // Monday 00:30 in Tokyo is still Sunday 15:30 UTC.
      expect(
        next({ schedule: 'weekly', day: 'monday', time: '00:30' }, 'Asia/Tokyo', '2025-03-15T12:00:00Z'),
      ).toBe('2025-03-16T15:30:00.000Z');
    });
  });

  describe('in Europe/Amsterdam (CET/CEST)', () => {
    const tz = 'Europe/Amsterdam';

    it('should keep 03:00 local across the spring-forward change (UTC+1 → UTC+2)', () => {
      // Saturday 2025-03-29 is still CET: 03:00 local = 02:00Z.
      expect(next({ time: '03:00' }, tz, '2025-03-28T12:00:00Z')).toBe('2025-03-29T02:00:00.000Z');
      // Sunday 2025-03-30, clocks jump at 02:00 CET: 03:00 local = 01:00Z.
      expect(next({ time: '03:00' }, tz, '2025-03-29T12:00:00Z')).toBe('2025-03-30T01:00:00.000Z');
      expect(next({ time: '03:00' }, tz, '2025-03-30T12:00:00Z')).toBe('2025-03-31T01:00:00.000Z');
    });

    it('should not skip a 02:00 window on the day 02:00 does not exist locally', () => {
      // 02:00–03:00 is skipped on 2025-03-30; the window must still happen that night (at 03:00
      // CEST = 01:00Z) rather than silently moving to Monday.
      const at = next({ time: '02:00' }, tz, '2025-03-29T12:00:00Z');
      expect(at).not.toBeNull();
      expect(at!.startsWith('2025-03-30')).toBe(true);
      expect(at).toBe('2025-03-30T01:00:00.000Z');
    });

    it('should keep 04:00 local across the fall-back change (UTC+2 → UTC+1)', () => {
      expect(next({ time: '04:00' }, tz, '2025-10-25T12:00:00Z')).toBe('2025-10-26T03:00:00.000Z');
      expect(next({ time: '04:00' }, tz, '2025-10-24T12:00:00Z')).toBe('2025-10-25T02:00:00.000Z');
    });

    it('should run a window in the repeated hour once, at its first occurrence', () => {
      // 02:30 happens twice on 2025-10-26: first in CEST (00:30Z), then in CET (01:30Z).
      expect(next({ time: '02:30' }, tz, '2025-10-25T12:00:00Z')).toBe('2025-10-26T00:30:00.000Z');
      expect(next({ time: '02:30' }, tz, '2025-10-26T00:30:00Z')).toBe('2025-10-27T01:30:00.000Z');
    });

    it('should keep a weekly window on its local weekday and time across the change', () => {
      const w = { schedule: 'weekly' as const, day: 'sunday' as const, time: '05:00' };
      expect(next(w, tz, '2025-03-24T00:00:00Z')).toBe('2025-03-30T03:00:00.000Z');
      expect(next(w, tz, '2025-03-17T00:00:00Z')).toBe('2025-03-23T04:00:00.000Z');
    });
  });
});
