import { CELLULAR_LINK, startThrottledLink } from './throttle-link.js';

/**
 * Child process for bench/delta.ts: the throttled link (bench/lib/throttle-link.ts) in its own
 * process, so its timers never wait behind the benchmark's own work. Prints `{"url": …}` once
 * listening; SIGTERM stops it.
 *
 *   node --import tsx bench/lib/throttle-link-main.ts UPSTREAM_URL [BYTES_PER_SECOND] [RTT_MS]
 */

const upstream = new URL(process.argv[2] ?? '');
const bytesPerSecond = Number(process.argv[3] ?? CELLULAR_LINK.bytesPerSecond);
const rttMs = Number(process.argv[4] ?? CELLULAR_LINK.rttMs);

const link = await startThrottledLink(
  { host: upstream.hostname, port: Number(upstream.port || 80) },
  { bytesPerSecond, rttMs },
);
process.stdout.write(`${JSON.stringify({ url: link.url, bytesPerSecond, rttMs })}\n`);
process.once('SIGTERM', () => {
  void link.close().then(() => process.exit(0));
});
