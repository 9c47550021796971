import type { Request, RequestHandler, Response, Router } from 'express';
import type { z } from 'zod';
import { createContextInner, requestMetaFrom, SESSION_COOKIE, type RequestMeta } from '../api/context.js';
import { createCaller } from '../api/routers/_app.js';
import type { Role } from '../drizzle/schema.js';
import type { GantryDeps } from '../server/deps.js';
import { toErrorResponse } from './errors.js';

export type Caller = ReturnType<typeof createCaller>;

/**
 * One documented REST route: where its input comes from, which procedure it calls, and the
 * message of its envelope. The same table feeds the OpenAPI document, so docs cannot drift.
 */
export interface RestRoute {
  method: 'get' | 'post';
  path: string;
  tag: string;
  summary: string;
  /** Least role allowed; null for public routes. Documentation only: the procedure enforces it. */
  role: Role | null;
  /**
   * Where the procedure's input comes from. `multipart` routes run `before` (auth check, then the
   * streaming upload) which leaves the procedure's input in `req.body`; `schema` documents the form.
   */
  input?: { from: 'query' | 'body' | 'multipart'; schema: z.ZodType };
  before?: RequestHandler[];
  output: z.ZodType;
  message: string | ((data: never) => string);
  call: (caller: Caller, input: unknown) => Promise<unknown>;
  /** Whether the route needs X-Gateway-ID (everything under /api/v1/ota does). */
  gateway: boolean;
}

export function defineRoute<O>(
  route: Omit<RestRoute, 'message' | 'call' | 'gateway'> & {
    call: (caller: Caller, input: never) => Promise<O>;
    message: string | ((data: O) => string);
    gateway?: boolean;
  },
): RestRoute {
  return { gateway: true, ...route } as RestRoute;
}

/** The session cookie as the spec's page needs it: HttpOnly, SameSite=Strict, scoped to the site. */
export function restMeta(deps: GantryDeps, req: Request, res: Response): RequestMeta {
  return {
    ...requestMetaFrom(req),
    setSessionCookie: (token, opts) =>
      res.cookie(SESSION_COOKIE, token, {
        httpOnly: true,
        sameSite: 'strict',
        secure: deps.config.cookieSecure,
        path: '/',
        maxAge: opts.maxAgeMs,
      }),
    clearSessionCookie: () =>
      res.clearCookie(SESSION_COOKIE, {
        httpOnly: true,
        sameSite: 'strict',
        secure: deps.config.cookieSecure,
        path: '/',
      }),
  };
}

export function sendError(deps: GantryDeps, res: Response, err: unknown, where: string): void {
  const { status, body, internal } = toErrorResponse(err);
  if (internal) console.error(`[gantry] ${where}:`, err);
  if (!res.headersSent) res.status(status).json(body);
}

export function mountRoutes(router: Router, deps: GantryDeps, routes: readonly RestRoute[]): void {
  for (const route of routes) {
    router[route.method](route.path, ...(route.before ?? []), async (req: Request, res: Response) => {
      try {
        const caller = createCaller(createContextInner(deps, restMeta(deps, req, res)));
        const input = route.input ? (route.input.from === 'query' ? { ...req.query } : req.body) : undefined;
        const data = await route.call(caller, input as never);
        const message = typeof route.message === 'function' ? route.message(data as never) : route.message;
        res.json({ data, success: true, message });
      } catch (err) {
        sendError(deps, res, err, `${route.method.toUpperCase()} ${route.path}`);
      }
    });
  }
}
