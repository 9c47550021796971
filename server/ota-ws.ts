import type { IncomingMessage } from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import { z } from 'zod';
import { createContextInner, requestMetaFrom, type RequestMeta } from '../api/context.js';
import { mayAccessGateway } from '../core/auth.js';
import { GantryError } from '../core/errors.js';
import { systemStatusEvent } from '../services/system.js';
import type { GantryDeps } from './deps.js';

/** Close codes of /api/v1/ota/ws (4000–4999 is the application range). */
export const WS_CLOSE = {
  AUTH_TIMEOUT: 4408,
  AUTH_FAILED: 4401,
  FORBIDDEN: 4403,
  GATEWAY_NOT_FOUND: 4404,
  BAD_MESSAGE: 4400,
} as const;

const authMessageSchema = z.object({
  type: z.literal('auth'),
  token: z.string().min(1),
  /** Browsers cannot set X-Gateway-ID on a WebSocket: the gateway may come with the auth message. */
  gateway_id: z.string().min(1).optional(),
});

/** `{"type":"auth","token":"cookie"}`: authenticate with the session cookie of the upgrade request. */
export const COOKIE_TOKEN = 'cookie';

function sameOriginUpgrade(deps: GantryDeps, meta: RequestMeta): boolean {
  if (!meta.origin) return false;
  if (deps.config.trustedOrigins.includes(meta.origin)) return true;
  try {
    return new URL(meta.origin).host === meta.host;
  } catch {
    return false;
  }
}

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
      // A page cannot read its HttpOnly session cookie: token "cookie" means the one sent with the
      // upgrade, accepted only from a page of this origin (a cross-site page must not ride on it).
      if (parsed.token === COOKIE_TOKEN) {
        if (meta.authMethod !== 'cookie' || !meta.token || !sameOriginUpgrade(deps, meta))
          return close(WS_CLOSE.AUTH_FAILED, 'AUTH_REQUIRED');
        parsed = { ...parsed, token: meta.token };
      }
      const ctx = createContextInner(deps, { ...meta, token: parsed.token, authMethod: 'bearer' });
      if (!ctx.user) {
        const err = ctx.authError ?? new GantryError('AUTH_INVALID_TOKEN', 'Invalid session token');
        return close(WS_CLOSE.AUTH_FAILED, err.gantryCode);
      }
      const gatewayId = parsed.gateway_id ?? meta.gatewayId;
      const gateway = gatewayId ? deps.gateways.get(gatewayId) : undefined;
      if (!gatewayId || !gateway) return close(WS_CLOSE.GATEWAY_NOT_FOUND, 'GATEWAY_NOT_FOUND');
      if (!mayAccessGateway(ctx.user.gateways, gatewayId))
        return close(WS_CLOSE.FORBIDDEN, 'GATEWAY_FORBIDDEN');

      // Re-checked before every event and status tick: a logout, an expiry or a changed user
      // ends the channel before anything more is sent.
      const sessionStillValid = (): boolean => {
        const now = createContextInner(deps, { ...meta, token: parsed.token, authMethod: 'bearer' });
        if (!now.user) close(WS_CLOSE.AUTH_FAILED, now.authError?.gantryCode ?? 'AUTH_INVALID_TOKEN');
        else if (!mayAccessGateway(now.user.gateways, gatewayId))
          close(WS_CLOSE.FORBIDDEN, 'GATEWAY_FORBIDDEN');
        else return true;
        return false;
      };
      cleanup.push(deps.bus.subscribe(gatewayId, (event) => sessionStillValid() && send(event)));
      send({ type: 'auth_ok', gateway_id: gatewayId, user: ctx.user.username });
      const pushStatus = () => {
        if (sessionStillValid()) systemStatusEvent(gateway, deps.clock()).then(send, () => undefined);
      };
      pushStatus();
      const interval = setInterval(pushStatus, statusIntervalMs);
      cleanup.push(() => clearInterval(interval));
      // After auth the channel is server → client only; anything else is ignored.
    });
  });

  return wss;
}
