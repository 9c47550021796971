import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

/**
 * Child process for bench/pipeline.ts: a plain static file server on 127.0.0.1 for a directory,
 * like any web server hosting a TUF feed (404 for missing files — the client probes N.root.json —,
 * single byte ranges answered with 206, symlinks followed). Files are read in 1 MiB blocks, as the
 * SWUpdate peer's server does. Run as its own process so serving never shares an event loop with
 * the client being measured. Prints `{"url": …}` once listening; SIGTERM stops it.
 *
 *   node --import tsx bench/lib/static-server.ts DIR
 */

const dir = path.resolve(process.argv[2] ?? '.');
const READ_BLOCK = 1024 * 1024;

const server = http.createServer((req, res) => {
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
    const end = m[2] ? Number(m[2]) : size - 1;
    if (start >= size || end >= size || start > end) {
      res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
      return;
    }
    res.writeHead(206, {
      'content-length': end - start + 1,
      'content-range': `bytes ${start}-${end}/${size}`,
      'content-type': 'application/octet-stream',
    });
    fs.createReadStream(file, { start, end, highWaterMark: READ_BLOCK }).pipe(res);
    return;
  }
  res.writeHead(200, {
    'content-length': size,
    'accept-ranges': 'bytes',
    'content-type': 'application/octet-stream',
  });
  fs.createReadStream(file, { highWaterMark: READ_BLOCK }).pipe(res);
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}` })}\n`);
});

process.once('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
