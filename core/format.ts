/** Formatting shared by every response: the spec's human-readable sizes, durations and timestamps. */

/** ISO-8601 UTC without milliseconds, as every timestamp in the spec ("2025-03-15T10:25:30Z"). */
export function isoSeconds(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB'] as const;

/**
 * Binary sizes with the spec's short units: "452 MB", or "8GB" with `compact` (the partition cards
 * print sizes without a space, the update list with one; we keep both as documented).
 */
export function formatBytes(bytes: number, opts: { compact?: boolean } = {}): string {
  let value = Math.max(0, bytes);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  let rounded = value >= 100 || unit === 0 ? Math.round(value) : Math.round(value * 10) / 10;
  // 1023.6 KB rounds to 1024: show "1 MB", not "1024 KB".
  if (rounded >= 1024 && unit < UNITS.length - 1) {
    rounded = 1;
    unit++;
  }
  return `${rounded}${opts.compact ? '' : ' '}${UNITS[unit]}`;
}

/** Uptime as "19d 3h 12m". */
export function formatUptime(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${d}d ${h}h ${m}m`;
}

const pad = (n: number) => String(n).padStart(2, '0');

/** "HH:MM:SS" (elapsed times, estimated durations). */
export function formatHms(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}`;
}

/** "MM:SS" below an hour, else "HH:MM:SS" (the spec's progress `eta`: "00:30"). */
export function formatEta(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return s < 3600 ? `${pad(Math.floor(s / 60))}:${pad(s % 60)}` : formatHms(s);
}

/** Transfer speed, "8.2 MB/s". */
export function formatSpeed(bytesPerSecond: number): string {
  return `${formatBytes(bytesPerSecond)}/s`;
}
