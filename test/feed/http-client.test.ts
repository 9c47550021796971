import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpBody, type BodyConnection } from '../../feed/http/body.js';
import { FeedHttpClient, type GetOptions, type HttpResponse } from '../../feed/http/client.js';
import { splitAt } from './helpers.js';

const TLS_DIR = path.join(import.meta.dirname, '..', 'fixtures', 'tls');

/** A raw TCP server: each connection gets the request head, then `answer` writes what it likes. */
interface RawServer {
  url: string;
  requests: string[];
  close(): Promise<void>;
}
const servers: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function rawServer(
  answer: (socket: net.Socket, head: string) => void | Promise<void>,
): Promise<RawServer> {
  const requests: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let head = '';
    const onData = (chunk: Buffer): void => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      requests.push(head);
      void answer(socket, head);
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const handle: RawServer = {
    url: `http://127.0.0.1:${port}/file`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  servers.push(handle);
  return handle;
}

/** Writes `parts` one by one, each in its own turn of the event loop, then ends the socket. */
async function writeParts(socket: net.Socket, parts: Buffer[]): Promise<void> {
  for (const part of parts) {
    if (socket.destroyed) return;
    if (!socket.write(part)) await new Promise((r) => socket.once('drain', r));
    await new Promise((r) => setImmediate(r));
  }
  socket.end();
}

function chunked(body: Buffer, sizes: number[]): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  let i = 0;
  while (at < body.length) {
    const n = Math.min(body.length - at, Math.max(1, sizes[i++ % sizes.length]!));
    out.push(Buffer.from(`${n.toString(16)};ext=${i}\r\n`), body.subarray(at, at + n), Buffer.from('\r\n'));
    at += n;
  }
  out.push(Buffer.from('0\r\nx-trailer: yes\r\n\r\n'));
  return Buffer.concat(out);
}

/**
 * Lends the body to a consumer that sometimes keeps a chunk across turns of the event loop, and
 * checks each kept chunk still holds its bytes when it lets go: a read landing in a lent buffer
 * would show here.
 */
async function lendAll(body: HttpBody, holdEvery = 3): Promise<Buffer> {
  const copies: Buffer[] = [];
  let n = 0;
  await body.lend((chunk) => {
    const copy = Buffer.from(chunk);
    copies.push(copy);
    if (++n % holdEvery !== 0) return undefined;
    // Held to the next turn of the event loop (after its I/O): cheap enough for bodies cut into
    // thousands of tiny chunks, long enough for a read landing in a lent buffer to show.
    return new Promise<void>((resolve, reject) =>
      setImmediate(() => {
        if (chunk.equals(copy)) resolve();
        else reject(new Error('a lent chunk was overwritten while held'));
      }),
    );
  });
  return Buffer.concat(copies);
}

async function readAll(body: HttpBody): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const clients: FeedHttpClient[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

/** A GET with a fresh client (its own pool), as the tests before keep-alive did. */
function httpGet(url: URL, opts: GetOptions & { ca?: Buffer }): Promise<HttpResponse & { body: HttpBody }> {
  const client = new FeedHttpClient({ extraCa: opts.ca ? [opts.ca] : undefined });
  clients.push(client);
  return client.get(url, opts) as Promise<HttpResponse & { body: HttpBody }>;
}

const head = (extra: string): Buffer => Buffer.from(`HTTP/1.1 200 OK\r\n${extra}\r\n`);

describe('httpGet', () => {
  it('should send one GET with the given headers and read a Content-Length body, lent or read', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const server = await rawServer((socket) =>
      writeParts(socket, [head(`Content-Length: ${data.length}\r\n`), ...splitAt(data, [0.1, 0.5, 0.51])]),
    );
    const lent = await httpGet(new URL(server.url), { timeoutMs: 5000, headers: { Range: 'bytes=0-' } });
    expect(lent.status).toBe(200);
    expect(lent.headers['content-length']).toBe(String(data.length));
    expect((await lendAll(lent.body)).equals(data)).toBe(true);
    expect(server.requests[0]).toMatch(/^GET \/file HTTP\/1\.1\r\n/);
    expect(server.requests[0]).toMatch(/\r\nrange: bytes=0-\r\n/);

    const read = await httpGet(new URL(server.url), { timeoutMs: 5000 });
    expect((await readAll(read.body)).equals(data)).toBe(true);
  });

  it('should decode any split of a chunked body, with extensions and trailers (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 200_000 }),
        fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 5 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 12 }),
        fc.boolean(),
        async (size, sizes, cuts, lend) => {
          const data = randomBytes(size);
          const wire = Buffer.concat([head('Transfer-Encoding: chunked\r\n'), chunked(data, sizes)]);
          const server = await rawServer((socket) => writeParts(socket, splitAt(wire, cuts)));
          const res = await httpGet(new URL(server.url), { timeoutMs: 5000 });
          const got = lend ? await lendAll(res.body, 2) : await readAll(res.body);
          expect(got.equals(data)).toBe(true);
          await server.close();
        },
      ),
      { numRuns: 25 },
    );
  });

  it('should read a body delimited by the end of the connection, and skip a 100 Continue', async () => {
    const data = randomBytes(100_000);
    const server = await rawServer((socket) =>
      writeParts(socket, [Buffer.from('HTTP/1.1 100 Continue\r\n\r\n'), head(''), data]),
    );
    const res = await httpGet(new URL(server.url), { timeoutMs: 5000 });
    expect(res.status).toBe(200);
    expect((await lendAll(res.body)).equals(data)).toBe(true);
  });

  it('should keep lent chunks intact over TLS, where reads already decrypted arrive after a pause', async () => {
    const data = randomBytes(8 * 1024 * 1024);
    const server = https.createServer(
      {
        key: fs.readFileSync(path.join(TLS_DIR, 'key.pem')),
        cert: fs.readFileSync(path.join(TLS_DIR, 'cert.pem')),
      },
      (_req, res) => {
        res.writeHead(200, { 'content-length': data.length });
        res.end(data);
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push({ close: () => new Promise<void>((resolve) => server.close(() => resolve())) });
    const { port } = server.address() as net.AddressInfo;
    const res = await httpGet(new URL(`https://localhost:${port}/image`), {
      timeoutMs: 5000,
      ca: fs.readFileSync(path.join(TLS_DIR, 'cert.pem')),
    });
    const got = await lendAll(res.body, 2);
    expect(createHash('sha256').update(got).digest('hex')).toBe(
      createHash('sha256').update(data).digest('hex'),
    );
  });

  it('should refuse a server certificate it does not trust', async () => {
    const server = https.createServer(
      {
        key: fs.readFileSync(path.join(TLS_DIR, 'key.pem')),
        cert: fs.readFileSync(path.join(TLS_DIR, 'cert.pem')),
      },
      (_req, res) => res.end('x'),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push({ close: () => new Promise<void>((resolve) => server.close(() => resolve())) });
    const { port } = server.address() as net.AddressInfo;
    await expect(httpGet(new URL(`https://localhost:${port}/`), { timeoutMs: 5000 })).rejects.toThrow(
      /self-signed|certificate/i,
    );
  });

  it('should cut a body at its limit and fail a short one', async () => {
    const endless = await rawServer(async (socket) => {
      socket.write(head(''));
      const block = Buffer.alloc(64 * 1024, 1);
      while (!socket.destroyed) {
        if (!socket.write(block)) await new Promise((r) => socket.once('drain', r).once('close', r));
      }
    });
    const res = await httpGet(new URL(endless.url), { timeoutMs: 5000 });
    res.body.setLimit({ bytes: 1_000_000, exact: true, error: (kind, n) => new Error(`${kind} at ${n}`) });
    await expect(lendAll(res.body)).rejects.toThrow(/^overflow at \d+$/);
    expect(res.body.bytesReceived).toBeLessThanOrEqual(1_000_000 + 1024 * 1024);

    const short = await rawServer((socket) =>
      writeParts(socket, [head('Content-Length: 1000\r\n'), Buffer.alloc(10)]),
    );
    const res2 = await httpGet(new URL(short.url), { timeoutMs: 5000 });
    await expect(readAll(res2.body)).rejects.toThrow(/connection closed after 10 bytes/);
  });

  it('should reject malformed responses and a silent server', async () => {
    const cases: [string, RegExp][] = [
      ['SSH-2.0-OpenSSH\r\n\r\n', /not an HTTP\/1.x response/],
      ['HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n', /invalid Content-Length/],
      ['HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n', /unsupported transfer coding/],
      ['HTTP/1.1 200 OK\r\nno-colon\r\n\r\n', /malformed response header/],
      [`HTTP/1.1 200 OK\r\nx: ${'a'.repeat(70_000)}`, /response head larger than/],
    ];
    for (const [wire, error] of cases) {
      const server = await rawServer((socket) => void socket.write(wire));
      await expect(httpGet(new URL(server.url), { timeoutMs: 5000 })).rejects.toThrow(error);
    }
    const badChunk = await rawServer((socket) =>
      writeParts(socket, [head('Transfer-Encoding: chunked\r\n'), Buffer.from('zz\r\n')]),
    );
    const res = await httpGet(new URL(badChunk.url), { timeoutMs: 5000 });
    await expect(lendAll(res.body)).rejects.toThrow(/bad chunk size/);

    const silent = await rawServer(() => undefined);
    await expect(httpGet(new URL(silent.url), { timeoutMs: 200 })).rejects.toThrow(
      /no data from .* for 200 ms/,
    );
  });

  it('should not end a lent body before the consumer let go of its last piece, whatever end events come', async () => {
    // Driven by hand as a socket would: reads into the body's buffer, then 'end' and 'close'.
    const heads: number[] = [];
    const conn: BodyConnection = {
      buffers: { primary: Buffer.alloc(64), spare: null },
      pause: () => undefined,
      resume: () => undefined,
      release: () => undefined,
      destroy: () => undefined,
    };
    const body = new HttpBody(
      conn,
      (h) => heads.push(h.status),
      (err) => {
        throw err;
      },
    );
    const read = (text: string) => {
      const into = body.readBuffer();
      const n = Buffer.from(text).copy(into);
      body.onRead(n, into);
    };
    read('HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nabcd');
    expect(heads).toEqual([200]);
    read('efgh'); // nobody consumes yet: kept
    read('ijkl');
    body.onEof(); // 'end'
    const got: string[] = [];
    const releases: (() => void)[] = [];
    let ended = false;
    const lending = body.lend((chunk) => {
      got.push(chunk.toString());
      return new Promise<void>((resolve) => releases.push(resolve));
    });
    void lending.then(() => (ended = true));
    const turn = () => new Promise((r) => setImmediate(r));
    releases.shift()!(); // abcd
    await turn();
    releases.shift()!(); // efgh
    await turn();
    expect(got).toEqual(['abcd', 'efgh', 'ijkl']); // the last piece is lent...
    body.onEof(); // ...when 'close' comes
    await turn();
    expect(ended).toBe(false);
    releases.shift()!();
    await lending;
    expect(got.join('')).toBe('abcdefghijkl');
  });

  it('should stop on abort before and after the head, closing the connection', async () => {
    let closes = 0;
    const server = await rawServer((socket) => {
      socket.on('close', () => closes++);
      socket.write(head('Content-Length: 100000\r\n'));
      socket.write(Buffer.alloc(10));
    });
    const ac = new AbortController();
    const res = await httpGet(new URL(server.url), { timeoutMs: 5000, signal: ac.signal });
    const lending = lendAll(res.body);
    setTimeout(() => ac.abort(new Error('operator cancelled')), 20);
    await expect(lending).rejects.toThrow('operator cancelled');

    const early = new AbortController();
    early.abort(new Error('already cancelled'));
    await expect(httpGet(new URL(server.url), { timeoutMs: 5000, signal: early.signal })).rejects.toThrow(
      'already cancelled',
    );
    await expect.poll(() => closes).toBe(1);
  });
});

/**
 * A raw server that keeps connections open: `answer` gets each request head, the connection's
 * number and the request's number on it.
 */
async function keepAliveServer(
  answer: (socket: net.Socket, head: string, conn: number, nth: number) => void,
): Promise<RawServer & { connections(): number }> {
  const requests: string[] = [];
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((socket) => {
    const conn = ++connections;
    let nth = 0;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffered = '';
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      for (let end = buffered.indexOf('\r\n\r\n'); end !== -1; end = buffered.indexOf('\r\n\r\n')) {
        const head = buffered.slice(0, end + 4);
        buffered = buffered.slice(end + 4);
        requests.push(head);
        answer(socket, head, conn, ++nth);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const handle = {
    url: `http://127.0.0.1:${port}/file`,
    requests,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  servers.push(handle);
  return handle;
}

const ok = (body: string, extra = '') =>
  `HTTP/1.1 200 OK\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;

async function text(res: HttpResponse): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of res.body) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString();
}

describe('keep-alive', () => {
  const newClient = (opts: ConstructorParameters<typeof FeedHttpClient>[0] = {}) => {
    const c = new FeedHttpClient(opts);
    clients.push(c);
    return c;
  };

  it('should carry requests one after another on one connection, lent or read, small bodies dropped', async () => {
    const server = await keepAliveServer((socket, _head, conn, nth) => {
      socket.write(
        nth === 2 ? 'HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nnot found' : ok(`c${conn}r${nth}`),
      );
    });
    const client = newClient();
    const url = new URL(server.url);
    expect(await text(await client.get(url, { timeoutMs: 5000 }))).toBe('c1r1');
    const missing = await client.get(url, { timeoutMs: 5000 });
    expect(missing.status).toBe(404);
    missing.body.dump();
    const lent: Buffer[] = [];
    await ((await client.get(url, { timeoutMs: 5000 })) as HttpResponse & { body: HttpBody }).body.lend(
      (c) => {
        lent.push(Buffer.from(c));
        return undefined;
      },
    );
    expect(Buffer.concat(lent).toString()).toBe('c1r3');
    expect(server.connections()).toBe(1);
    expect(client.connectionsOpened).toBe(1);
  });

  it('should open a new connection after Connection: close, extra bytes after a body, or a body left unread', async () => {
    const server = await keepAliveServer((socket, head, conn, nth) => {
      if (head.includes('/close')) socket.write(ok(`c${conn}`, 'connection: close\r\n'));
      else if (head.includes('/junk')) socket.write(`${ok(`c${conn}`)}HTTP/1.1 200 OK\r\n`);
      else socket.write(ok(`c${conn}r${nth}`.padEnd(200_000, '.')));
    });
    const client = newClient();
    const at = (p: string) => new URL(p, server.url);
    expect(await text(await client.get(at('/close'), { timeoutMs: 5000 }))).toBe('c1');
    expect(await text(await client.get(at('/junk'), { timeoutMs: 5000 }))).toBe('c2');
    const unread = await client.get(at('/big'), { timeoutMs: 5000 });
    unread.body.destroy();
    expect((await text(await client.get(at('/big'), { timeoutMs: 5000 }))).slice(0, 4)).toBe('c4r1');
    expect(server.connections()).toBe(4);
  });

  it('should retry once on a new connection when a kept-alive one turns out closed by the server', async () => {
    const server = await keepAliveServer((socket, _head, conn, nth) => {
      // The server forgot the connection after its first answer: it closes on the next request.
      if (nth === 2) socket.destroy();
      else socket.write(ok(`c${conn}r${nth}`));
    });
    const client = newClient();
    const url = new URL(server.url);
    expect(await text(await client.get(url, { timeoutMs: 5000 }))).toBe('c1r1');
    expect(await text(await client.get(url, { timeoutMs: 5000 }))).toBe('c2r1');
    expect(server.connections()).toBe(2);
    expect(client.staleRetries).toBe(1);
  });

  it('should notice a server closing an idle connection and not send the next request on it', async () => {
    let closedByServer = false;
    const server = await keepAliveServer((socket, _head, conn) => {
      socket.write(ok(`c${conn}`), () =>
        socket.end(() => {
          closedByServer = true;
        }),
      );
    });
    const client = newClient();
    expect(await text(await client.get(new URL(server.url), { timeoutMs: 5000 }))).toBe('c1');
    await expect.poll(() => closedByServer).toBe(true);
    await expect.poll(() => client.idleConnections).toBe(0);
    expect(await text(await client.get(new URL(server.url), { timeoutMs: 5000 }))).toBe('c2');
    expect(client.staleRetries).toBe(0);
  });

  it('should hold a request beyond the per-origin bound until a connection is free, then reuse it', async () => {
    const server = await keepAliveServer((socket, _head, conn, nth) => socket.write(ok(`c${conn}r${nth}`)));
    const client = newClient({ maxPerRoute: 1 });
    const url = new URL(server.url);
    const first = await client.get(url, { timeoutMs: 5000 });
    let secondDone = false;
    const second = client.get(url, { timeoutMs: 5000 }).then((r) => {
      secondDone = true;
      return r;
    });
    await new Promise((r) => setImmediate(r));
    expect(secondDone).toBe(false);
    expect(await text(first)).toBe('c1r1');
    expect(await text(await second)).toBe('c1r2');

    // A request waiting for a connection still honours its signal.
    const busy = await client.get(url, { timeoutMs: 5000 });
    const ac = new AbortController();
    const waiting = client.get(url, { timeoutMs: 5000, signal: ac.signal });
    ac.abort(new Error('operator cancelled'));
    await expect(waiting).rejects.toThrow('operator cancelled');
    expect(await text(busy)).toBe('c1r3');
    expect(server.connections()).toBe(1);
  });

  it('should close an idle connection after the idle timeout', async () => {
    let closed = 0;
    const server = await keepAliveServer((socket, _head, conn) => {
      socket.once('close', () => closed++);
      socket.write(ok(`c${conn}`));
    });
    const client = newClient({ idleTimeoutMs: 50 });
    expect(await text(await client.get(new URL(server.url), { timeoutMs: 5000 }))).toBe('c1');
    await expect.poll(() => closed).toBe(1);
    expect(await text(await client.get(new URL(server.url), { timeoutMs: 5000 }))).toBe('c2');
  });
});
