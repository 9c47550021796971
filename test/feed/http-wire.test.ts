import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ChunkedDecoder,
  decoderFor,
  keepAliveTimeoutMs,
  MAX_CHUNK_LINE_BYTES,
  parseHead,
  requestHead,
} from '../../feed/http/wire.js';
import { splitAt } from './helpers.js';

/**
 * Property and fuzz tests of the response-head parser and the chunked-transfer decoder of Gantry's
 * HTTP client (feed/http/wire.ts): whatever bytes a server (or a man in the middle) sends, split
 * however the network splits them, the parser either returns a well-formed answer or throws an
 * ordinary Error; it never hangs, never hands out more bytes than arrived, and gives the same
 * outcome for every split of the same bytes.
 */

interface Outcome {
  body: Buffer;
  done: boolean;
  error: string | null;
}

/** Feeds `parts` to a fresh decoder; counts steps so a decoder that stops advancing fails the test. */
function decode(parts: Buffer[]): Outcome {
  const d = new ChunkedDecoder();
  const out: Buffer[] = [];
  const total = parts.reduce((n, p) => n + p.length, 0);
  let steps = 0;
  try {
    for (const part of parts) {
      let at = 0;
      while (at < part.length && !d.done) {
        if (++steps > 4 * total + 16) throw new Error('the decoder stopped advancing');
        const { piece, next } = d.step(part, at);
        expect(next).toBeGreaterThan(at);
        expect(next).toBeLessThanOrEqual(part.length);
        if (piece) {
          // A view of this input, never more than it holds.
          expect(piece.buffer).toBe(part.buffer);
          out.push(Buffer.from(piece));
        }
        at = next;
      }
    }
    return { body: Buffer.concat(out), done: d.done, error: null };
  } catch (err) {
    expect(err).toBeInstanceOf(Error);
    const message = (err as Error).message;
    expect(message).not.toBe('the decoder stopped advancing');
    expect(message).toMatch(/^malformed chunked body: /);
    return { body: Buffer.concat(out), done: false, error: message };
  }
}

const cuts = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 20 });

/** A chunked encoding of `body`: sizes in either case of hex, optional extensions and trailers. */
const chunkedWire = fc
  .record({
    body: fc.uint8Array({ maxLength: 3000 }),
    sizes: fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 8 }),
    upper: fc.boolean(),
    extension: fc.constantFrom('', ';a=b', ';name="quoted;value"', ' ;x'),
    trailers: fc.array(fc.constantFrom('x-trailer: yes', 'checksum: abc', 'a:'), { maxLength: 3 }),
  })
  .map(({ body, sizes, upper, extension, trailers }) => {
    const data = Buffer.from(body);
    const parts: Buffer[] = [];
    let at = 0;
    let i = 0;
    while (at < data.length) {
      const n = Math.min(data.length - at, sizes[i++ % sizes.length]!);
      const hex = upper ? n.toString(16).toUpperCase() : n.toString(16);
      parts.push(Buffer.from(`${hex}${extension}\r\n`), data.subarray(at, at + n), Buffer.from('\r\n'));
      at += n;
    }
    parts.push(Buffer.from(`0${extension}\r\n${trailers.map((t) => `${t}\r\n`).join('')}\r\n`));
    return { data, wire: Buffer.concat(parts) };
  });

describe('chunked transfer decoder', () => {
  it('should decode any valid encoding, split anywhere, to exactly its body (property)', () => {
    fc.assert(
      fc.property(chunkedWire, cuts, ({ data, wire }, c) => {
        const outcome = decode(splitAt(wire, c));
        expect(outcome.error).toBeNull();
        expect(outcome.done).toBe(true);
        expect(outcome.body.equals(data)).toBe(true);
      }),
      { numRuns: 400 },
    );
  });

  it('should give the same outcome for every split of any bytes, failing only with its own errors (fuzz)', () => {
    const anyBytes = fc.oneof(
      fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)),
      // Mostly-valid input: a valid encoding with bytes flipped, cut or inserted.
      fc
        .tuple(chunkedWire, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }))
        .map(([{ wire }, edits]) => {
          const out = Buffer.from(wire);
          for (const [pos, byte] of edits) if (out.length > 0) out[pos % out.length] = byte;
          return out;
        }),
      fc.tuple(chunkedWire, fc.nat()).map(([{ wire }, cut]) => wire.subarray(0, cut % (wire.length + 1))),
      fc
        .tuple(
          fc.constantFrom('ffffffffffff', 'fffffffffffff', '-1', '0x10', ' 5', '5 ', '', 'g'),
          fc.boolean(),
        )
        .map(([size, lf]) => Buffer.from(`${size}${lf ? '\n' : '\r\n'}hello\r\n0\r\n\r\n`)),
    );
    fc.assert(
      fc.property(anyBytes, cuts, (bytes, c) => {
        const whole = decode([bytes]);
        const split = decode(splitAt(bytes, c));
        expect(split).toEqual(whole);
        expect(whole.body.length).toBeLessThanOrEqual(bytes.length);
      }),
      { numRuns: 1500 },
    );
  });

  it('should refuse lines and trailers longer than its bounds, even one byte at a time', () => {
    const long = Buffer.from(`1;${'e'.repeat(MAX_CHUNK_LINE_BYTES)}\r\n`);
    expect(decode([long]).error).toMatch(/line too long/);
    expect(decode([...long].map((b) => Buffer.from([b]))).error).toMatch(/line too long/);
    const trailers = Buffer.from(`0\r\n${'x-t: 1234567890\r\n'.repeat(2000)}\r\n`);
    expect(decode([trailers]).error).toMatch(/trailers too large/);
  });
});

/** Header names RFC 9110 allows, and values without CR, LF or NUL. */
const tokenName = fc.stringMatching(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,20}$/);
const fieldValue = fc.stringMatching(/^[\x20-\x7e\t]{0,40}$/).map((v) => v.trim());

describe('response head parser', () => {
  it('should read back any well-formed head: status, lower-case names, repeated headers joined (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 100, max: 599 }),
        fc.constantFrom('0', '1'),
        fc.stringMatching(/^[\x20-\x7e]{0,20}$/),
        fc.array(fc.tuple(tokenName, fieldValue), { maxLength: 12 }),
        (status, minor, reason, fields) => {
          const text = [
            `HTTP/1.${minor} ${status}${reason ? ` ${reason}` : ''}`,
            ...fields.map(([n, v]) => `${n}: ${v}`),
          ].join('\r\n');
          const head = parseHead(text);
          expect(head.status).toBe(status);
          expect(head.minor).toBe(Number(minor));
          const expected: Record<string, string> = {};
          for (const [n, v] of fields) {
            const k = n.toLowerCase();
            expected[k] = k in expected ? `${expected[k]}, ${v}` : v;
          }
          expect(head.headers).toEqual(expected);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('should either parse or throw an ordinary Error for any text, and never let CR, LF or NUL into a value (fuzz)', () => {
    const text = fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('latin1')),
      fc
        .tuple(
          fc.array(fc.tuple(tokenName, fieldValue), { maxLength: 5 }),
          fc.string({ maxLength: 20 }),
          fc.nat(),
        )
        .map(([fields, junk, at]) => {
          const head = ['HTTP/1.1 200 OK', ...fields.map(([n, v]) => `${n}: ${v}`)].join('\r\n');
          const pos = at % (head.length + 1);
          return head.slice(0, pos) + junk + head.slice(pos);
        }),
    );
    fc.assert(
      fc.property(text, (t) => {
        let head: ReturnType<typeof parseHead> | null = null;
        try {
          head = parseHead(t);
        } catch (err) {
          expect(err).toBeInstanceOf(Error);
          expect((err as Error).message).toMatch(/^(not an HTTP\/1\.x response|malformed response header)/);
          return;
        }
        expect(head.status).toBeGreaterThanOrEqual(100);
        expect(head.status).toBeLessThanOrEqual(999);
        for (const [name, value] of Object.entries(head.headers)) {
          expect(name).toMatch(/^[!#$%&'*+\-.^_`|~0-9a-z]+$/);
          // eslint-disable-next-line no-control-regex
          expect(value).not.toMatch(/[\r\n\u0000]/);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('should join a folded header line to the one before and refuse one with nothing before it', () => {
    expect(parseHead('HTTP/1.1 200 OK\r\nx-long: a\r\n  b').headers['x-long']).toBe('a b');
    expect(() => parseHead('HTTP/1.1 200 OK\r\n b')).toThrow(/malformed response header/);
    expect(() => parseHead('HTTP/1.1 200 OK\r\nbad name: x')).toThrow(/malformed response header/);
    expect(() => parseHead('HTTP/1.1 200 OK\r\nx: a\u0000b')).toThrow(/malformed response header/);
    expect(() => parseHead('HTTP/2 200')).toThrow(/not an HTTP\/1\.x response/);
  });
});

describe('body framing and the request head', () => {
  const head = (text: string) => parseHead(`HTTP/1.1 200 OK\r\n${text}`.replace(/\r\n$/, ''));

  it('should tell which responses leave their connection reusable', () => {
    expect(decoderFor(head('content-length: 5')).reusable).toBe(true);
    expect(decoderFor(head('transfer-encoding: chunked')).reusable).toBe(true);
    expect(decoderFor(head('content-length: 5\r\nconnection: close')).reusable).toBe(false);
    expect(decoderFor(parseHead('HTTP/1.0 200 OK\r\ncontent-length: 5')).reusable).toBe(false);
    // Both framings: Transfer-Encoding wins, and the connection is not trusted with another request.
    const both = decoderFor(head('transfer-encoding: chunked\r\ncontent-length: 5'));
    expect(both.decoder).toBeInstanceOf(ChunkedDecoder);
    expect(both.reusable).toBe(false);
    expect(decoderFor(head('x: y')).reusable).toBe(false); // ends with the connection
    expect(decoderFor(parseHead('HTTP/1.1 304 Not Modified')).decoder.done).toBe(true);
    expect(() => decoderFor(head('content-length: 5, 6'))).toThrow(/invalid Content-Length/);
    expect(() => decoderFor(head('content-length: -1'))).toThrow(/invalid Content-Length/);
    expect(() => decoderFor(head('transfer-encoding: chunked, gzip'))).toThrow(/unsupported transfer coding/);
    expect(keepAliveTimeoutMs({ 'keep-alive': 'timeout=5, max=100' })).toBe(5000);
    expect(keepAliveTimeoutMs({})).toBeNull();
  });

  it('should refuse request heads that could split the request', () => {
    expect(requestHead('/a?b=c', { host: 'h', range: 'bytes=0-' })).toBe(
      'GET /a?b=c HTTP/1.1\r\nhost: h\r\nrange: bytes=0-\r\n\r\n',
    );
    expect(() => requestHead('/a', { 'x-evil': 'a\r\nhost: b' })).toThrow(/invalid request header x-evil/);
    expect(() => requestHead('/a', { 'bad name': 'x' })).toThrow(/invalid request header/);
    expect(() => requestHead('/a b', {})).toThrow(/invalid request target/);
  });
});
