import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { makeTempDir } from '../helpers/temp.js';

export type Override = (req: http.IncomingMessage, res: http.ServerResponse) => void;

export interface StaticServer {
  url: string;
  /** Paths (e.g. `/targets/a.bundle`) answered by a handler instead of the file. */
  overrides: Map<string, Override>;
  requests: { url: string; range: string | undefined }[];
  close(): Promise<void>;
}

/**
 * A plain static file server on 127.0.0.1, like any web server hosting a TUF repository: 404 for
 * missing files (the client probes N.root.json), single byte ranges answered with 206.
 */
export async function serveDir(dir: string): Promise<StaticServer> {
  const overrides = new Map<string, Override>();
  const requests: StaticServer['requests'] = [];
  const server = http.createServer((req, res) => {
    const urlPath = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    requests.push({ url: urlPath, range: req.headers.range });
    const override = overrides.get(urlPath);
    if (override) return override(req, res);
    const file = path.join(dir, path.normalize(urlPath));
    if (!file.startsWith(dir) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end('not found');
      return;
    }
    const size = fs.statSync(file).size;
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
      });
      fs.createReadStream(file, { start, end }).pipe(res);
      return;
    }
    res.writeHead(200, { 'content-length': size, 'accept-ranges': 'bytes' });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    overrides,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export function tempDir(prefix: string): string {
  return makeTempDir(prefix);
}

export async function readAll(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Splits `data` at the given fractions of its length (sorted, deduplicated): a body as the network may cut it. */
export function splitAt(data: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => Math.floor(c * data.length)))].sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    if (p > at) parts.push(data.subarray(at, p));
    at = Math.max(at, p);
  }
  parts.push(data.subarray(at));
  return parts;
}
