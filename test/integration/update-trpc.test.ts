import fs from 'node:fs';
import { createTRPCClient, createWSClient, httpLink, wsLink, type TRPCClient } from '@trpc/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { AppRouter } from '../../api/routers/_app.js';
import type { GantryEvent, UpdateProgressEvent } from '../../api/schemas/events.js';
import type { Override } from '../feed/helpers.js';
import { collector, trpcError } from '../helpers/trpc.js';
import { GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { randomImage, startTestFeed, type TestFeed } from '../helpers/feed.js';
import { waitFor } from '../helpers/wait.js';

/** The update pipeline through the typed tRPC client: queries and mutations over HTTP, events over WS. */

const FAST_POLICY = { retryDelayMs: 10, checkpointMs: 0, checkpointBytes: 64 * 1024 };

/**
 * The bundle trickled (`chunk` bytes per tick) up to `holdAt` bytes, then held until `release()`:
 * the download stays mid-way long enough for throttled progress events to go out.
 */
function trickleThenHold(data: Buffer, opts: { chunk: number; tickMs: number; holdAt: number }) {
  let released = false;
  const handler: Override = (_req, res) => {
    res.writeHead(200, { 'content-length': data.length });
    let sent = 0;
    const timer = setInterval(() => {
      if (released) {
        clearInterval(timer);
        res.end(data.subarray(sent));
        return;
      }
      const next = Math.min(sent + opts.chunk, opts.holdAt);
      if (next > sent) res.write(data.subarray(sent, next));
      sent = next;
    }, opts.tickMs);
    res.on('close', () => clearInterval(timer));
  };
  return { handler, release: () => (released = true) };
}

describe('update pipeline over the typed tRPC client', () => {
  let feed: TestFeed;
  let g: TestGantry;
  let operator: string;
  let bundlePath: string;
  const image = randomImage(3 * 1024 * 1024 + 5);

  beforeAll(async () => {
    feed = await startTestFeed();
    bundlePath = await feed.publish({ version: 'v5.0.5' }, image);
    const dataDir = tempDataDir();
    feed.trustIn(dataDir);
    g = await startTestGantry({ dataDir, env: feed.env, transferPolicy: FAST_POLICY });
    operator = await g.tokenFor('operator');
  });
  afterAll(async () => {
    await g.stop();
    await feed.close();
  });

  function httpClient(token: string): TRPCClient<AppRouter> {
    return createTRPCClient<AppRouter>({
      links: [
        httpLink({
          url: `${g.url}/api/trpc`,
          headers: () => ({ authorization: `Bearer ${token}`, 'x-gateway-id': GATEWAY }),
        }),
      ],
    });
  }

  function wsClient(token: string) {
    const socket = createWSClient({
      url: `${g.url.replace(/^http/, 'ws')}/api/trpc`,
      // Node 20 has no global WebSocket; `ws` implements the same interface.
      WebSocket: WebSocket as unknown as typeof globalThis.WebSocket,
      connectionParams: { token, gatewayId: GATEWAY },
    });
    return { socket, client: createTRPCClient<AppRouter>({ links: [wsLink({ client: socket })] }) };
  }

  it('should answer an unknown job with a TRPCClientError carrying gantryCode NOT_FOUND', async () => {
    const err = await trpcError(httpClient(operator).updates.progress.query({ job_id: 'OTA-JOB-NOPE' }));
    expect(err.data).toMatchObject({ gantryCode: 'NOT_FOUND', httpStatus: 404 });
  });

  it('should check, list, download, install and complete, streaming update_progress over monitor.events', async () => {
    const api = httpClient(operator);
    const data = fs.readFileSync(bundlePath);
    const feedGate = trickleThenHold(data, {
      chunk: 32 * 1024,
      tickMs: 20,
      holdAt: Math.floor(data.length / 2),
    });
    feed.server.overrides.set(feed.targetUrlPath(bundlePath), feedGate.handler);

    const check = await api.updates.check.mutate({ force: true });
    expect(check).toMatchObject({ status: 'completed', server: feed.server.url, total_available: 1 });
    const list = await api.updates.list.query();
    expect(list.total_available).toBe(1);
    expect(list.updates[0]).toMatchObject({
      id: 'update-001',
      version: 'v5.0.5',
      signature: 'verified',
      compatible: true,
    });

    const { socket, client: live } = wsClient(operator);
    const got = collector();
    let started!: () => void;
    const isStarted = new Promise<void>((resolve) => (started = resolve));
    const sub = live.monitor.events.subscribe(undefined, {
      onStarted: () => started(),
      onData: (e) => got.push(e),
      onError: (err) => {
        throw err;
      },
    });
    try {
      await isStarted;
      const start = await api.updates.download.mutate({ update_id: 'update-001' });
      expect(start).toMatchObject({
        status: 'downloading',
        target_partition: 'B',
        update: { id: 'update-001', version: 'v5.0.5' },
      });
      const jobId = start.job_id;
      const ofJob = (e: GantryEvent): e is UpdateProgressEvent =>
        e.type === 'update_progress' && e.job_id === jobId;

      // Mid-way (the feed holds the second half back): a throttled progress event went out.
      await got.waitFor((e) => ofJob(e) && e.progress > 0 && e.progress < 100);
      const busy = await trpcError(api.updates.download.mutate({ update_id: 'update-001' }));
      expect(busy.data).toMatchObject({ gantryCode: 'OTA_OPERATION_IN_PROGRESS', httpStatus: 409 });
      expect(busy.message).toMatch(jobId);

      feedGate.release();
      const downloaded = await waitFor(
        () => api.updates.progress.query({ job_id: jobId }),
        (p) => ['downloaded', 'error', 'cancelled'].includes(p.status),
        'downloaded',
      );
      expect(downloaded.status, JSON.stringify(downloaded)).toBe('downloaded');
      expect(downloaded.progress).toMatchObject({ percentage: 100, current_operation: 'awaiting_install' });

      const install = await api.updates.install.mutate({ job_id: jobId });
      expect(install).toMatchObject({
        job_id: jobId,
        status: 'installing',
        target_partition: 'B',
        next_boot_partition: 'B',
      });
      await got.waitFor((e) => ofJob(e) && e.status === 'complete');
      expect((await api.updates.progress.query({ job_id: jobId })).status).toBe('complete');

      const progress = got.events.filter(ofJob);
      const values = progress.map((e) => e.progress);
      expect(values).toEqual([...values].sort((a, b) => a - b));
      expect(values.some((v) => v > 0 && v < 100)).toBe(true);
      expect(values.at(-1)).toBe(100);
      // Each state change is announced, in order (repeats are throttled progress within a state).
      const states = progress.map((e) => e.status).filter((s, i, all) => s !== all[i - 1]);
      expect(states).toEqual([
        'downloading',
        'verifying',
        'downloaded',
        'installing',
        'rebooting',
        'activating',
        'complete',
      ]);
      expect(progress.find((e) => e.status === 'downloaded')?.current_operation).toBe('awaiting_install');

      const status = await waitFor(
        () => api.system.status.query(),
        (s) => s.partitions.active.id === 'B' && s.partitions.active.status === 'healthy',
        'slot B committed',
      );
      expect(status.gateway.os_version).toBe('v5.0.5');
    } finally {
      sub.unsubscribe();
      await socket.close();
    }
  });
});
