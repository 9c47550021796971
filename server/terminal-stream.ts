import type http from 'node:http';
import type { IncomingMessage } from 'node:http';
import { Server as SocketIOServer } from 'socket.io';
import { WebSocketServer, type WebSocket } from 'ws';
import { z } from 'zod';
import { createContextInner, requestMetaFrom, type RequestMeta } from '../api/context.js';
import type { TerminalOutput } from '../api/schemas/zip.js';
import { mayAccessGateway } from '../core/auth.js';
import { GantryError } from '../core/errors.js';
import type { GantryDeps } from './deps.js';
import { WS_CLOSE } from './ota-ws.js';

/**
 * The terminal of ota-zip-updates.md: every step of a ZIP operation and every line a hook prints,
 * on the namespace `/ota-update`, twice over:
 *  - Socket.IO v4 (what the spec's "namespace" means): `io('http://host/ota-update', { auth: {
 *    token, gateway_id } })`, or the session cookie; event `terminal_output`;
 *  - a plain WebSocket at `ws://host/ota-update` for clients without Socket.IO, authenticated like
 *    /api/v1/ota/ws (first message `{"type":"auth","token":…,"gateway_id"?:…}`), messages
 *    `{"type":"terminal_output",…}`.
 * Each client receives only its own gateway's output.
 */

export const TERMINAL_NAMESPACE = '/ota-update';
export const TERMINAL_EVENT = 'terminal_output';
export const SOCKET_IO_PATH = '/socket.io/';

export interface TerminalStreamOptions {
  /** Plain WebSocket: how long the first (auth) message may take. */
  authTimeoutMs?: number;
}

export interface TerminalStream {
  io: SocketIOServer;
  /** noServer: app.ts routes `/ota-update` upgrades to it. */
  wss: WebSocketServer;
  close(): Promise<void>;
}

type Authorized = { gatewayId: string; username: string } | { error: GantryError; close: number };

/**
 * Token (handshake, else Bearer header, else cookie) → user; gateway (handshake, else
 * X-Gateway-ID) → hosted and allowed. A cookie-authenticated socket must come from this origin:
 * a WebSocket is not bound by CORS, so another site's page could otherwise read the stream.
 */
function authorize(deps: GantryDeps, meta: RequestMeta, token?: string, gatewayId?: string): Authorized {
  const ctx = createContextInner(deps, token ? { ...meta, token, authMethod: 'bearer' } : meta);
  if (!ctx.user) {
    const error = ctx.authError ?? new GantryError('AUTH_REQUIRED', 'Authentication required');
    return { error, close: WS_CLOSE.AUTH_FAILED };
  }
  if (ctx.meta.authMethod === 'cookie') {
    const sameHost =
      meta.origin !== undefined && meta.host !== undefined && originHost(meta.origin) === meta.host;
    const trusted = meta.origin !== undefined && deps.config.trustedOrigins.includes(meta.origin);
    if (meta.origin !== undefined && !sameHost && !trusted) {
      return {
        error: new GantryError('CSRF_REJECTED', 'Cross-origin connection refused'),
        close: WS_CLOSE.FORBIDDEN,
      };
    }
  }
  const id = gatewayId ?? meta.gatewayId;
  if (!id) {
    return {
      error: new GantryError('GATEWAY_REQUIRED', 'gateway_id is required'),
      close: WS_CLOSE.GATEWAY_NOT_FOUND,
    };
  }
  if (!deps.gateways.get(id)) {
    return {
      error: new GantryError('GATEWAY_NOT_FOUND', `Gateway ${id} not found`),
      close: WS_CLOSE.GATEWAY_NOT_FOUND,
    };
  }
  if (!mayAccessGateway(ctx.user.gateways, id)) {
    return {
      error: new GantryError('GATEWAY_FORBIDDEN', `Not allowed to act on gateway ${id}`),
      close: WS_CLOSE.FORBIDDEN,
    };
  }
  return { gatewayId: id, username: ctx.user.username };
}

function originHost(origin: string): string | null {
  try {
    return new URL(origin).host;
  } catch {
    return null;
  }
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);

const authMessageSchema = z.object({
  type: z.literal('auth'),
  token: z.string().min(1),
  gateway_id: z.string().min(1).optional(),
});

function attachSocketIo(server: http.Server, deps: GantryDeps): SocketIOServer {
  const io = new SocketIOServer(server, {
    path: SOCKET_IO_PATH,
    serveClient: false,
    // app.ts answers every other upgrade path itself; engine.io must not end those sockets.
    destroyUpgrade: false,
  });
  // Nothing is served on the main namespace.
  io.use((_socket, next) => next(new Error(`Connect to the ${TERMINAL_NAMESPACE} namespace`)));

  const nsp = io.of(TERMINAL_NAMESPACE);
  nsp.use((socket, next) => {
    const auth = (socket.handshake.auth ?? {}) as Record<string, unknown>;
    const result = authorize(
      deps,
      requestMetaFrom(socket.request),
      str(auth.token),
      str(auth.gateway_id) ?? str(socket.handshake.query.gateway_id),
    );
    if ('error' in result) {
      const err = new Error(result.error.message) as Error & { data?: unknown };
      err.data = { code: result.error.gantryCode };
      return next(err);
    }
    socket.data.gatewayId = result.gatewayId;
    socket.data.recheck = () =>
      authorize(deps, requestMetaFrom(socket.request), str(auth.token), result.gatewayId);
    next();
  });
  nsp.on('connection', (socket) => {
    const recheck = socket.data.recheck as () => Authorized;
    const unsubscribe = deps.provisioning.terminal.subscribe(socket.data.gatewayId as string, (line) => {
      // A session revoked (logout), expired or narrowed since the handshake gets no more output.
      const still = recheck();
      if ('error' in still) {
        socket.emit('auth_error', { code: still.error.gantryCode, message: still.error.message });
        socket.disconnect(true);
        return;
      }
      socket.emit(TERMINAL_EVENT, line);
    });
    socket.on('disconnect', unsubscribe);
  });
  return io;
}

function createTerminalWss(deps: GantryDeps, authTimeoutMs: number): WebSocketServer {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  wss.on('connection', (ws: WebSocket, req: IncomingMessage) => {
    const meta = requestMetaFrom(req);
    const cleanup: Array<() => void> = [];
    const close = (code: number, reason: string) => {
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, reason);
    };
    const timer = setTimeout(
      () => close(WS_CLOSE.AUTH_TIMEOUT, 'auth message not received in time'),
      authTimeoutMs,
    );
    cleanup.push(() => clearTimeout(timer));
    ws.on('close', () => cleanup.forEach((fn) => fn()));
    const send = (msg: unknown) => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(msg));
    };

    ws.once('message', (raw) => {
      clearTimeout(timer);
      let parsed: z.infer<typeof authMessageSchema>;
      try {
        parsed = authMessageSchema.parse(JSON.parse(String(raw)));
      } catch {
        return close(WS_CLOSE.BAD_MESSAGE, 'first message must be {"type":"auth","token":...}');
      }
      const result = authorize(deps, meta, parsed.token, parsed.gateway_id);
      if ('error' in result) return close(result.close, result.error.gantryCode);
      cleanup.push(
        deps.provisioning.terminal.subscribe(result.gatewayId, (line: TerminalOutput) => {
          // Like /api/v1/ota/ws: a session revoked or expired since the auth message ends the channel.
          const still = authorize(deps, meta, parsed.token, result.gatewayId);
          if ('error' in still) return close(still.close, still.error.gantryCode);
          send({ type: TERMINAL_EVENT, ...line });
        }),
      );
      send({ type: 'auth_ok', gateway_id: result.gatewayId, user: result.username });
      // After auth the channel is server → client only; anything else is ignored.
    });
  });
  return wss;
}

/** Attach before `listen()`: engine.io initialises its WebSocket transport on 'listening'. */
export function attachTerminalStream(
  server: http.Server,
  deps: GantryDeps,
  opts: TerminalStreamOptions = {},
): TerminalStream {
  const io = attachSocketIo(server, deps);
  const wss = createTerminalWss(deps, opts.authTimeoutMs ?? 5000);
  return {
    io,
    wss,
    async close() {
      for (const client of wss.clients) client.terminate();
      wss.close();
      // Not io.close(): that closes the HTTP server too, which app.ts closes itself.
      io.of(TERMINAL_NAMESPACE).disconnectSockets(true);
      io.engine.close();
    },
  };
}

/** True for upgrade paths app.ts must leave to Socket.IO. */
export function isSocketIoPath(pathname: string): boolean {
  return pathname.startsWith(SOCKET_IO_PATH);
}
