/**
 * The dependency floor (issue 16): a server made of Gantry's runtime packages and nothing of its
 * own, to tell how much of Gantry's idle memory is its own code and data and how much comes with
 * Node and the stack the product owner fixed (Express, tRPC, zod, XState, drizzle on
 * better-sqlite3, ws, multer, jsonwebtoken).
 *
 * scripts/build-server.ts builds it exactly as it builds the server (same esbuild settings and
 * plugins, same loader with its V8 code cache); the foundation bench runs it with the launcher's
 * node flags and checks that it bundles the same set of packages as server.cjs. Each package is
 * imported as Gantry imports it, statically or on first use (tuf-js), and used once on the way of
 * a login and a GET: SQLite opened through drizzle, a JSON body parsed and checked by zod, a token
 * signed and verified, a tRPC procedure called, a statechart started, a WebSocket server and an
 * upload parser ready.
 */
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { canonicalize } from '@tufjs/canonical-json';
import { Metadata } from '@tufjs/models';
import { initTRPC } from '@trpc/server';
import { createExpressMiddleware } from '@trpc/server/adapters/express';
import { applyWSSHandler } from '@trpc/server/adapters/ws';
import { getHTTPStatusCodeFromError } from '@trpc/server/http';
import Database from 'better-sqlite3';
import { Cron } from 'croner';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import { integer, sqliteTable, text } from 'drizzle-orm/sqlite-core';
import express from 'express';
import { decompress } from 'fzstd';
import jwt from 'jsonwebtoken';
import multer from 'multer';
import RateLimiterMemory from 'rate-limiter-flexible/lib/RateLimiterMemory.js';
import { WebSocketServer } from 'ws';
import { createActor, createMachine } from 'xstate';
import { z } from 'zod';

const SECRET = 'dependency-floor';
const dataDir = path.resolve(process.env.GANTRY_DATA_DIR || './data');
fs.mkdirSync(dataDir, { recursive: true });

const kv = sqliteTable('kv', { id: integer('id').primaryKey(), value: text('value').notNull() });
const sqlite = new Database(path.join(dataDir, 'floor.db'));
sqlite.pragma('journal_mode = WAL');
const db = drizzle(sqlite);
db.run(sql`create table if not exists kv (id integer primary key, value text not null)`);
db.insert(kv).values({ id: 1, value: 'A' }).onConflictDoNothing().run();

const t = initTRPC.create();
const appRouter = t.router({
  status: t.procedure.output(z.object({ active: z.string() })).query(() => {
    const row = db.select().from(kv).get();
    return { active: row?.value ?? '?' };
  }),
});
const caller = t.createCallerFactory(appRouter)({});

const slot = createActor(
  createMachine({ id: 'slot', initial: 'good', states: { good: { on: { TRIAL: 'trial' } }, trial: {} } }),
).start();
const limiter = new RateLimiterMemory({ points: 10, duration: 60 });
const upload = multer({ dest: path.join(dataDir, 'uploads') });
const loginBody = z.object({ username: z.string().min(1), password: z.string().min(1) });

const app = express();
app.use(express.json());
app.post('/api/v1/auth/login', (req, res) => {
  const body = loginBody.safeParse(req.body);
  if (!body.success) return void res.status(400).json({ success: false });
  void limiter
    .consume(body.data.username)
    .then(() => res.json({ success: true, data: { token: jwt.sign({ sub: body.data.username }, SECRET) } }));
});
app.get('/api/v1/ota/status', (req, res) => {
  try {
    jwt.verify(String(req.headers.authorization).replace(/^Bearer /, ''), SECRET);
  } catch {
    return void res.status(401).json({ success: false });
  }
  caller.status().then(
    (data) => res.json({ success: true, data: { ...data, slot: slot.getSnapshot().value } }),
    (err: Parameters<typeof getHTTPStatusCodeFromError>[0]) =>
      res.status(getHTTPStatusCodeFromError(err)).json({ success: false }),
  );
});
app.post('/upload', upload.single('file'), (_req, res) => res.json({ success: true }));
app.use('/trpc', createExpressMiddleware({ router: appRouter }));
// On first use only, as Gantry's feed client takes it.
app.post('/feed', (_req, res) => {
  void import('tuf-js').then(() =>
    res.json({
      canonical: canonicalize({ b: 1, a: decompress(new Uint8Array(0)).length }),
      Metadata: !!Metadata,
    }),
  );
});

async function main(): Promise<{ dataDir: string }> {
  const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const wss = new WebSocketServer({ server, path: '/ws' });
  applyWSSHandler({ wss, router: appRouter });
  const nightly = new Cron('0 3 * * *', { paused: true }, () => undefined);
  process.once('SIGTERM', () => {
    nightly.stop();
    server.close();
    sqlite.close();
    process.exit(0);
  });
  console.log(
    `Gantry listening on http://127.0.0.1:${(server.address() as AddressInfo).port} (dependency floor)`,
  );
  return { dataDir };
}

/** Settles once it listens; the loader (server/bundle-loader.ts) then settles its code cache, as for the server. */
export const started: Promise<{ dataDir: string } | null> = main();
