import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Server as SocketIOServer } from 'socket.io';
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
  /** noServer: app.ts routes `/ota-update` upgrades to it. */
  wss: WebSocketServer;
  /** A request under SOCKET_IO_PATH (polling transport); app.ts sends them here, not to Express. */
  handleSocketIoRequest(req: IncomingMessage, res: ServerResponse): void;
  /** An upgrade under SOCKET_IO_PATH (websocket transport). */
  handleSocketIoUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  close(): Promise<void>;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);

async function createSocketIo(deps: GantryDeps): Promise<{ io: SocketIOServer; engineHost: http.Server }> {
  const { Server: SocketIOServer } = await import('socket.io');
  // engine.io serves what an http.Server emits: this one never listens, app.ts hands it the
  // /socket.io/ requests and upgrades of the real server.
  const engineHost = http.createServer();
  const io = new SocketIOServer(engineHost, {
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
  return { io, engineHost };
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

/**
 * Socket.IO is loaded when its first request arrives (few gateways ever have a terminal client):
 * ~17 ms of start-up CPU and its modules' memory saved on every other server, and no engine.io
 * listener in front of every HTTP request.
 */
export function createTerminalStream(deps: GantryDeps, opts: TerminalStreamOptions = {}): TerminalStream {
  const wss = createTerminalWss(deps, opts.authTimeoutMs ?? 5000);
  let socketIo: Promise<{ io: SocketIOServer; engineHost: http.Server }> | null = null;
  let closed = false;
  const started = () => (socketIo ??= createSocketIo(deps));
  const fail = (err: unknown) => console.error('[gantry] socket.io could not start:', err);
  return {
    wss,
    handleSocketIoRequest(req, res) {
      if (closed) return void res.writeHead(503).end();
      started().then(
        ({ engineHost }) => engineHost.emit('request', req, res),
        (err: unknown) => {
          fail(err);
          if (!res.headersSent) res.writeHead(500).end();
        },
      );
    },
    handleSocketIoUpgrade(req, socket, head) {
      if (closed) return void socket.destroy();
      started().then(
        ({ engineHost }) => engineHost.emit('upgrade', req, socket, head),
        (err: unknown) => {
          fail(err);
          socket.destroy();
        },
      );
    },
    async close() {
      closed = true;
      for (const client of wss.clients) client.terminate();
      wss.close();
      if (!socketIo) return;
      const { io } = await socketIo;
      // Not io.close(): that would also close engineHost, which never listened.
      io.of(TERMINAL_NAMESPACE).disconnectSockets(true);
      io.engine.close();
    },
  };
}

/** True for upgrade paths app.ts must leave to Socket.IO. */
export function isSocketIoPath(pathname: string): boolean {
  return pathname.startsWith(SOCKET_IO_PATH);
}
