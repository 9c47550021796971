/** Nearest-rank percentile (p in 0–100) of unsorted samples; NaN for none. */
export function percentile(values: number[], p: number): number {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function mib(bytes: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round((bytes / (1024 * 1024)) * f) / f;
}
