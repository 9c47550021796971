import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  LinkShaper,
  startThrottledLink,
  type LinkClock,
  type ThrottledLink,
} from '../../bench/lib/throttle-link.js';

/** A clock that moves only when the test says so; timers fire in due order. */
class ManualClock implements LinkClock {
  private t = 0;
  private timers: Array<{ due: number; fn: () => void; live: boolean }> = [];
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number) {
    const timer = { due: this.t + ms, fn, live: true };
    this.timers.push(timer);
    return { cancel: () => void (timer.live = false) };
  }
  /** Due times of the timers still pending. */
  pending(): number[] {
    return this.timers.filter((x) => x.live).map((x) => x.due);
  }
  advanceTo(t: number): void {
    for (;;) {
      const next = this.timers.filter((x) => x.live && x.due <= t).sort((a, b) => a.due - b.due)[0];
      if (!next) break;
      next.live = false;
      this.t = next.due;
      next.fn();
    }
    this.t = t;
    this.timers = this.timers.filter((x) => x.live);
  }
}

/** Waits (real time, in event-loop turns) until `cond` holds: for socket events to land. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`never happened: ${what}`);
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tcpServer(onConnection: (s: net.Socket) => void): Promise<net.Server> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    onConnection(s);
  });
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function relay(server: net.Server, opts: { bytesPerSecond: number; rttMs: number }, clock?: LinkClock) {
  const { port } = server.address() as net.AddressInfo;
  const link: ThrottledLink = await startThrottledLink({ host: '127.0.0.1', port }, opts, clock);
  cleanups.push(() => link.close());
  return link;
}

function connect(link: ThrottledLink): net.Socket {
  const client = net.connect(link.port, '127.0.0.1');
  client.on('error', () => {});
  cleanups.push(() => void client.destroy());
  return client;
}

describe('LinkShaper', () => {
  it('should queue bytes behind each other at the rate and add the one-way delay', () => {
    const shaper = new LinkShaper(1000, 50);
    expect(shaper.schedule(500, 0)).toBe(550);
    // Handed over at once: it waits for the first 500 bytes to leave.
    expect(shaper.schedule(500, 0)).toBe(1050);
    // An idle link starts at once.
    expect(shaper.schedule(100, 5000)).toBe(5150);
  });

  it('should refuse a rate or delay that makes no sense', () => {
    expect(() => new LinkShaper(0, 10)).toThrow(/bytesPerSecond/);
    expect(() => new LinkShaper(1000, -1)).toThrow(/oneWayMs/);
  });
});

describe('throttled link (bench/lib/throttle-link.ts)', () => {
  it('should hold a new connection’s first bytes for the handshake round trip plus the one-way delay', async () => {
    const clock = new ManualClock();
    const received: Buffer[] = [];
    const upstream = await tcpServer((s) => s.on('data', (d: Buffer) => received.push(d)));
    const link = await relay(upstream, { bytesPerSecond: 1_000_000, rttMs: 150 }, clock);
    const client = connect(link);
    client.write('hello');
    await until(() => link.stats().upQueued === 5, 'the relay took the request');
    expect(clock.pending()).toEqual([150 + 75 + 5 / 1000]);
    clock.advanceTo(225);
    expect(link.stats().up).toBe(0);
    clock.advanceTo(225.005);
    expect(link.stats().up).toBe(5);
    await until(() => Buffer.concat(received).toString() === 'hello', 'upstream got the request');
  });

  it('should deliver a response no faster than the rate, every byte intact and in order', async () => {
    const clock = new ManualClock();
    const body = randomBytes(100_000);
    const upstream = await tcpServer((s) => s.end(body));
    const link = await relay(upstream, { bytesPerSecond: 10_000, rttMs: 0 }, clock);
    const got: Buffer[] = [];
    const client = connect(link);
    client.on('data', (d: Buffer) => got.push(d));
    await until(() => link.stats().downQueued === body.length, 'the relay took the whole response');

    // At 10,000 bytes/s, 5 s carry 50,000 bytes; slices are 16 KiB, so at most one slice less.
    clock.advanceTo(5000);
    expect(link.stats().down).toBeLessThanOrEqual(50_000);
    expect(link.stats().down).toBeGreaterThan(50_000 - 16 * 1024);
    clock.advanceTo(10_000);
    expect(link.stats().down).toBe(body.length);
    await until(() => Buffer.concat(got).length === body.length, 'the client got the whole response');
    expect(createHash('sha256').update(Buffer.concat(got)).digest('hex')).toBe(
      createHash('sha256').update(body).digest('hex'),
    );
  });

  it('should carry HTTP keep-alive requests over one connection on the real clock', async () => {
    const payload = randomBytes(300_000);
    const server = http.createServer((req, res) => {
      res.writeHead(200, { 'content-length': payload.length }).end(payload);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    cleanups.push(
      () =>
        new Promise<void>((r) => {
          server.closeAllConnections();
          server.close(() => r());
        }),
    );
    const { port } = server.address() as net.AddressInfo;
    const link = await startThrottledLink(
      { host: '127.0.0.1', port },
      { bytesPerSecond: 50_000_000, rttMs: 2 },
    );
    cleanups.push(() => link.close());
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    cleanups.push(() => agent.destroy());
    const get = () =>
      new Promise<Buffer>((resolve, reject) => {
        http
          .get(`${link.url}/x`, { agent }, (res) => {
            const parts: Buffer[] = [];
            res.on('data', (d: Buffer) => parts.push(d));
            res.on('end', () => resolve(Buffer.concat(parts)));
          })
          .on('error', reject);
      });
    expect((await get()).equals(payload)).toBe(true);
    expect((await get()).equals(payload)).toBe(true);
    expect(link.stats().connections).toBe(1);
    expect(link.stats().down).toBeGreaterThan(2 * payload.length);
  });
});
