/**
 * Serves the demo update feed on its own, for a Gantry that does not run it itself (one started
 * with GANTRY_DEMO_FEED=off, or elsewhere). `npm start` on the embedded default needs none of
 * this: it generates and serves the same feed in-process (feed/demo-feed.ts).
 *
 *   npm run demo:feed              # then, in another terminal, the printed `... npm start`
 */
import fs from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../core/config.js';
import { ensureDemoFeed } from '../feed/demo-feed.js';
import { serveStaticDir } from '../feed/static-server.js';

const port = Number(process.env.DEMO_FEED_PORT ?? 8090);
const config = loadConfig();
const feed = await ensureDemoFeed({
  dir: path.join(config.dataDir, 'demo-feed'),
  models: [...new Set(config.gateways.map((g) => g.model))],
});
// A Gantry given this feed by environment trusts bundle-signing keys found here (development).
const keysDir = path.join(config.dataDir, 'trusted-keys');
fs.mkdirSync(keysDir, { recursive: true });
fs.copyFileSync(path.join(feed.dir, 'keys', 'vendor.pub'), path.join(keysDir, 'demo-vendor.pem'));
const server = await serveStaticDir(feed.repoDir, { port });
console.log(
  `Demo feed on ${server.url} (${feed.releases.join(', ')}; ${feed.generated ? 'generated now' : 'reused'}). Start Gantry with:`,
);
console.log(
  `  GANTRY_DATA_DIR=${config.dataDir} GANTRY_FEED_URL=${server.url} GANTRY_FEED_ROOT=${feed.rootPath} npm start`,
);
