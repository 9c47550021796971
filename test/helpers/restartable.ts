import { afterEach, beforeEach } from 'vitest';
import { startTestFeed, type TestFeed } from './feed.js';
import { tempDataDir } from './gantry.js';
import { freePort, spawnGantry, type GantryProcess } from './process.js';

export interface RestartableGantry {
  /** This test's feed, trusted by `dataDir`. */
  readonly feed: TestFeed;
  readonly dataDir: string;
  /** Gantry as a child process on this test's data dir and port (the same port at every start). */
  spawn(): Promise<GantryProcess>;
  /** A child the test killed itself: not to be killed again at the end. */
  forget(child: GantryProcess): void;
}

/**
 * For kill -9 tests: registers hooks that give each test a feed, a data dir trusting it and one
 * port, so Gantry started again after a SIGKILL answers at the same address on the same data; the
 * children still running when the test ends are killed, and the feed closed.
 */
export function useRestartableGantry(): RestartableGantry {
  let feed: TestFeed | undefined;
  let dataDir = '';
  let port = 0;
  const children: GantryProcess[] = [];
  beforeEach(async () => {
    feed = await startTestFeed();
    dataDir = tempDataDir();
    feed.trustIn(dataDir);
    port = await freePort();
  });
  afterEach(async () => {
    for (const child of children.splice(0)) await child.kill('SIGKILL');
    await feed?.close();
    feed = undefined;
  });
  return {
    get feed(): TestFeed {
      if (!feed) throw new Error('no feed outside a test');
      return feed;
    },
    get dataDir(): string {
      return dataDir;
    },
    async spawn() {
      const child = await spawnGantry({ dataDir, port, env: this.feed.env });
      children.push(child);
      return child;
    },
    forget(child) {
      const at = children.indexOf(child);
      if (at >= 0) children.splice(at, 1);
    },
  };
}
