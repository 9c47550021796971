import type { Request, Response } from 'express';
import { createContextInner, requestMetaFrom, type AuthUser, type RequestMeta } from '../api/context.js';
import { mayAccessGateway } from '../core/auth.js';
import type { GantryDeps } from '../server/deps.js';

/** The gateway chosen with the page's picker when the request names none (no X-Gateway-ID). */
export const GATEWAY_COOKIE = 'gateway_id';

export interface PageSession {
  meta: RequestMeta;
  user: AuthUser;
}

/** The signed-in user of a page request (session cookie, or a bearer token), or null. */
export function pageSession(deps: GantryDeps, req: Request): PageSession | null {
  const meta = requestMetaFrom(req);
  const ctx = createContextInner(deps, meta);
  return ctx.user ? { meta, user: ctx.user } : null;
}

export function cookieValue(req: Request, name: string): string | undefined {
  const raw = req.headers.cookie;
  if (!raw) return undefined;
  for (const part of raw.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      try {
        return decodeURIComponent(part.slice(eq + 1).trim());
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/** Gateways hosted here that this user may act on, in the configured order. */
export function accessibleGateways(deps: GantryDeps, user: AuthUser): string[] {
  return deps.gateways.ids().filter((id) => mayAccessGateway(user.gateways, id));
}

export type GatewayChoice =
  { ok: true; gatewayId: string } | { ok: false; status: 403 | 404; message: string };

/**
 * X-Gateway-ID when the request carries it (the spec's way), else the picker's cookie, else the
 * first gateway the user may access. A header naming a gateway the user may not see is refused,
 * never silently replaced by another one.
 */
export function chooseGateway(deps: GantryDeps, req: Request, session: PageSession): GatewayChoice {
  const allowed = accessibleGateways(deps, session.user);
  const header = session.meta.gatewayId;
  if (header) {
    if (!deps.gateways.get(header))
      return { ok: false, status: 404, message: `Gateway ${header} not found.` };
    if (!allowed.includes(header))
      return { ok: false, status: 403, message: `Your account may not act on gateway ${header}.` };
    return { ok: true, gatewayId: header };
  }
  const picked = cookieValue(req, GATEWAY_COOKIE);
  if (picked && allowed.includes(picked)) return { ok: true, gatewayId: picked };
  const first = allowed[0];
  if (!first)
    return { ok: false, status: 403, message: 'Your account may not act on any gateway of this server.' };
  return { ok: true, gatewayId: first };
}

export function setGatewayCookie(deps: GantryDeps, res: Response, gatewayId: string): void {
  res.cookie(GATEWAY_COOKIE, gatewayId, {
    httpOnly: true,
    sameSite: 'strict',
    secure: deps.config.cookieSecure,
    path: '/',
    maxAge: 365 * 24 * 3600 * 1000,
  });
}
