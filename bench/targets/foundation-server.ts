import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import express from 'express';
import { loadConfig } from '../../core/config.js';
import { startGantry } from '../../server/gantry.js';

/**
 * Load-test target for bench/foundation.ts, run as its own process so autocannon does not share
 * the server's event loop: a real Gantry (temp data dir) and, in the same process, a bare Express
 * route serving the very JSON Gantry answered. Prints one JSON line when both listen; SIGTERM stops.
 */

const GATEWAY = 'GW-3920A9';
const PASSWORD = 'bench-admin-password';

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-bench-'));
const gantry = await startGantry(
  loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    GANTRY_DATA_DIR: dataDir,
    GANTRY_ADMIN_PASSWORD: PASSWORD,
  }),
);

const login = await fetch(`${gantry.url}/api/v1/auth/login`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ username: 'admin', password: PASSWORD }),
});
const token = ((await login.json()) as { data: { token: string } }).data.token;
const headers = { authorization: `Bearer ${token}`, 'x-gateway-id': GATEWAY };
const status = await fetch(`${gantry.url}/api/v1/ota/status`, { headers });
if (status.status !== 200) throw new Error(`status answered ${status.status}`);
const statusBody: unknown = await status.json();

const bare = express();
bare.get('/api/v1/ota/status', (_req, res) => {
  res.json(statusBody);
});
const bareServer = await new Promise<ReturnType<typeof bare.listen>>((resolve) => {
  const s = bare.listen(0, '127.0.0.1', () => resolve(s));
});
const barePort = (bareServer.address() as AddressInfo).port;

process.stdout.write(
  `${JSON.stringify({
    gantryUrl: `${gantry.url}/api/v1/ota/status`,
    bareUrl: `http://127.0.0.1:${barePort}/api/v1/ota/status`,
    headers,
    responseBytes: JSON.stringify(statusBody).length,
  })}\n`,
);

process.once('SIGTERM', () => {
  bareServer.closeAllConnections();
  bareServer.close();
  void gantry
    .stop()
    .finally(() => fs.rmSync(dataDir, { recursive: true, force: true }))
    .finally(() => process.exit(0));
});
