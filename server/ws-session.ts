import type { IncomingMessage } from 'node:http';
import type { WebSocket } from 'ws';
import { z } from 'zod';
import { createContextInner, requestMetaFrom, type RequestMeta } from '../api/context.js';
import { mayAccessGateway } from '../core/auth.js';
import { GantryError } from '../core/errors.js';
import type { GantryDeps } from './deps.js';

/** Close codes of Gantry's WebSockets (4000–4999 is the application range). */
export const WS_CLOSE = {
  AUTH_TIMEOUT: 4408,
  AUTH_FAILED: 4401,
  FORBIDDEN: 4403,
  GATEWAY_NOT_FOUND: 4404,
  BAD_MESSAGE: 4400,
} as const;

/** `{"type":"auth","token":"cookie"}`: authenticate with the session cookie of the upgrade request. */
export const COOKIE_TOKEN = 'cookie';

const authMessageSchema = z.object({
  type: z.literal('auth'),
  token: z.string().min(1),
  /** Browsers cannot set X-Gateway-ID on a WebSocket: the gateway may come with the auth message. */
  gateway_id: z.string().min(1).optional(),
});

export type SocketAuthorization =
  { gatewayId: string; username: string } | { error: GantryError; close: number };

function originHost(origin: string): string | null {
  try {
    return new URL(origin).host;
  } catch {
    return null;
  }
}

/**
 * Token (given, else Bearer header, else the session cookie; `"cookie"` names the cookie) → user;
 * gateway (given, else X-Gateway-ID) → hosted and allowed. A socket riding on the cookie must come
 * from a page of this origin: WebSockets are not bound by CORS, so another site's page could
 * otherwise read the stream. (A client without an Origin is no browser, so no CSRF vector.)
 */
export function authorizeSocket(
  deps: GantryDeps,
  meta: RequestMeta,
  token?: string,
  gatewayId?: string,
): SocketAuthorization {
  const useCookie = !token || token === COOKIE_TOKEN;
  if (useCookie && (meta.authMethod !== 'cookie' || !meta.token)) {
    return {
      error: new GantryError('AUTH_REQUIRED', 'Authentication required'),
      close: WS_CLOSE.AUTH_FAILED,
    };
  }
  const ctx = createContextInner(deps, useCookie ? meta : { ...meta, token, authMethod: 'bearer' });
  if (!ctx.user) {
    const error = ctx.authError ?? new GantryError('AUTH_REQUIRED', 'Authentication required');
    return { error, close: WS_CLOSE.AUTH_FAILED };
  }
  if (useCookie && meta.origin !== undefined) {
    const sameHost = meta.host !== undefined && originHost(meta.origin) === meta.host;
    if (!sameHost && !deps.config.trustedOrigins.includes(meta.origin)) {
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

export interface SocketSession {
  gatewayId: string;
  username: string;
  send(msg: unknown): void;
  /**
   * Re-checks the session (logout, expiry, narrowed gateways) and closes the socket if it no longer
   * holds: call it before sending anything.
   */
  stillValid(): boolean;
  onClose(fn: () => void): void;
}

/**
 * The first-message handshake shared by `/api/v1/ota/ws` and `ws://host/ota-update`: the client
 * has `authTimeoutMs` to send `{"type":"auth","token":…,"gateway_id"?:…}`; then `onReady` gets a
 * session. After that the channel is server → client only; anything the client sends is ignored.
 */
export function acceptAuthenticatedSocket(
  deps: GantryDeps,
  ws: WebSocket,
  req: IncomingMessage,
  authTimeoutMs: number,
  onReady: (session: SocketSession) => void,
): void {
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

  ws.once('message', (raw) => {
    clearTimeout(timer);
    let parsed: z.infer<typeof authMessageSchema>;
    try {
      parsed = authMessageSchema.parse(JSON.parse(String(raw)));
    } catch {
      return close(WS_CLOSE.BAD_MESSAGE, 'first message must be {"type":"auth","token":...}');
    }
    const first = authorizeSocket(deps, meta, parsed.token, parsed.gateway_id);
    if ('error' in first) return close(first.close, first.error.gantryCode);
    const { gatewayId, username } = first;
    onReady({
      gatewayId,
      username,
      send: (msg) => {
        if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(msg));
      },
      stillValid: () => {
        const now = authorizeSocket(deps, meta, parsed.token, gatewayId);
        if ('error' in now) close(now.close, now.error.gantryCode);
        return !('error' in now);
      },
      onClose: (fn) => cleanup.push(fn),
    });
  });
}
