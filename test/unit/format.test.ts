import { describe, expect, it } from 'vitest';
import {
  formatBytes,
  formatEta,
  formatHms,
  formatSpeed,
  formatUptime,
  isoSeconds,
} from '../../core/format.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

describe('isoSeconds', () => {
  it('should print UTC without milliseconds, as the spec’s timestamps', () => {
    expect(isoSeconds(Date.parse('2025-03-15T10:25:30Z'))).toBe('2025-03-15T10:25:30Z');
  });

  it('should truncate, not round, the milliseconds', () => {
    expect(isoSeconds(Date.parse('2025-03-15T10:25:30.999Z'))).toBe('2025-03-15T10:25:30Z');
  });
});

describe('formatBytes', () => {
  it('should print the spec’s sizes with a space by default', () => {
    expect(formatBytes(452 * MiB)).toBe('452 MB');
    expect(formatBytes(150 * MiB)).toBe('150 MB');
    expect(formatBytes(950 * MiB)).toBe('950 MB');
  });

  it('should print the partition cards’ sizes without a space when compact', () => {
    expect(formatBytes(8 * GiB, { compact: true })).toBe('8GB');
    expect(formatBytes(3.2 * GiB, { compact: true })).toBe('3.2GB');
    expect(formatBytes(2.8 * GiB, { compact: true })).toBe('2.8GB');
  });

  it('should keep one decimal below 100 and none from 100 up', () => {
    expect(formatBytes(1.5 * KiB)).toBe('1.5 KB');
    expect(formatBytes(99.94 * MiB)).toBe('99.9 MB');
    expect(formatBytes(123.4 * MiB)).toBe('123 MB');
  });

  it('should print whole bytes below 1 KB and clamp negatives to 0', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(-5)).toBe('0 B');
  });

  it('should switch unit exactly at 1024', () => {
    expect(formatBytes(1024)).toBe('1 KB');
    expect(formatBytes(MiB)).toBe('1 MB');
  });

  it('should not print "1024 KB" when rounding reaches the next unit (regression)', () => {
    expect(formatBytes(MiB - 1)).toBe('1 MB');
    expect(formatBytes(GiB - 100)).toBe('1 GB');
  });

  it('should stay in TB beyond the largest unit', () => {
    expect(formatBytes(2048 * 1024 * GiB)).toBe('2048 TB');
  });
});

describe('formatUptime', () => {
  it('should print days, hours and minutes as "19d 3h 12m"', () => {
    expect(formatUptime(19 * 86_400 + 3 * 3600 + 12 * 60 + 59)).toBe('19d 3h 12m');
    expect(formatUptime(0)).toBe('0d 0h 0m');
    expect(formatUptime(-10)).toBe('0d 0h 0m');
  });
});

describe('formatHms', () => {
  it('should print HH:MM:SS', () => {
    expect(formatHms(330)).toBe('00:05:30');
    expect(formatHms(600)).toBe('00:10:00');
    expect(formatHms(36 * 3600 + 1)).toBe('36:00:01');
    expect(formatHms(-3)).toBe('00:00:00');
  });
});

describe('formatEta', () => {
  it('should print MM:SS below an hour and HH:MM:SS from an hour', () => {
    expect(formatEta(30)).toBe('00:30');
    expect(formatEta(135)).toBe('02:15');
    expect(formatEta(3599)).toBe('59:59');
    expect(formatEta(3600)).toBe('01:00:00');
  });
});

describe('formatSpeed', () => {
  it('should print "8.2 MB/s"', () => {
    expect(formatSpeed(8.2 * MiB)).toBe('8.2 MB/s');
    expect(formatSpeed(12.5 * MiB)).toBe('12.5 MB/s');
  });
});
