import http from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import { createExpressMiddleware } from '@trpc/server/adapters/express';
import { applyWSSHandler } from '@trpc/server/adapters/ws';
import { WebSocketServer } from 'ws';
import { createContextInner, requestMetaFrom } from '../api/context.js';
import { appRouter } from '../api/routers/_app.js';
import { GantryError } from '../core/errors.js';
import { createGetLane } from '../rest-compat/fast-get.js';
import { COMMON_HEADERS } from '../rest-compat/json-reply.js';
import { buildOpenApi } from '../rest-compat/openapi.js';
import { mountRestRoutes, restMeta, sendError } from '../rest-compat/route.js';
import { restRouteTable } from '../rest-compat/table.js';
import { docsPage } from '../web/docs.js';
import { mountWebPages } from '../web/routes.js';
import type { GantryDeps } from './deps.js';
import { createOtaWebSocketServer, type OtaWsOptions } from './ota-ws.js';
import { createTerminalStream, isSocketIoPath, TERMINAL_NAMESPACE } from './terminal-stream.js';

export interface GantryHttp {
  server: http.Server;
  close(): Promise<void>;
}

/** The HTTP server: REST-compat, tRPC over HTTP and WebSocket, the OTA WebSocket, docs. */
export function createHttpServer(deps: GantryDeps, opts: { ws?: OtaWsOptions } = {}): GantryHttp {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.use((_req, res, next) => {
    for (const [name, value] of Object.entries(COMMON_HEADERS)) res.setHeader(name, value);
    next();
  });

  app.use('/api/v1', express.json({ limit: '256kb' }));

  // The REST routes and their reference come from the procedures' metadata (api/meta.ts).
  const routes = restRouteTable(appRouter);
  // Built on the first request for it (~15 ms of start-up CPU otherwise), then kept.
  let openapi: ReturnType<typeof buildOpenApi> | undefined;
  const openApi = () => (openapi ??= buildOpenApi(routes));
  app.get('/api/v1/openapi.json', (_req, res) => res.json(openApi()));
  app.get('/api/docs', (_req, res) => res.type('html').send(docsPage(openApi())));
  // The operator's pages (/ota-system-updates, /login, /dev/inspector) and their built assets.
  mountWebPages(app, deps);

  // Both documents' routes: /api/v1/… and ota-zip-updates.md's own paths outside it.
  const api = express.Router();
  mountRestRoutes(api, deps, routes);
  app.use(api);

  app.use(
    '/api/trpc',
    createExpressMiddleware({
      router: appRouter,
      createContext: ({ req, res }) => createContextInner(deps, restMeta(deps, req, res)),
      onError: ({ error, path }) => {
        if (error.code === 'INTERNAL_SERVER_ERROR' && !(error.cause instanceof GantryError)) {
          console.error(`[gantry] trpc ${path}:`, error);
        }
      },
    }),
  );

  // Unknown API paths answer in the envelope rather than Express's HTML.
  app.use('/api', (_req, res) => {
    res.status(404).json({
      success: false,
      error: { code: 'NOT_FOUND', message: 'No such API route' },
      message: 'No such API route',
    });
  });

  // Body-parser errors (malformed JSON, too large) and anything a route let through.
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const e = err as { type?: string; status?: number };
    if (e.type === 'entity.parse.failed') {
      return sendError(deps, res, new GantryError('VALIDATION_ERROR', 'Malformed JSON body'), 'json');
    }
    if (e.type === 'entity.too.large') {
      return sendError(deps, res, new GantryError('PAYLOAD_TOO_LARGE', 'Request body too large'), 'json');
    }
    sendError(deps, res, err, 'express');
  });

  // Socket.IO (namespace /ota-update) answers its own path, before Express.
  const terminal = createTerminalStream(deps, { authTimeoutMs: opts.ws?.authTimeoutMs });
  // Plain JSON GETs (the pollers: /status, /progress, /monitor, …) skip Express when they can.
  const getLane = createGetLane(deps, routes);
  const server = http.createServer((req, res) => {
    if (isSocketIoPath(req.url ?? '/')) terminal.handleSocketIoRequest(req, res);
    else if (!getLane(req, res)) void app(req, res);
  });

  // Every ws server is noServer and routed by pathname, so later ones (socket.io) can share the port.
  const otaWss = createOtaWebSocketServer(deps, opts.ws);
  const trpcWss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });
  const trpcWsHandler = applyWSSHandler({
    wss: trpcWss,
    router: appRouter,
    createContext: ({ req, info }) => {
      const meta = requestMetaFrom(req);
      const params = info.connectionParams ?? {};
      return createContextInner(deps, {
        ...meta,
        token: params.token ?? meta.token,
        authMethod: params.token ? 'bearer' : meta.authMethod,
        gatewayId: params.gatewayId ?? meta.gatewayId,
      });
    },
  });

  server.on('upgrade', (req, socket, head) => {
    const pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (isSocketIoPath(pathname)) return terminal.handleSocketIoUpgrade(req, socket, head);
    const target =
      pathname === '/api/v1/ota/ws'
        ? otaWss
        : pathname === '/api/trpc'
          ? trpcWss
          : pathname === TERMINAL_NAMESPACE
            ? terminal.wss
            : null;
    if (!target) {
      socket.write('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      socket.destroy();
      return;
    }
    target.handleUpgrade(req, socket, head, (ws) => target.emit('connection', ws, req));
  });

  return {
    server,
    async close() {
      await deps.zipOps.close();
      await terminal.close();
      trpcWsHandler.broadcastReconnectNotification();
      for (const wss of [otaWss, trpcWss]) {
        for (const client of wss.clients) client.terminate();
        wss.close();
      }
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
