import type { IncomingMessage } from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import { presentGatewayEvent } from '../api/presenters/events.js';
import { presentSystemStatusEvent } from '../api/presenters/system.js';
import { systemActivity } from '../services/system.js';
import type { GantryDeps } from './deps.js';
import { acceptAuthenticatedSocket } from './ws-session.js';

export interface OtaWsOptions {
  authTimeoutMs?: number;
  statusIntervalMs?: number;
}

/**
 * The spec's real-time channel. The first message must be `{"type":"auth","token":…}` within
 * `authTimeoutMs`; then the client gets its gateway's bus events (and nothing of other gateways),
 * plus a `system_status` at once and every `statusIntervalMs` while connected.
 */
export function createOtaWebSocketServer(deps: GantryDeps, opts: OtaWsOptions = {}) {
  const authTimeoutMs = opts.authTimeoutMs ?? 5000;
  const statusIntervalMs = opts.statusIntervalMs ?? 5000;
  const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });

  wss.on('connection', (ws: WebSocket, req: IncomingMessage) => {
    acceptAuthenticatedSocket(deps, ws, req, authTimeoutMs, (session) => {
      const gateway = deps.gateways.get(session.gatewayId)!;
      // Checked before every event and status tick: a logout or expiry ends the channel first.
      session.onClose(
        deps.bus.subscribe(
          session.gatewayId,
          (event) => session.stillValid() && session.send(presentGatewayEvent(event)),
        ),
      );
      session.send({ type: 'auth_ok', gateway_id: session.gatewayId, user: session.username });
      const pushStatus = () => {
        if (session.stillValid())
          systemActivity(gateway, deps.clock()).then(
            (activity) => session.send(presentSystemStatusEvent(activity)),
            () => undefined,
          );
      };
      pushStatus();
      const interval = setInterval(pushStatus, statusIntervalMs);
      session.onClose(() => clearInterval(interval));
    });
  });

  return wss;
}
