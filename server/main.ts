import { ConfigError, loadConfig } from '../core/config.js';
import { startGantry } from './gantry.js';

async function main(): Promise<void> {
  const t0 = performance.now();
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
  const ms = Math.round(performance.now() - t0);
  console.log(`Gantry listening on ${gantry.url} (data: ${config.dataDir}, started in ${ms} ms)`);
  console.log(`  gateways: ${gantry.deps.gateways.ids().join(', ')} (${config.device} device)`);
  console.log(`  operator page: ${gantry.url}/ota-system-updates   API reference: ${gantry.url}/api/docs`);
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
}

main().catch((err) => {
  console.error('Gantry failed to start:', err);
  process.exit(1);
});
