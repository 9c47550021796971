import type http from 'node:http';
import type { IncomingMessage } from 'node:http';
import { Server as SocketIOServer } from 'socket.io';
import { WebSocketServer, type WebSocket } from 'ws';
import { requestMetaFrom } from '../api/context.js';
import { presentTerminalLine } from '../api/presenters/zip.js';
import type { GantryDeps } from './deps.js';
import { acceptAuthenticatedSocket, authorizeSocket, type SocketAuthorization } from './ws-session.js';

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

const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);

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
    const result = authorizeSocket(
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
      authorizeSocket(deps, requestMetaFrom(socket.request), str(auth.token), result.gatewayId);
    next();
  });
  nsp.on('connection', (socket) => {
    const recheck = socket.data.recheck as () => SocketAuthorization;
    const unsubscribe = deps.provisioning.terminal.subscribe(socket.data.gatewayId as string, (line) => {
      // A session revoked (logout), expired or narrowed since the handshake gets no more output.
      const still = recheck();
      if ('error' in still) {
        socket.emit('auth_error', { code: still.error.gantryCode, message: still.error.message });
        socket.disconnect(true);
        return;
      }
      socket.emit(TERMINAL_EVENT, presentTerminalLine(line));
    });
    socket.on('disconnect', unsubscribe);
  });
  return io;
}

function createTerminalWss(deps: GantryDeps, authTimeoutMs: number): WebSocketServer {
  const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  wss.on('connection', (ws: WebSocket, req: IncomingMessage) => {
    acceptAuthenticatedSocket(deps, ws, req, authTimeoutMs, (session) => {
      session.onClose(
        deps.provisioning.terminal.subscribe(session.gatewayId, (line) => {
          if (session.stillValid()) session.send({ type: TERMINAL_EVENT, ...presentTerminalLine(line) });
        }),
      );
      session.send({ type: 'auth_ok', gateway_id: session.gatewayId, user: session.username });
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
