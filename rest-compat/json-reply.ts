import { createHash } from 'node:crypto';
import type { ServerResponse } from 'node:http';

/** A JSON answer: its status and body, before it is written. */
export interface JsonReply {
  status: number;
  body: unknown;
}

/** Headers every answer of the server carries (server/app.ts sets them on Express's too). */
export const COMMON_HEADERS: Readonly<Record<string, string>> = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'same-origin',
};

/**
 * Writes what Express's `res.status(status).json(body)` writes for a request that is not a GET or
 * a HEAD (those two have conditional answers and HEAD's empty body, which Express's own path
 * handles): the body as JSON, its content type, length and weak ETag, and the common headers.
 * The GET lane writes its answers so too. Not Express's: its `res.json` goes through `res.set`,
 * which asks mime-types for the charset of `application/json`, and so loads mime-db (~0.6 MiB
 * resident at idle: scripts/server-bundle-plugins.ts loads mime-types on first use).
 */
export function writeJson(res: ServerResponse, reply: JsonReply): void {
  const body = Buffer.from(JSON.stringify(reply.body), 'utf8');
  res.writeHead(reply.status, {
    ...COMMON_HEADERS,
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': body.length,
    ETag: weakEtag(body),
  });
  res.end(body);
}

/** Express's default ETag (the `etag` package, weak): length in hex and a SHA-1 of the body. */
export function weakEtag(body: Buffer): string {
  if (body.length === 0) return 'W/"0-2jmj7l5rSw0yVb/vlWAYkK/YBwk"';
  const hash = createHash('sha1').update(body).digest('base64').substring(0, 27);
  return `W/"${body.length.toString(16)}-${hash}"`;
}
