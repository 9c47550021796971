import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyBundle } from '../../bundle/stream.js';
import type { GantryConfig } from '../../core/config.js';
import { DEMO_RELEASES, ensureDemoFeed, startDemoFeed, type RunningDemoFeed } from '../../feed/demo-feed.js';
import { FeedClient } from '../../feed/index.js';
import { serveStaticDir, type StaticFeedServer } from '../../feed/static-server.js';
import { demoFeedWanted, FeedSources, type FeedSourcesDeps } from '../../server/feed-sources.js';
import { tempDir } from './helpers.js';

const MODELS = ['Univa-GW-Pro'];
const SMALL = 64 * 1024;

describe('ensureDemoFeed', () => {
  const root = tempDir('gantry-demo-');
  const dir = path.join(root, 'demo-feed');
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  it('should generate a TUF feed of the demo releases, signed with its own keys, that a client verifies', async () => {
    const feed = await startDemoFeed({ dir, models: MODELS, imageBytes: SMALL });
    try {
      expect(feed.generated).toBe(true);
      expect(feed.label).toBe(`demo feed (local, ${feed.url})`);
      expect(feed.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(fs.statSync(path.join(dir, 'keys', 'vendor.key')).mode & 0o077).toBe(0);
      expect(fs.existsSync(`${dir}.partial`)).toBe(false);
      const client = new FeedClient({
        metadataDir: feed.clientDir('GW-1'),
        metadataBaseUrl: feed.url,
        targetBaseUrl: `${feed.url}/targets`,
        trustedRoot: fs.readFileSync(feed.rootPath),
      });
      const targets = await client.refresh();
      expect(targets.map((t) => t.custom?.version)).toEqual(DEMO_RELEASES.map((r) => r.version));
      for (const t of targets) expect(t.custom?.compatible).toEqual(MODELS);
      const bundle = await verifyBundle(
        fs.createReadStream(path.join(feed.repoDir, 'targets', targets[0]!.path)),
        {
          trustedKeys: [feed.signingKey],
        },
      );
      expect(bundle.manifest.version).toBe('v5.0.5');
    } finally {
      await feed.close();
    }
  });

  it('should reuse a complete feed: same keys and bundles, nothing regenerated', async () => {
    const pub = fs.readFileSync(path.join(dir, 'keys', 'vendor.pub'), 'utf8');
    const root1 = fs.readFileSync(path.join(dir, 'repo', 'root.json'), 'utf8');
    const again = await ensureDemoFeed({ dir, models: MODELS, imageBytes: SMALL });
    expect(again.generated).toBe(false);
    expect(fs.readFileSync(path.join(dir, 'keys', 'vendor.pub'), 'utf8')).toBe(pub);
    expect(fs.readFileSync(path.join(dir, 'repo', 'root.json'), 'utf8')).toBe(root1);
  });

  it('should regenerate when a hosted model is not covered, when damaged, and before it expires', async () => {
    const pub = () => fs.readFileSync(path.join(dir, 'keys', 'vendor.pub'), 'utf8');
    let before = pub();
    const wider = await ensureDemoFeed({ dir, models: [...MODELS, 'Univa-GW-Lite'], imageBytes: SMALL });
    expect(wider.generated).toBe(true);
    expect(pub()).not.toBe(before);

    before = pub();
    fs.writeFileSync(path.join(dir, 'demo-feed.json'), '{ not json');
    expect((await ensureDemoFeed({ dir, models: MODELS, imageBytes: SMALL })).generated).toBe(true);
    expect(pub()).not.toBe(before);

    // Signed for five years: four years and eleven months on, it is renewed rather than left to expire.
    const later = Date.now() + (5 * 365 - 20) * 86_400_000;
    expect(
      (await ensureDemoFeed({ dir, models: MODELS, imageBytes: SMALL, now: () => later })).generated,
    ).toBe(true);
  });
});

describe('serveStaticDir', () => {
  const dir = tempDir('gantry-static-');
  let server: StaticFeedServer;
  beforeAll(async () => {
    fs.writeFileSync(path.join(dir, 'a.bin'), Buffer.from('0123456789'));
    server = await serveStaticDir(dir);
  });
  afterAll(async () => {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('should answer files, single ranges (206), ranges past the end (416), and 404 outside the dir', async () => {
    const whole = await fetch(`${server.url}/a.bin`);
    expect(whole.status).toBe(200);
    expect(await whole.text()).toBe('0123456789');
    const part = await fetch(`${server.url}/a.bin`, { headers: { range: 'bytes=4-' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe('bytes 4-9/10');
    expect(await part.text()).toBe('456789');
    const past = await fetch(`${server.url}/a.bin`, { headers: { range: 'bytes=10-' } });
    expect(past.status).toBe(416);
    expect((await fetch(`${server.url}/2.root.json`)).status).toBe(404);
    expect((await fetch(`${server.url}/%2e%2e/${path.basename(dir)}/a.bin`)).status).toBe(404);
    expect((await fetch(`${server.url}/a.bin`, { method: 'POST' })).status).toBe(405);
  });
});

describe('which feed a gateway uses', () => {
  const base: Pick<GantryConfig, 'device' | 'demoFeed' | 'feedUrl' | 'feedRoot'> = {
    device: 'simulated',
    demoFeed: 'auto',
    feedUrl: undefined,
    feedRoot: undefined,
  };

  it('should run the demo feed only for a simulated device with no feed configured and not turned off', () => {
    expect(demoFeedWanted(base)).toBe(true);
    expect(demoFeedWanted({ ...base, device: 'linux' })).toBe(false);
    expect(demoFeedWanted({ ...base, demoFeed: 'off' })).toBe(false);
    expect(demoFeedWanted({ ...base, feedUrl: 'https://ota.example.com' })).toBe(false);
    expect(demoFeedWanted({ ...base, feedRoot: '/etc/gantry/root.json' })).toBe(false);
  });

  describe('FeedSources', () => {
    const stateDir = tempDir('gantry-feed-state-');
    afterAll(() => fs.rmSync(stateDir, { recursive: true, force: true }));

    const demo = (port: number) =>
      ({
        url: `http://127.0.0.1:${port}`,
        label: `demo feed (local, http://127.0.0.1:${port})`,
        rootPath: '/demo/repo/root.json',
        clientDir: (id: string) => `/demo/clients/${id}`,
      }) as unknown as RunningDemoFeed;

    function sources(opts: { provisioned?: () => boolean; port?: number; demo?: boolean }) {
      const changes: Array<{ from: string | null; to: string | null }> = [];
      const deps: FeedSourcesDeps = {
        config: { feedUrl: undefined, feedTargetsUrl: undefined, feedRoot: undefined },
        provisioned: () =>
          opts.provisioned?.()
            ? {
                metadataUrl: 'https://ota.example.com/metadata',
                targetsUrl: 'https://ota.example.com/targets',
                trustedRootPath: '/cfg/root.json',
              }
            : null,
        demo: opts.demo === false ? null : demo(opts.port ?? 1000),
        stateFile: (id) => path.join(stateDir, id, 'source.json'),
        onChange: (_id, from, to) => changes.push({ from: from?.origin ?? null, to: to?.origin ?? null }),
      };
      return { feeds: new FeedSources(deps), changes };
    }

    it('should prefer the configuration ZIP over the demo feed and tell the switch once, across restarts too', () => {
      const first = sources({});
      expect(first.feeds.resolve('GW-1')).toMatchObject({
        origin: 'demo',
        demo: true,
        metadataDir: '/demo/clients/GW-1',
      });
      expect(first.changes).toEqual([]);

      // A restart puts the demo feed on another port: still the same source.
      const restarted = sources({ port: 2000 });
      expect(restarted.feeds.resolve('GW-1')?.label).toBe('demo feed (local, http://127.0.0.1:2000)');
      expect(restarted.changes).toEqual([]);

      // A configuration ZIP applied while running.
      let provisioned = false;
      const live = sources({ provisioned: () => provisioned, port: 3000 });
      expect(live.feeds.resolve('GW-1')?.origin).toBe('demo');
      provisioned = true;
      expect(live.feeds.resolve('GW-1')).toMatchObject({
        origin: 'configuration',
        label: 'https://ota.example.com',
      });
      expect(live.feeds.resolve('GW-1')?.origin).toBe('configuration');
      expect(live.changes).toEqual([{ from: 'demo', to: 'configuration' }]);

      // After a restart with the configuration gone (factory reset), the demo feed is told again.
      const reset = sources({});
      expect(reset.feeds.resolve('GW-1')?.origin).toBe('demo');
      expect(reset.changes).toEqual([{ from: 'configuration', to: 'demo' }]);
    });

    it('should resolve to no feed when there is neither configuration nor demo feed', () => {
      const none = sources({ demo: false });
      expect(none.feeds.resolve('GW-2')).toBeNull();
    });
  });
});
