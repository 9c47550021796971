import type { IncomingMessage } from 'node:http';
import type { TokenClaims } from '../core/auth.js';
import { GantryError } from '../core/errors.js';
import type { GantryDeps } from '../server/deps.js';

export const SESSION_COOKIE = 'session_token';

export interface CookieOptions {
  maxAgeMs?: number;
}

/** What the transport (HTTP, WebSocket, REST-compat, a test) tells the core about a request. */
export interface RequestMeta {
  token?: string;
  authMethod?: 'bearer' | 'cookie';
  gatewayId?: string;
  /** Origin (or Referer's origin) and Host, for the same-origin check of cookie-authenticated writes. */
  origin?: string;
  host?: string;
  remoteAddress?: string;
  setSessionCookie?: (token: string, opts: CookieOptions) => void;
  clearSessionCookie?: () => void;
}

export interface AuthUser extends TokenClaims {
  username: string;
}

/**
 * Builds the context from plain data, so tests and every adapter share it. Token problems are
 * kept, not thrown: public procedures (login) work without a token, `requireUser` throws them.
 */
export function createContextInner(deps: GantryDeps, meta: RequestMeta) {
  let user: AuthUser | null = null;
  let authError: GantryError | null = null;
  if (meta.token) {
    try {
      const claims = deps.tokens.verify(meta.token);
      const row = deps.users.find(claims.sub);
      // A deleted user, or one whose sessions were revoked, holds a token that no longer counts.
      if (!row || row.tokenVersion !== claims.ver)
        throw new GantryError('AUTH_INVALID_TOKEN', 'Session revoked');
      user = { ...claims, username: row.username, role: row.role, gateways: row.gateways };
    } catch (err) {
      authError =
        err instanceof GantryError ? err : new GantryError('AUTH_INVALID_TOKEN', 'Invalid session token');
    }
  }
  return { deps, meta, user, authError };
}
export type Context = ReturnType<typeof createContextInner>;

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function cookieValue(req: IncomingMessage, name: string): string | undefined {
  const raw = header(req, 'cookie');
  if (!raw) return undefined;
  for (const part of raw.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
  }
  return undefined;
}

function originOf(req: IncomingMessage): string | undefined {
  const origin = header(req, 'origin');
  if (origin && origin !== 'null') return origin;
  const referer = header(req, 'referer');
  if (!referer) return undefined;
  try {
    return new URL(referer).origin;
  } catch {
    return undefined;
  }
}

/** Request metadata from an HTTP or WebSocket-upgrade request. Bearer wins over the cookie. */
export function requestMetaFrom(req: IncomingMessage): RequestMeta {
  const authz = header(req, 'authorization');
  const bearer = authz?.match(/^Bearer\s+(\S+)$/i)?.[1];
  const cookie = cookieValue(req, SESSION_COOKIE);
  return {
    token: bearer ?? cookie,
    authMethod: bearer ? 'bearer' : cookie ? 'cookie' : undefined,
    gatewayId: header(req, 'x-gateway-id')?.trim() || undefined,
    origin: originOf(req),
    host: header(req, 'host'),
    remoteAddress: req.socket.remoteAddress,
  };
}
