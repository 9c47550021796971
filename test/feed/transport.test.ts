import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GantryError } from '../../core/errors.js';
import { FeedClient } from '../../feed/client.js';
import { FEED_HTTP_IMPLEMENTATIONS, FeedHttpClient } from '../../feed/http/client.js';
import type { ProxySettings } from '../../feed/http/proxy.js';
import { randomImage, startTestFeed, type TestFeed } from '../helpers/feed.js';
import { freePort } from '../helpers/process.js';
import {
  describeWithServers,
  startFeedOrigin,
  startTinyproxy,
  TEST_CA_FILE,
  type Nginx,
  type Tinyproxy,
} from '../helpers/real-servers.js';
import { readAll, tempDir } from './helpers.js';

/**
 * The feed client (metadata through tuf-js, targets streamed) against real servers: nginx as the
 * origin, with redirects configured, and tinyproxy as the forward proxy. Both HTTP clients (Gantry's
 * own and the node:http fallback) run the same cases.
 */

const PROXY_USER = 'gantry';
const PROXY_PASSWORD = 'pr0xy-s3cret-pw';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function failure(p: Promise<unknown>): Promise<GantryError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GantryError);
  return err as GantryError;
}

describeWithServers('feed transport against nginx and tinyproxy', () => {
  let feed: TestFeed;
  let nginx: Nginx;
  let proxy: Tinyproxy;
  let authProxy: Tinyproxy;
  let work: string;
  let bundleName: string;
  const clients: FeedHttpClient[] = [];

  beforeAll(async () => {
    feed = await startTestFeed();
    bundleName = path.basename(await feed.publish({ version: 'v5.0.5' }, randomImage(700_000)));
    nginx = await startFeedOrigin(feed.dir);
    proxy = await startTinyproxy({ connectPorts: [nginx.ports.tls!] });
    authProxy = await startTinyproxy({
      auth: { user: PROXY_USER, password: PROXY_PASSWORD },
      connectPorts: [nginx.ports.tls!],
    });
    work = tempDir('gantry-transport-');
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await Promise.all([nginx?.stop(), proxy?.stop(), authProxy?.stop(), feed?.close()]);
    fs.rmSync(work, { recursive: true, force: true });
  });

  const newHttp = (implementation: 'gantry' | 'node', proxySettings?: ProxySettings) => {
    const http = new FeedHttpClient({
      implementation,
      proxy: proxySettings,
      extraCa: [fs.readFileSync(TEST_CA_FILE)],
    });
    clients.push(http);
    return http;
  };
  /** A feed client with a fresh metadata dir (so every refresh fetches all of the metadata). */
  const feedClient = (base: string, http: FeedHttpClient, proxySettings?: ProxySettings) =>
    new FeedClient({
      metadataDir: fs.mkdtempSync(path.join(work, 'md-')),
      metadataBaseUrl: base,
      targetBaseUrl: `${base}/targets`,
      trustedRoot: fs.readFileSync(path.join(feed.dir, 'root.json')),
      http,
      proxy: proxySettings,
    });
  /** Refreshes, then streams the bundle and checks it against the signed hash. */
  const refreshAndFetch = async (client: FeedClient) => {
    const targets = await client.refresh();
    const target = targets.find((t) => t.path === bundleName)!;
    const data = await readAll(await client.fetchTarget(target));
    expect(sha256(data)).toBe(target.sha256);
    return target;
  };
  const logFrom = (mark: number) => nginx.accessLog().slice(mark);

  for (const implementation of FEED_HTTP_IMPLEMENTATIONS) {
    describe(`${implementation} client`, () => {
      it('should refresh and download through each redirect status and a chain of four', async () => {
        for (const prefix of ['r301', 'r302', 'r303', 'r307', 'r308', 'chain']) {
          const mark = nginx.accessLog().length;
          await refreshAndFetch(feedClient(`${nginx.url('origin')}/${prefix}`, newHttp(implementation)));
          const log = logFrom(mark);
          expect(log.find((e) => e.uri === `/${prefix}/timestamp.json`)?.status).toBe(
            prefix === 'chain' ? 301 : Number(prefix.slice(1)),
          );
          expect(log.find((e) => e.uri === `/feed/targets/${bundleName}`)?.status).toBe(200);
        }
      });

      it('should refuse a redirect loop, more than five redirects and an https → http downgrade', async () => {
        const http = newHttp(implementation);
        const loop = await failure(feedClient(`${nginx.url('origin')}/loop-a`, http).refresh());
        expect(loop.gantryCode).toBe('OTA_DOWNLOAD_FAILED');
        expect(loop.message).toMatch(/redirect loop: .*\/loop-b\/.* leads back to .*\/loop-a\//);

        const deep = await failure(feedClient(`${nginx.url('origin')}/deep`, http).refresh());
        expect(deep.gantryCode).toBe('OTA_DOWNLOAD_FAILED');
        expect(deep.message).toMatch(/more than 5 redirects/);

        const mark = nginx.accessLog().length;
        const down = await failure(feedClient(`${nginx.url('tls')}/downgrade`, http).refresh());
        expect(down.gantryCode).toBe('OTA_DOWNLOAD_FAILED');
        expect(down.message).toMatch(
          /refused the redirect from https:\/\/.* to http:\/\/.*: a downgrade from https/,
        );
        // The plain-http origin never saw the request.
        expect(logFrom(mark).filter((e) => e.server === String(nginx.ports.origin))).toEqual([]);
        // The same redirect within https is followed.
        await refreshAndFetch(feedClient(`${nginx.url('tls')}/r301`, http));
      });

      it('should keep Range and If-Range on a redirected request', async () => {
        const http = newHttp(implementation);
        const client = feedClient(`${nginx.url('origin')}/r307`, http);
        const target = (await client.refresh()).find((t) => t.path === bundleName)!;
        const validator = { value: null as string | null };
        const whole = await readAll(await client.fetchTarget(target, { validator }));
        expect(validator.value).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/); // nginx's ETag
        const mark = nginx.accessLog().length;
        const tail = await readAll(await client.fetchTarget(target, { offset: 1000, validator }));
        expect(tail.equals(whole.subarray(1000))).toBe(true);
        const log = logFrom(mark);
        expect(log[0]).toMatchObject({ uri: `/r307/targets/${bundleName}`, status: 307 });
        expect(log[1]).toMatchObject({
          uri: `/feed/targets/${bundleName}`,
          status: 206,
          range: `bytes=1000-${target.length - 1}`,
          ifRange: validator.value,
        });
      });

      it('should send the feed URL credentials to their origin only, not to the origin a redirect leads to', async () => {
        const base = new URL(`${nginx.url('origin')}/other`);
        base.username = 'feeduser';
        base.password = 'feed-secret-pw';
        const mark = nginx.accessLog().length;
        await refreshAndFetch(feedClient(base.href, newHttp(implementation)));
        const log = logFrom(mark);
        const basic = `Basic ${Buffer.from('feeduser:feed-secret-pw').toString('base64')}`;
        const atOrigin = log.filter((e) => e.server === String(nginx.ports.origin));
        const atOther = log.filter((e) => e.server === String(nginx.ports.other));
        expect(atOrigin.length).toBeGreaterThan(0);
        expect(atOrigin.every((e) => e.status === 302 && e.authorization === basic)).toBe(true);
        expect(atOther.map((e) => e.uri)).toContain(`/feed/targets/${bundleName}`);
        expect(atOther.every((e) => e.authorization === '')).toBe(true);
      });

      it('should go through a forwarding proxy for http and a CONNECT tunnel for https, with credentials', async () => {
        const creds = `http://${PROXY_USER}:${PROXY_PASSWORD}@127.0.0.1:${authProxy.port}`;
        const seen = authProxy.requests().length;
        const mark = nginx.accessLog().length;
        await refreshAndFetch(
          feedClient(`${nginx.url('origin')}/feed`, newHttp(implementation, { httpProxy: creds })),
        );
        const forwarded = authProxy.requests().slice(seen);
        expect(forwarded).toContain(`GET ${nginx.url('origin')}/feed/targets/${bundleName} HTTP/1.1`);
        expect(logFrom(mark).every((e) => /tinyproxy/.test(e.via))).toBe(true);

        const tunnelled = authProxy.requests().length;
        await refreshAndFetch(
          feedClient(`${nginx.url('tls')}/feed`, newHttp(implementation, { httpsProxy: creds })),
        );
        expect(authProxy.requests().slice(tunnelled)).toContain(
          `CONNECT 127.0.0.1:${nginx.ports.tls} HTTP/1.1`,
        );
      });

      it('should fail with OTA_DOWNLOAD_FAILED naming the proxy when it refuses or cannot be reached', async () => {
        const at = `127.0.0.1:${authProxy.port}`;
        const cases: [ProxySettings, string, RegExp][] = [
          [
            { httpProxy: `http://${PROXY_USER}:wrong-password@${at}` },
            'origin',
            new RegExp(`the proxy http://${at} refused the credentials it was given \\(HTTP 40[17]\\)`),
          ],
          [
            { httpsProxy: `http://${PROXY_USER}:wrong-password@${at}` },
            'tls',
            new RegExp(`the proxy http://${at} refused the credentials it was given \\(HTTP 40[17]\\)`),
          ],
          [
            { httpsProxy: `http://${at}` },
            'tls',
            new RegExp(`the proxy http://${at} requires credentials \\(HTTP 40[17]\\)`),
          ],
          // tinyproxy tunnels only to the ConnectPort it was given (the https server block).
          [
            { httpsProxy: proxy.url },
            'origin-over-https',
            new RegExp(
              `the proxy ${proxy.url} refused to connect to 127.0.0.1:${nginx.ports.origin} \\(HTTP 403\\)`,
            ),
          ],
        ];
        const unused = await freePort();
        cases.push([
          { httpProxy: `http://user:another-pw@127.0.0.1:${unused}` },
          'origin',
          new RegExp(`cannot reach the proxy http://127.0.0.1:${unused}: ECONNREFUSED`),
        ]);
        for (const [settings, server, message] of cases) {
          const base =
            server === 'origin-over-https'
              ? `https://127.0.0.1:${nginx.ports.origin}/feed`
              : `${nginx.url(server)}/feed`;
          const err = await failure(feedClient(base, newHttp(implementation, settings)).refresh());
          expect(err.gantryCode).toBe('OTA_DOWNLOAD_FAILED');
          expect(err.message).toMatch(message);
          expect(err.message).toMatch(/through the proxy http:\/\/127\.0\.0\.1:\d+/);
          expect(JSON.stringify({ message: err.message, details: err.details })).not.toMatch(
            /wrong-password|another-pw|pr0xy/,
          );
        }
      });

      it('should carry a refresh and the download after it on one kept-alive connection', async () => {
        const http = newHttp(implementation);
        const mark = nginx.accessLog().length;
        await refreshAndFetch(feedClient(`${nginx.url('origin')}/feed`, http));
        const log = logFrom(mark);
        expect(log.length).toBeGreaterThanOrEqual(5); // 2.root.json (404), timestamp, snapshot, targets, bundle
        const connections = new Set(log.map((e) => e.connection));
        if (implementation === 'gantry') {
          expect(connections.size).toBe(1);
          expect(log.map((e) => e.connectionRequests)).toEqual(log.map((_e, i) => i + 1));
          expect(http.connectionsOpened).toBe(1);
        } else {
          // node's Agent may open a second socket when a request comes before the last one's
          // socket was handed back; it still reuses them.
          expect(connections.size).toBeLessThan(log.length);
        }
      });
    });
  }

  it("should resume the TLS session on the next connection to an origin, directly and through a tunnel (Gantry's client)", async () => {
    for (const proxySettings of [undefined, { httpsProxy: proxy.url }]) {
      const http = newHttp('gantry', proxySettings);
      const base = `${nginx.url('tls')}/feed`;
      const mark = nginx.accessLog().length;
      await feedClient(base, http, proxySettings).refresh();
      http.close(); // the kept-alive connection goes: the next request needs a new one
      await feedClient(base, http, proxySettings).refresh();
      const log = logFrom(mark);
      const [firstConn, secondConn] = [...new Set(log.map((e) => e.connection))];
      expect(secondConn).toBeDefined();
      expect(log.filter((e) => e.connection === firstConn).every((e) => e.sslReused === '.')).toBe(true);
      expect(log.filter((e) => e.connection === secondConn).every((e) => e.sslReused === 'r')).toBe(true);
    }
  });

  it('should connect directly to the hosts NO_PROXY names: host, domain suffix, IP, CIDR and *', async () => {
    const port = nginx.ports.origin!;
    const cases: [string, string][] = [
      [`http://localhost:${port}/feed`, 'localhost'],
      [`http://localhost:${port}/feed`, 'example.com, .localhost'],
      [`http://127.0.0.1:${port}/feed`, '10.0.0.1,127.0.0.1'],
      [`http://127.0.0.1:${port}/feed`, '192.168.0.0/16 127.0.0.0/8'],
      [`http://127.0.0.1:${port}/feed`, `127.0.0.1:${port}`],
      [`http://127.0.0.1:${port}/feed`, '*'],
    ];
    for (const [base, noProxy] of cases) {
      const seen = proxy.requests().length;
      const mark = nginx.accessLog().length;
      await refreshAndFetch(feedClient(base, newHttp('gantry', { httpProxy: proxy.url, noProxy })));
      expect(proxy.requests().slice(seen), `NO_PROXY=${noProxy}`).toEqual([]);
      expect(logFrom(mark).every((e) => e.via === '')).toBe(true);
    }
    // A list that does not name the host: through the proxy.
    const seen = proxy.requests().length;
    await refreshAndFetch(
      feedClient(
        `http://127.0.0.1:${port}/feed`,
        newHttp('gantry', { httpProxy: proxy.url, noProxy: '127.0.0.2,10.0.0.0/8,example.com' }),
      ),
    );
    expect(proxy.requests().length).toBeGreaterThan(seen);
  });
});
