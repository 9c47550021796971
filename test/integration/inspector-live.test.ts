import { createTRPCClient, createWSClient, TRPCClientError, wsLink } from '@trpc/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { AppRouter } from '../../api/routers/_app.js';
import type { InspectorUpdate } from '../../web/client/inspector/graph-types.js';
import { startTestGantry, type TestGantry } from '../helpers/gantry.js';
import type { ClientError } from '../helpers/trpc.js';

/**
 * `inspector.live`: the development inspector's stream over the tRPC WebSocket. What the
 * statecharts do (events, changes of state) reaches it through the one event bus, as it happens.
 */

const GW_A = 'GW-3920A9';
const GW_B = 'GW-7781B2';
const PIN = '2468';

/** Collects a stream's messages and lets a test wait for one (by message, not by time). */
function updates() {
  const got: InspectorUpdate[] = [];
  const waiters = new Set<() => void>();
  return {
    got,
    push(u: InspectorUpdate) {
      got.push(u);
      for (const w of [...waiters]) w();
    },
    waitFor(match: (u: InspectorUpdate) => boolean): Promise<InspectorUpdate> {
      return new Promise((resolve) => {
        const check = () => {
          const found = got.find(match);
          if (!found) return;
          waiters.delete(check);
          resolve(found);
        };
        waiters.add(check);
        check();
      });
    },
  };
}

describe('inspector.live over the tRPC WebSocket', () => {
  let g: TestGantry;
  let admin: string;
  const sockets: Array<ReturnType<typeof createWSClient>> = [];

  beforeAll(async () => {
    g = await startTestGantry({
      env: {
        GANTRY_GATEWAYS: `${GW_A}:Univa-GW-Pro,${GW_B}:Univa-GW-Lite`,
        GANTRY_SAFETY_PIN: PIN,
      },
    });
    admin = await g.login();
  });
  afterAll(async () => {
    await Promise.all(sockets.map((s) => s.close()));
    await g.stop();
  });

  function follow(token: string) {
    const socket = createWSClient({
      url: `${g.url.replace(/^http/, 'ws')}/api/trpc`,
      WebSocket: WebSocket as unknown as typeof globalThis.WebSocket,
      connectionParams: { token },
    });
    sockets.push(socket);
    const client = createTRPCClient<AppRouter>({ links: [wsLink({ client: socket })] });
    const stream = updates();
    const ended = new Promise<unknown>((resolve) => {
      client.inspector.live.subscribe(undefined, {
        onData: (u) => stream.push(u),
        onError: resolve,
        onComplete: () => resolve('completed'),
      });
    });
    return { ...stream, ended, socket };
  }

  const override = (gateway: string) =>
    g.request('POST', '/api/v1/ota/safety/override', {
      token: admin,
      gateway,
      body: { enable: true, pin: PIN, reason: 'inspector stream', constraints: ['crane_motion'] },
    });

  it('should send the whole state first, then changes of state and events as they happen', async () => {
    const live = follow(admin);
    const first = await live.waitFor((u) => u.type === 'state');
    expect(first.type === 'state' && first.state.gateways).toEqual([
      { id: GW_A, partition: 'stable', safety: 'normal' },
      { id: GW_B, partition: 'stable', safety: 'normal' },
    ]);

    expect((await override(GW_A)).status).toBe(200);
    const actors = await live.waitFor(
      (u) => u.type === 'actors' && u.gateways.some((gw) => gw.id === GW_A && gw.safety === 'overridden'),
    );
    expect(actors.type === 'actors' && actors.gateways.find((gw) => gw.id === GW_B)?.safety).toBe('normal');
    const events = await live.waitFor(
      (u) => u.type === 'events' && u.events.some((e) => e.type === 'OVERRIDE_ENABLE'),
    );
    const enable = events.type === 'events' ? events.events.find((e) => e.type === 'OVERRIDE_ENABLE') : null;
    expect(enable).toMatchObject({
      gateway_id: GW_A,
      machine: 'safetyInterlock',
      actor: GW_A,
      payload: { reason: 'inspector stream', constraints: ['crane_motion'], by: 'admin' },
    });
    expect(JSON.stringify(enable!.payload)).not.toContain(PIN);

    // A client that goes away leaves no listener on the bus behind.
    expect(g.deps.bus.machineActivityListenerCount()).toBe(1);
    await live.socket.close();
    await expect.poll(() => g.deps.bus.machineActivityListenerCount()).toBe(0);
  });

  it('should show an admin only the gateways they may act on', async () => {
    const onlyB = follow(await g.tokenFor('admin', [GW_B]));
    const first = await onlyB.waitFor((u) => u.type === 'state');
    expect(first.type === 'state' && first.state.gateways.map((gw) => gw.id)).toEqual([GW_B]);
    expect(
      (
        await g.request('POST', '/api/v1/ota/safety/override', {
          token: admin,
          gateway: GW_A,
          body: { enable: false },
        })
      ).status,
    ).toBe(200);
    expect((await override(GW_B)).status).toBe(200);
    await onlyB.waitFor(
      (u) => u.type === 'actors' && u.gateways.some((gw) => gw.id === GW_B && gw.safety === 'overridden'),
    );
    // GW_A's change came first on the bus: had it leaked, it would be here by now.
    const seen = onlyB.got.flatMap((u) =>
      u.type === 'events'
        ? u.events.map((e) => e.gateway_id)
        : u.type === 'actors'
          ? u.gateways.map((gw) => gw.id)
          : [],
    );
    expect(new Set(seen)).toEqual(new Set([GW_B]));
  });

  it('should refuse the stream to operators and end it when the session ends', async () => {
    const operator = follow(await g.tokenFor('operator'));
    const refused = await operator.ended;
    expect(refused).toBeInstanceOf(TRPCClientError);
    expect((refused as ClientError).data).toMatchObject({ gantryCode: 'FORBIDDEN' });

    const token = await g.tokenFor('admin');
    const live = follow(token);
    await live.waitFor((u) => u.type === 'state');
    expect((await g.request('POST', '/api/v1/auth/logout', { token, gateway: null })).status).toBe(200);
    expect((await override(GW_A)).status).toBe(200);
    const ended = await live.ended;
    expect((ended as ClientError).data).toMatchObject({ gantryCode: 'AUTH_INVALID_TOKEN' });
    expect(live.got.filter((u) => u.type !== 'state')).toEqual([]);
  });
});
