import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { pipeline } from 'node:stream';

export interface StaticFeedServer {
  /** `http://HOST:PORT`, no trailing slash. */
  url: string;
  close(): Promise<void>;
}

/** A file that vanishes or fails mid-way ends the response instead of leaving it hanging. */
function send(source: fs.ReadStream, res: http.ServerResponse): void {
  pipeline(source, res, () => undefined);
}

/**
 * Serves a directory read-only, as any static web server hosting a TUF repository does: GET and
 * HEAD only, 404 for a missing file (the TUF client probes `N.root.json` for rotations), one byte
 * range answered with 206 (how a download resumes), 416 for a range outside the file.
 */
export async function serveStaticDir(
  dir: string,
  opts: { host?: string; port?: number } = {},
): Promise<StaticFeedServer> {
  const root = path.resolve(dir);
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    let urlPath: string;
    try {
      urlPath = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      res.writeHead(400).end();
      return;
    }
    const file = path.join(root, path.normalize(urlPath));
    let size: number;
    try {
      const st = file.startsWith(root + path.sep) ? fs.statSync(file) : null;
      if (!st?.isFile()) throw new Error('not a file');
      size = st.size;
    } catch {
      res.writeHead(404).end();
      return;
    }
    const head = req.method === 'HEAD';
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range) {
      const start = Number(range[1]);
      const end = range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
      if (start >= size || start > end) {
        res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
        return;
      }
      res.writeHead(206, {
        'content-length': end - start + 1,
        'content-range': `bytes ${start}-${end}/${size}`,
        'accept-ranges': 'bytes',
      });
      if (head) res.end();
      else send(fs.createReadStream(file, { start, end }), res);
      return;
    }
    res.writeHead(200, { 'content-length': size, 'accept-ranges': 'bytes' });
    if (head) res.end();
    else send(fs.createReadStream(file), res);
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
