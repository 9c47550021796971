import net from 'node:net';

/**
 * A slow link on loopback: a TCP relay in front of a server that gives every byte the time it
 * would take on a metered cellular link, 1 MB/s each way and 150 ms round trip by default. It
 * works below HTTP, so it is equally a reverse proxy (point the feed URL at it) and the path of a
 * forward proxy, and it charges what a real link charges:
 *
 * - one shared link per direction: bytes of all connections queue behind each other at the rate;
 * - every byte arrives half a round trip after it left;
 * - a new connection costs one round trip (the TCP handshake) before its first byte can leave.
 *
 * So a request on a kept-alive connection costs one round trip plus its bytes' time, a request on
 * a new connection two round trips: what makes 3,000 small GETs slow and one big one fast.
 */

export interface LinkOptions {
  /** Bytes per second in each direction. */
  bytesPerSecond: number;
  /** Round-trip time in milliseconds (half of it one way). */
  rttMs: number;
}

export const CELLULAR_LINK: LinkOptions = { bytesPerSecond: 1_000_000, rttMs: 150 };

/** Bytes are handed to the link in slices this big, so pacing is smooth at any read size. */
const SLICE_BYTES = 16 * 1024;
/** A direction of one connection stops reading its source while this much waits in its queue. */
const HIGH_WATER_BYTES = 256 * 1024;

/**
 * One direction of the link: serialises bytes at the rate, then adds the one-way delay. Times are
 * milliseconds on the caller's clock, so the schedule is checkable without waiting.
 */
export class LinkShaper {
  private freeAt = 0;

  constructor(
    readonly bytesPerSecond: number,
    readonly oneWayMs: number,
  ) {
    if (!(bytesPerSecond > 0)) throw new Error('bytesPerSecond must be positive');
    if (!(oneWayMs >= 0)) throw new Error('oneWayMs must not be negative');
  }

  /** When the last of `bytes` handed to the link at `now` reaches the other end. */
  schedule(bytes: number, now: number): number {
    const start = Math.max(now, this.freeAt);
    this.freeAt = start + (bytes * 1000) / this.bytesPerSecond;
    return this.freeAt + this.oneWayMs;
  }
}

/** Time source of the relay: the real one, or a manual one in tests. */
export interface LinkClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): { cancel(): void };
}

export const REAL_CLOCK: LinkClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(t) };
  },
};

interface Pending {
  data: Buffer | null; // null: the source ended
  deliverAt: number;
}

/**
 * Carries `source`'s bytes to `dest` through `shaper`, none leaving before `notBefore`. Order is
 * kept: delivery times only grow along one pipe.
 */
function shapedPipe(
  source: net.Socket,
  dest: net.Socket,
  shaper: LinkShaper,
  notBefore: number,
  stats: { bytes: number; queued: number },
  clock: LinkClock,
): void {
  const queue: Pending[] = [];
  let queued = 0;
  let timer: { cancel(): void } | undefined;
  let waitingForDrain = false;

  const pump = () => {
    timer = undefined;
    const now = clock.now();
    while (queue.length && queue[0]!.deliverAt <= now && !waitingForDrain) {
      const item = queue.shift()!;
      if (item.data === null) {
        dest.end();
        return;
      }
      queued -= item.data.length;
      stats.queued -= item.data.length;
      stats.bytes += item.data.length;
      if (!dest.write(item.data)) {
        waitingForDrain = true;
        dest.once('drain', () => {
          waitingForDrain = false;
          pump();
        });
      }
    }
    if (queued < HIGH_WATER_BYTES && source.isPaused()) source.resume();
    if (queue.length && !waitingForDrain && !timer) {
      timer = clock.setTimeout(pump, Math.max(0, queue[0]!.deliverAt - clock.now()));
    }
  };
  const enqueue = (data: Buffer | null) => {
    const now = clock.now();
    queue.push({ data, deliverAt: shaper.schedule(data?.length ?? 0, Math.max(now, notBefore)) });
    if (!timer && !waitingForDrain) {
      timer = clock.setTimeout(pump, Math.max(0, queue[0]!.deliverAt - now));
    }
  };

  source.on('data', (chunk: Buffer) => {
    for (let off = 0; off < chunk.length; off += SLICE_BYTES) {
      // A copy: the socket may reuse its buffer, and the slice waits in the queue.
      enqueue(Buffer.from(chunk.subarray(off, off + SLICE_BYTES)));
    }
    queued += chunk.length;
    stats.queued += chunk.length;
    if (queued >= HIGH_WATER_BYTES) source.pause();
  });
  source.once('end', () => enqueue(null));
  const stop = () => {
    timer?.cancel();
    timer = undefined;
    queue.length = 0;
    stats.queued -= queued;
    queued = 0;
  };
  source.once('close', () => {
    // A source torn down (not ended) tears down the other side too.
    if (!source.readableEnded) {
      stop();
      dest.destroy();
    }
  });
  // A closed destination only ends this direction: the other one may still be delivering (a
  // server that answers and closes, its answer still on the link).
  dest.once('close', stop);
}

export interface ThrottledLink {
  /** `http://127.0.0.1:<port>`: where clients connect instead of the upstream. */
  url: string;
  port: number;
  /**
   * Bytes delivered so far towards the upstream (`up`) and towards clients (`down`), bytes the
   * relay holds for each direction now, and connections accepted.
   */
  stats(): { up: number; down: number; upQueued: number; downQueued: number; connections: number };
  close(): Promise<void>;
}

/** Starts a relay on 127.0.0.1 (port chosen by the system) in front of `upstream` (host:port). */
export function startThrottledLink(
  upstream: { host: string; port: number },
  link: LinkOptions = CELLULAR_LINK,
  clock: LinkClock = REAL_CLOCK,
): Promise<ThrottledLink> {
  const oneWay = link.rttMs / 2;
  const upShaper = new LinkShaper(link.bytesPerSecond, oneWay);
  const downShaper = new LinkShaper(link.bytesPerSecond, oneWay);
  const up = { bytes: 0, queued: 0 };
  const down = { bytes: 0, queued: 0 };
  let connections = 0;
  const sockets = new Set<net.Socket>();

  // Half-open allowed: each direction ends its destination itself once its queue is delivered.
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    connections++;
    // The handshake: the client's first bytes leave one round trip after it connected.
    const handshakeDone = clock.now() + link.rttMs;
    const origin = net.connect({ port: upstream.port, host: upstream.host, allowHalfOpen: true });
    for (const s of [client, origin]) {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
      s.on('error', () => s.destroy());
    }
    shapedPipe(client, origin, upShaper, handshakeDone, up, clock);
    shapedPipe(origin, client, downShaper, 0, down, clock);
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      resolve({
        url: `http://127.0.0.1:${port}`,
        port,
        stats: () => ({
          up: up.bytes,
          down: down.bytes,
          upQueued: up.queued,
          downQueued: down.queued,
          connections,
        }),
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}
