import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import path from 'node:path';

/**
 * Child process for bench/pipeline.ts: a plain static file server on 127.0.0.1 for a directory,
 * like any web server hosting a TUF feed (404 for missing files — the client probes N.root.json —,
 * single byte ranges answered with 206, symlinks followed). Files are read in 1 MiB blocks, as the
 * SWUpdate peer's server does. Run as its own process so serving never shares an event loop with
 * the client being measured. Prints `{"url": …, "control": …}` once listening; SIGTERM stops it.
 *
 * It counts what crossed its sockets (bench/delta.ts charges every update its bytes on the wire):
 * `GET <control>/stats` answers the counts since the last `GET <control>/reset` — requests,
 * ranged answers, 404s, connections, body bytes, and socket bytes in and out (headers included).
 * The control port is a second listener, so asking for the counts is never counted.
 *
 *   node --import tsx bench/lib/static-server.ts DIR
 */

const dir = path.resolve(process.argv[2] ?? '.');
const READ_BLOCK = 1024 * 1024;

interface Counts {
  requests: number;
  ranged: number;
  notFound: number;
  connections: number;
  bodyBytes: number;
  bytesIn: number;
  bytesOut: number;
}
const zero = (): Counts => ({
  requests: 0,
  ranged: 0,
  notFound: 0,
  connections: 0,
  bodyBytes: 0,
  bytesIn: 0,
  bytesOut: 0,
});
let counts = zero();
/** Socket byte counters already charged, per live socket (a reset charges from there on). */
const charged = new Map<Socket, { in: number; out: number }>();
function chargeSocket(socket: Socket): void {
  const seen = charged.get(socket);
  if (!seen) return;
  counts.bytesIn += socket.bytesRead - seen.in;
  counts.bytesOut += socket.bytesWritten - seen.out;
  seen.in = socket.bytesRead;
  seen.out = socket.bytesWritten;
}

const server = http.createServer((req, res) => {
  counts.requests++;
  res.once('finish', () => {
    if (res.statusCode === 404) counts.notFound++;
    if (res.statusCode === 206) counts.ranged++;
    if (req.method !== 'HEAD') counts.bodyBytes += bodyBytes;
  });
  let bodyBytes = 0;
  const urlPath = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
  const file = path.join(dir, path.normalize(urlPath));
  let size: number;
  try {
    const st = fs.statSync(file);
    if (!file.startsWith(dir) || !st.isFile()) throw new Error('not a file');
    size = st.size;
  } catch {
    res.writeHead(404).end('not found');
    return;
  }
  const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  if (m) {
    const start = Number(m[1]);
    // A last byte past the end is clamped to it (RFC 9110 14.1.2), as nginx does.
    const end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
    if (start >= size || start > end) {
      res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
      return;
    }
    bodyBytes = end - start + 1;
    res.writeHead(206, {
      'content-length': end - start + 1,
      'content-range': `bytes ${start}-${end}/${size}`,
      'content-type': 'application/octet-stream',
    });
    fs.createReadStream(file, { start, end, highWaterMark: READ_BLOCK }).pipe(res);
    return;
  }
  bodyBytes = size;
  res.writeHead(200, {
    'content-length': size,
    'accept-ranges': 'bytes',
    'content-type': 'application/octet-stream',
  });
  fs.createReadStream(file, { highWaterMark: READ_BLOCK }).pipe(res);
});

server.on('connection', (socket) => {
  counts.connections++;
  charged.set(socket, { in: 0, out: 0 });
  socket.once('close', () => {
    chargeSocket(socket);
    charged.delete(socket);
  });
});

const control = http.createServer((req, res) => {
  const what = new URL(req.url ?? '/', 'http://x').pathname;
  for (const socket of charged.keys()) chargeSocket(socket);
  if (what === '/reset') counts = zero();
  else if (what !== '/stats') {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(counts));
});

const listening = (s: http.Server) =>
  new Promise<number>((resolve) =>
    s.listen(0, '127.0.0.1', () => resolve((s.address() as AddressInfo).port)),
  );
const [port, controlPort] = await Promise.all([listening(server), listening(control)]);
process.stdout.write(
  `${JSON.stringify({ url: `http://127.0.0.1:${port}`, control: `http://127.0.0.1:${controlPort}` })}\n`,
);

process.once('SIGTERM', () => {
  server.closeAllConnections();
  control.close();
  server.close(() => process.exit(0));
});
