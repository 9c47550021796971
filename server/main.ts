import { ConfigError, loadConfig } from '../core/config.js';
import { startGantry, type RunningGantry } from './gantry.js';

/** Where updates come from, said at start-up: the demo feed is marked as such. */
function feedBanner(gantry: RunningGantry): string[] {
  const { deps } = gantry;
  const demo = deps.demoFeed;
  const ids = deps.gateways.ids();
  const feeds = ids.map((id) => ({ id, feed: deps.feeds.resolve(id) }));
  const lines: string[] = [];
  const onDemo = feeds.filter((f) => f.feed?.origin === 'demo').map((f) => f.id);
  if (demo && onDemo.length > 0) {
    lines.push(
      `  updates: ${demo.label}: ${demo.releases.join(', ')} for the simulated gateway (${onDemo.join(', ')}),`,
      `    ${demo.generated ? 'generated now' : 'generated at the first start'} and signed with its own key in ${demo.dir}.`,
      `    A real feed replaces it: GANTRY_FEED_URL + GANTRY_FEED_ROOT, or a configuration ZIP.`,
    );
  }
  for (const { id, feed } of feeds) {
    if (feed && feed.origin !== 'demo') lines.push(`  updates of ${id}: ${feed.label} (${feed.origin})`);
  }
  const none = feeds.filter((f) => !f.feed).map((f) => f.id);
  if (none.length > 0) {
    lines.push(
      `  updates: no update feed configured for ${none.join(', ')} (set GANTRY_FEED_URL + GANTRY_FEED_ROOT, or apply a configuration ZIP)`,
    );
  }
  return lines;
}

async function main(): Promise<{ dataDir: string }> {
  // Not performance.now(): the global loads perf_hooks, which an idle server has no other use for.
  const t0 = process.hrtime.bigint();
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
  const gantry = await startGantry(config);
  const ms = Number((process.hrtime.bigint() - t0) / 1_000_000n);
  console.log(`Gantry listening on ${gantry.url} (data: ${config.dataDir}, started in ${ms} ms)`);
  console.log(`  gateways: ${gantry.deps.gateways.ids().join(', ')} (${config.device} device)`);
  console.log(`  operator page: ${gantry.url}/ota-system-updates   API reference: ${gantry.url}/api/docs`);
  for (const line of feedBanner(gantry)) console.log(line);
  if (gantry.generatedAdminPassword) {
    console.log('');
    console.log('  First start: an admin account was created. This password is shown once:');
    console.log(`    username: admin`);
    console.log(`    password: ${gantry.generatedAdminPassword}`);
    console.log('');
  }
  const pins = await gantry.deps.safety.takeGeneratedPins();
  for (const [gatewayId, pin] of Object.entries(pins)) {
    console.log(
      `  First start: safety override PIN of ${gatewayId} (shown once; set GANTRY_SAFETY_PIN to choose): ${pin}`,
    );
  }
  const shutdown = (signal: string) => {
    console.log(`Gantry: ${signal}, shutting down`);
    gantry.stop().then(
      () => process.exit(0),
      (err) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  return { dataDir: config.dataDir };
}

/** Settles once the server listens (the bundle's loader, server/bundle-loader.ts, then settles its code cache). */
export const started: Promise<{ dataDir: string } | null> = main().catch((err: unknown) => {
  console.error('Gantry failed to start:', err);
  process.exit(1);
  return null;
});
