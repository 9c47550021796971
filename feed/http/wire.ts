/**
 * HTTP/1.1 on the wire, as a client reads it (RFC 9112): the response head, the three ways a body
 * ends, and the request head. Pure functions and small state machines, no I/O: the property and
 * fuzz tests (test/feed/http-wire.test.ts) drive them with any split of any bytes.
 */

/** The most a response head may take (status line and headers). */
export const MAX_HEAD_BYTES = 64 * 1024;
/** The most a chunk-size line, or one trailer line, may take. */
export const MAX_CHUNK_LINE_BYTES = 4096;
/** The most all trailer lines of a chunked body may take together. */
export const MAX_TRAILER_BYTES = 16 * 1024;

export interface ResponseHead {
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minor: 0 | 1;
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
}

/** RFC 9110 §5.6.2 token characters: what a header name may be made of. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Field values: visible characters, spaces, tabs and obs-text; no CR, LF or NUL. */
// eslint-disable-next-line no-control-regex
const FIELD_VALUE = /^[^\u0000-\u0008\u000a-\u001f\u007f]*$/;

/**
 * Parses a response head: `text` is everything before the blank line (latin1, so each byte is one
 * character). Throws on anything that is not a well-formed HTTP/1.x head. A folded header line
 * (obs-fold) is joined to the one before with a space, as RFC 9112 §5.2 tells a user agent to.
 */
export function parseHead(text: string): ResponseHead {
  const [statusLine = '', ...lines] = text.split('\r\n');
  const m = /^HTTP\/1\.([01]) (\d{3})(?: [^\r\n]*)?$/.exec(statusLine);
  if (!m) throw new Error(`not an HTTP/1.x response: ${JSON.stringify(statusLine.slice(0, 80))}`);
  const headers: Record<string, string> = {};
  let last: string | null = null;
  for (const line of lines) {
    if (line.startsWith(' ') || line.startsWith('\t')) {
      if (last === null || !FIELD_VALUE.test(line)) {
        throw new Error(`malformed response header ${JSON.stringify(line.slice(0, 80))}`);
      }
      headers[last] = `${headers[last]} ${line.trim()}`.trim();
      continue;
    }
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    const value = line.slice(colon + 1).trim();
    if (!TOKEN.test(name) || !FIELD_VALUE.test(value)) {
      throw new Error(`malformed response header ${JSON.stringify(line.slice(0, 80))}`);
    }
    const key = name.toLowerCase();
    headers[key] = key in headers ? `${headers[key]}, ${value}` : value;
    last = key;
  }
  return { minor: m[1] === '1' ? 1 : 0, status: Number(m[2]), headers };
}

/** How the body's end is found. */
export interface BodyDecoder {
  readonly done: boolean;
  /** Whether the connection can carry another exchange once this body is done. */
  readonly delimited: boolean;
  /** Consumes `raw` from `at`; returns the body bytes found there (a view, or null) and where to go on. */
  step(raw: Buffer, at: number): { piece: Buffer | null; next: number };
  /** The connection ended: is the body complete? */
  completeAtEof(): boolean;
}

export class LengthDecoder implements BodyDecoder {
  readonly delimited = true;
  constructor(private left: number) {}
  get done(): boolean {
    return this.left === 0;
  }
  step(raw: Buffer, at: number) {
    const n = Math.min(this.left, raw.length - at);
    this.left -= n;
    return { piece: raw.subarray(at, at + n), next: at + n };
  }
  completeAtEof(): boolean {
    return this.left === 0;
  }
}

export class UntilCloseDecoder implements BodyDecoder {
  readonly done = false;
  readonly delimited = false;
  step(raw: Buffer, at: number) {
    return { piece: raw.subarray(at), next: raw.length };
  }
  completeAtEof(): boolean {
    return true;
  }
}

/** RFC 9112 §7.1: hex size line (extensions ignored), data, CRLF; a zero size, trailers, CRLF. */
export class ChunkedDecoder implements BodyDecoder {
  readonly delimited = true;
  private state: 'size' | 'data' | 'data-end' | 'trailer' | 'done' = 'size';
  private line = '';
  private left = 0;
  private trailerBytes = 0;
  get done(): boolean {
    return this.state === 'done';
  }
  completeAtEof(): boolean {
    return this.state === 'done';
  }

  /** Reads up to the end of a line; returns it (without CRLF) or null if the input ran out first. */
  private readLine(raw: Buffer, at: number): { line: string | null; next: number } {
    const nl = raw.indexOf(0x0a, at);
    const end = nl === -1 ? raw.length : nl;
    if (this.line.length + (end - at) > MAX_CHUNK_LINE_BYTES) {
      throw new Error('malformed chunked body: line too long');
    }
    this.line += raw.toString('latin1', at, end);
    if (nl === -1) return { line: null, next: raw.length };
    const line = this.line.endsWith('\r') ? this.line.slice(0, -1) : this.line;
    this.line = '';
    return { line, next: nl + 1 };
  }

  step(raw: Buffer, at: number): { piece: Buffer | null; next: number } {
    switch (this.state) {
      case 'data': {
        const n = Math.min(this.left, raw.length - at);
        this.left -= n;
        if (this.left === 0) this.state = 'data-end';
        return { piece: raw.subarray(at, at + n), next: at + n };
      }
      case 'size': {
        const { line, next } = this.readLine(raw, at);
        if (line === null) return { piece: null, next };
        const hex = line.split(';', 1)[0]!.trim();
        if (!/^[0-9a-fA-F]{1,13}$/.test(hex)) throw new Error('malformed chunked body: bad chunk size');
        this.left = parseInt(hex, 16);
        this.state = this.left === 0 ? 'trailer' : 'data';
        return { piece: null, next };
      }
      case 'data-end': {
        const { line, next } = this.readLine(raw, at);
        if (line === null) return { piece: null, next };
        if (line !== '') throw new Error('malformed chunked body: no CRLF after a chunk');
        this.state = 'size';
        return { piece: null, next };
      }
      case 'trailer': {
        const { line, next } = this.readLine(raw, at);
        if (line === null) return { piece: null, next };
        this.trailerBytes += line.length + 2;
        if (this.trailerBytes > MAX_TRAILER_BYTES)
          throw new Error('malformed chunked body: trailers too large');
        if (line === '') this.state = 'done';
        return { piece: null, next };
      }
      case 'done':
        return { piece: null, next: raw.length };
    }
  }
}

/**
 * The decoder for a response to a GET (RFC 9112 §6.3). Transfer-Encoding wins over Content-Length;
 * a response carrying both may be a smuggling attempt, so its connection is not reused.
 */
export function decoderFor(head: ResponseHead): { decoder: BodyDecoder; reusable: boolean } {
  const { status, headers } = head;
  const closes = (headers.connection ?? '').split(',').some((t) => t.trim().toLowerCase() === 'close');
  // HTTP/1.0 servers keep a connection open only when asked with Keep-Alive, which Gantry never asks.
  const persistent = head.minor === 1 && !closes;
  if (status === 204 || status === 304) return { decoder: new LengthDecoder(0), reusable: persistent };
  const coding = headers['transfer-encoding'];
  if (coding !== undefined) {
    if (coding.split(',').at(-1)!.trim().toLowerCase() !== 'chunked') {
      throw new Error(`unsupported transfer coding ${JSON.stringify(coding)}`);
    }
    return {
      decoder: new ChunkedDecoder(),
      reusable: persistent && headers['content-length'] === undefined,
    };
  }
  const length = headers['content-length'];
  if (length !== undefined) {
    // Repeated identical values are allowed (RFC 9110 §8.6); anything else is a framing attack.
    const values = new Set(length.split(',').map((v) => v.trim()));
    const [only] = values;
    if (values.size !== 1 || !/^\d{1,15}$/.test(only!)) {
      throw new Error(`invalid Content-Length ${JSON.stringify(length)}`);
    }
    return { decoder: new LengthDecoder(Number(only)), reusable: persistent };
  }
  return { decoder: new UntilCloseDecoder(), reusable: false };
}

/** The server's `Keep-Alive: timeout=N` (seconds), if it sent one. */
export function keepAliveTimeoutMs(headers: Record<string, string>): number | null {
  const m = /(?:^|[,\s])timeout\s*=\s*(\d{1,6})/i.exec(headers['keep-alive'] ?? '');
  return m ? Number(m[1]) * 1000 : null;
}

/**
 * A GET request head. `target` is the origin-form path (`/a/b?q`) for a server, the absolute URL
 * for a forwarding proxy. Refuses names and values that could split the request.
 */
export function requestHead(target: string, headers: Record<string, string>): string {
  if (!/^[\x21-\x7e]+$/.test(target)) throw new Error('invalid request target');
  let head = `GET ${target} HTTP/1.1\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    if (!TOKEN.test(name) || !FIELD_VALUE.test(value)) throw new Error(`invalid request header ${name}`);
    head += `${name}: ${value}\r\n`;
  }
  return `${head}\r\n`;
}
