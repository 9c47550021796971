import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { launchedLikeTheServer, requestJson, startGantryChild } from '../../bench/lib/gantry-child.js';
import { buildServer } from '../../scripts/build-server.js';
import { CODE_CACHE_FILE } from '../../server/code-cache-name.js';
import { makeTempDir } from '../helpers/temp.js';

/**
 * The foundation bench's dependency floor (bench/lib/dependency-floor.ts): Gantry's packages and
 * none of its code, against which Gantry's idle memory is read. It only means something while it
 * bundles the very packages the server does, and serves the login and GET /status the idle
 * measure asks for.
 */

const ROOT = path.resolve(import.meta.dirname, '..', '..');
// Two levels below the repository, as dist/server-bundle, so node_modules (better-sqlite3) resolve.
const serverDir = path.join(ROOT, 'dist', `floor-test-server-${process.pid}`);
const floorDir = path.join(ROOT, 'dist', `floor-test-floor-${process.pid}`);
afterAll(() => {
  fs.rmSync(serverDir, { recursive: true, force: true });
  fs.rmSync(floorDir, { recursive: true, force: true });
});

describe('the dependency floor', () => {
  it("should bundle exactly the server's packages, and serve a login and GET /status as Gantry does", async () => {
    const server = await buildServer(serverDir);
    const floor = await buildServer(floorDir, 'bench/lib/dependency-floor.ts');
    expect(floor.packages).toEqual(server.packages);
    expect(server.packages).toEqual(expect.arrayContaining(['express', 'zod', 'xstate', 'drizzle-orm']));
    // Far less source than the server: none of Gantry's own modules.
    expect(fs.statSync(path.join(floorDir, 'server.cjs')).size).toBeLessThan(
      fs.statSync(path.join(serverDir, 'server.cjs')).size,
    );

    // Its build ships its code cache, as the server's does (scripts/build-server.ts).
    expect(fs.readdirSync(floorDir).filter((n) => CODE_CACHE_FILE.test(n))).toHaveLength(1);

    const dataDir = makeTempDir('gantry-floor-');
    // restart: a gateway that has run before, as the idle measure starts it.
    const g = await startGantryChild(launchedLikeTheServer(floorDir), { dataDir, restart: true });
    try {
      const status = await requestJson('GET', `${g.url}/api/v1/ota/status`, { headers: g.headers });
      expect(status.status).toBe(200);
      expect(status.body).toEqual({ success: true, data: { active: 'A', slot: 'good' } });
      const anonymous = await requestJson('GET', `${g.url}/api/v1/ota/status`);
      expect(anonymous.status).toBe(401);
      // The launcher's node took the shipped cache: it wrote none of its own.
      expect(fs.existsSync(path.join(dataDir, 'cache'))).toBe(false);
    } finally {
      await g.stop();
    }
  }, 120_000);
});
