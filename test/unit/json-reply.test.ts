import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMON_HEADERS, writeJson } from '../../rest-compat/json-reply.js';

/**
 * rest-compat/json-reply.ts writes the server's JSON answers to requests other than GETs without
 * Express's res.json (which loads mime-db): the answer must be the one Express would have written,
 * byte for byte, headers included. Both are mounted on one Express app, as the server mounts them.
 */
describe("writeJson: Express's res.json answer, without Express", () => {
  const reply = { status: 201, body: { success: true, data: { id: 'job-1', note: 'grüße, ✓' } } };
  let base: string;
  let close: () => void;

  beforeAll(async () => {
    const app = express();
    app.set('x-powered-by', false);
    app.use((_req, res, next) => {
      for (const [name, value] of Object.entries(COMMON_HEADERS)) res.setHeader(name, value);
      next();
    });
    app.post('/express', (_req, res) => void res.status(reply.status).json(reply.body));
    app.post('/written', (_req, res) => writeJson(res, reply));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    close = () => server.close();
  });
  afterAll(() => close());

  it('should write the same status, headers and bytes as res.status(status).json(body)', async () => {
    const answer = async (path: string) => {
      const res = await fetch(`${base}${path}`, { method: 'POST' });
      const headers = Object.fromEntries(
        [...res.headers].filter(
          ([name]) => name !== 'date' && name !== 'connection' && name !== 'keep-alive',
        ),
      );
      return { status: res.status, headers, body: Buffer.from(await res.arrayBuffer()).toString('hex') };
    };
    const viaExpress = await answer('/express');
    expect(viaExpress.headers['etag']).toMatch(/^W\/"[0-9a-f]+-/);
    expect(await answer('/written')).toEqual(viaExpress);
  });
});
