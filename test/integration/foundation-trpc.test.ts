import {
  createTRPCClient,
  createWSClient,
  httpLink,
  TRPCClientError,
  wsLink,
  type TRPCClient,
} from '@trpc/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { AppRouter } from '../../api/routers/_app.js';
import { collector, trpcError, type ClientError } from '../helpers/trpc.js';
import { startTestGantry, type TestGantry } from '../helpers/gantry.js';

/** The typed tRPC client over HTTP and WebSocket sees what the REST API shows. */

const GW_A = 'GW-3920A9';
const GW_B = 'GW-7781B2';
const T0 = Date.parse('2025-03-15T10:00:00Z');

describe('foundation: tRPC clients', () => {
  let g: TestGantry;
  let admin: string;
  const clock = { now: T0 };

  beforeAll(async () => {
    g = await startTestGantry({
      clock: () => clock.now,
      env: { GANTRY_GATEWAYS: `${GW_A}:Univa-GW-Pro,${GW_B}:Univa-GW-Lite:Europe/Amsterdam` },
    });
    admin = await g.login();
  });
  afterAll(() => g.stop());

  function httpClient(token: string | undefined, gatewayId: string = GW_A): TRPCClient<AppRouter> {
    return createTRPCClient<AppRouter>({
      links: [
        httpLink({
          url: `${g.url}/api/trpc`,
          headers: () => ({
            ...(token ? { authorization: `Bearer ${token}` } : {}),
            'x-gateway-id': gatewayId,
          }),
        }),
      ],
    });
  }

  function wsClient(token: string, gatewayId: string) {
    const socket = createWSClient({
      url: `${g.url.replace(/^http/, 'ws')}/api/trpc`,
      // Node 20 has no global WebSocket; `ws` implements the same interface.
      WebSocket: WebSocket as unknown as typeof globalThis.WebSocket,
      connectionParams: { token, gatewayId },
    });
    const client = createTRPCClient<AppRouter>({ links: [wsLink({ client: socket })] });
    return { socket, client };
  }

  describe('over HTTP (httpLink)', () => {
    it('should return the same status as GET /api/v1/ota/status', async () => {
      const viaTrpc = await httpClient(admin).system.status.query();
      const viaRest = await g.request('GET', '/api/v1/ota/status', { token: admin });
      expect(viaTrpc).toEqual(viaRest.body.data);
      expect(viaTrpc.partitions.active).toMatchObject({ id: 'A', booted: true, status: 'healthy' });
    });

    it('should return the same settings and logs as REST', async () => {
      const client = httpClient(admin, GW_B);
      expect(await client.settings.get.query()).toEqual(
        (await g.request('GET', '/api/v1/ota/settings', { token: admin, gateway: GW_B })).body.data,
      );
      expect(await client.monitor.logs.query({ limit: 5 })).toEqual(
        (await g.request('GET', '/api/v1/ota/logs?limit=5', { token: admin, gateway: GW_B })).body.data,
      );
    });

    it('should update settings with the same result and effect as REST', async () => {
      const client = httpClient(admin);
      const res = await client.settings.update.mutate({ maintenance_window: { time: '03:00' } });
      expect(res).toEqual({ updated: true, next_maintenance_window: '2025-03-16T03:00:00Z' });
      const rest = await g.request('GET', '/api/v1/ota/settings', { token: admin });
      expect(rest.body.data.maintenance_window.time).toBe('03:00');
    });

    it('should carry the Gantry error code and HTTP status in the error', async () => {
      const none = await trpcError(httpClient(undefined).system.status.query());
      expect(none.data?.httpStatus).toBe(401);
      expect(none.data).toMatchObject({ gantryCode: 'AUTH_REQUIRED' });

      const viewer = await g.tokenFor('viewer');
      const forbidden = await trpcError(httpClient(viewer).settings.update.mutate({ auto_rollback: false }));
      expect(forbidden.data).toMatchObject({ gantryCode: 'FORBIDDEN', httpStatus: 403 });

      const unknown = await trpcError(httpClient(admin, 'GW-NOPE').system.status.query());
      expect(unknown.data).toMatchObject({ gantryCode: 'GATEWAY_NOT_FOUND', httpStatus: 404 });
    });

    it('should report invalid input as VALIDATION_ERROR with the field', async () => {
      const client = httpClient(admin);
      const bad = await trpcError(
        // @ts-expect-error: a string where the schema wants a number, as an untyped caller might send
        client.settings.update.mutate({ rollback_retries: 'five' }),
      );
      expect(bad.data).toMatchObject({ gantryCode: 'VALIDATION_ERROR', httpStatus: 400 });
      expect(bad.data?.issues).toEqual([expect.objectContaining({ path: 'rollback_retries' })]);
    });
  });

  describe('over WebSocket (wsLink)', () => {
    it('should answer queries with the same status', async () => {
      const { socket, client } = wsClient(admin, GW_A);
      try {
        expect(await client.system.status.query()).toEqual(await httpClient(admin).system.status.query());
      } finally {
        await socket.close();
      }
    });

    it('should stream a log_entry from monitor.events when a setting changes, and only of its gateway', async () => {
      const { socket, client } = wsClient(admin, GW_A);
      const got = collector();
      let started!: () => void;
      const isStarted = new Promise<void>((resolve) => (started = resolve));
      const sub = client.monitor.events.subscribe(undefined, {
        onStarted: () => started(),
        onData: (e) => got.push(e),
        onError: (err) => {
          throw err;
        },
      });
      try {
        await isStarted;
        g.deps.logs.info(GW_B, 'test', 'of the other gateway');
        const res = await g.request('POST', '/api/v1/ota/settings', {
          token: admin,
          body: { update_strategy: 'rolling' },
        });
        expect(res.status).toBe(200);
        const entry = await got.waitFor((e) => e.type === 'log_entry');
        expect(entry).toEqual({
          type: 'log_entry',
          timestamp: '2025-03-15T10:00:00Z',
          level: 'info',
          source: 'settings',
          message: 'Settings updated by admin',
        });
        expect(got.events.some((e) => e.type === 'log_entry' && e.message === 'of the other gateway')).toBe(
          false,
        );
      } finally {
        sub.unsubscribe();
        await socket.close();
      }
    });

    it('should end the subscription, delivering nothing more, once the session is revoked (regression)', async () => {
      await g.deps.users.create({
        username: 'sub-leaver',
        password: 'password-123',
        role: 'viewer',
        gateways: ['*'],
      });
      const token = await g.login('sub-leaver', 'password-123');
      const { socket, client } = wsClient(token, GW_A);
      const got = collector();
      let started!: () => void;
      const isStarted = new Promise<void>((resolve) => (started = resolve));
      const ended = new Promise<unknown>((resolve) => {
        client.monitor.events.subscribe(undefined, {
          onStarted: () => started(),
          onData: (e) => got.push(e),
          onError: resolve,
          onComplete: () => resolve('completed'),
        });
      });
      try {
        await isStarted;
        g.deps.logs.info(GW_A, 'test', 'before logout');
        await got.waitFor((e) => e.type === 'log_entry' && e.message === 'before logout');
        expect((await g.request('POST', '/api/v1/auth/logout', { token, gateway: null })).status).toBe(200);
        g.deps.logs.info(GW_A, 'test', 'after logout');
        const err = await ended;
        expect(err).toBeInstanceOf(TRPCClientError);
        expect((err as ClientError).data).toMatchObject({ gantryCode: 'AUTH_INVALID_TOKEN' });
        expect(got.events.some((e) => e.type === 'log_entry' && e.message === 'after logout')).toBe(false);
      } finally {
        await socket.close();
      }
    });

    it('should refuse the subscription for a gateway the token may not act on', async () => {
      const onlyB = await g.tokenFor('viewer', [GW_B]);
      const { socket, client } = wsClient(onlyB, GW_A);
      try {
        const err = await new Promise<unknown>((resolve) => {
          client.monitor.events.subscribe(undefined, { onData: () => resolve(null), onError: resolve });
        });
        expect(err).toBeInstanceOf(TRPCClientError);
        expect((err as ClientError).data).toMatchObject({ gantryCode: 'GATEWAY_FORBIDDEN' });
      } finally {
        await socket.close();
      }
    });

    it('should refuse the subscription with an invalid token', async () => {
      const { socket, client } = wsClient('garbage', GW_A);
      try {
        const err = await new Promise<unknown>((resolve) => {
          client.monitor.events.subscribe(undefined, { onData: () => resolve(null), onError: resolve });
        });
        expect((err as ClientError).data).toMatchObject({ gantryCode: 'AUTH_INVALID_TOKEN' });
      } finally {
        await socket.close();
      }
    });
  });
});
