import autocannon from 'autocannon';
import { round } from './report.js';

export interface LoadResult {
  requestsPerSecond: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  requests: number;
  non2xx: number;
  errors: number;
  durationSeconds: number;
}

/** One autocannon run (programmatic API) against `url`; throws if any response was not 2xx. */
export async function load(
  url: string,
  opts: { connections: number; durationSeconds: number; headers?: Record<string, string>; title?: string },
): Promise<LoadResult> {
  const result = await autocannon({
    url,
    title: opts.title,
    connections: opts.connections,
    duration: opts.durationSeconds,
    headers: opts.headers,
  });
  if (result.non2xx > 0 || result.errors > 0) {
    throw new Error(`${opts.title ?? url}: ${result.non2xx} non-2xx responses, ${result.errors} errors`);
  }
  return {
    requestsPerSecond: round(result.requests.average, 0),
    latencyMs: {
      p50: result.latency.p50,
      p90: result.latency.p90,
      p99: result.latency.p99,
      max: result.latency.max,
    },
    requests: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors,
    durationSeconds: result.duration,
  };
}
