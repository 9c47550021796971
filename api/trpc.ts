import { initTRPC } from '@trpc/server';
import { ZodError } from 'zod';
import { roleAtLeast } from '../core/auth.js';
import { findGantryError, GantryError } from '../core/errors.js';
import type { Role } from '../core/vocabulary.js';
import type { Context } from './context.js';
import { toTRPCError } from './errors.js';
import type { Access, ProcedureMeta } from './meta.js';

const t = initTRPC
  .context<Context>()
  .meta<ProcedureMeta>()
  .create({
    errorFormatter({ shape, error }) {
      const gantry = findGantryError(error);
      const zod = error.cause instanceof ZodError ? error.cause : null;
      return {
        ...shape,
        data: {
          ...shape.data,
          gantryCode: gantry?.gantryCode ?? (zod ? 'VALIDATION_ERROR' : null),
          details: gantry?.details ?? null,
          issues: zod ? zod.issues.map((i) => ({ path: i.path.join('.'), message: i.message })) : null,
        },
      };
    },
  });

/**
 * Outermost on every procedure: a GantryError thrown below leaves as the TRPCError of its status
 * (tRPC would otherwise call anything that is not a TRPCError a 500).
 */
const mapGantryErrors = t.middleware(async function mapGantryErrors({ next }) {
  return mapped(await next());
});

function mapped<R extends { ok: boolean; error?: unknown }>(result: R): R {
  if (!result.ok) {
    const error = toTRPCError(result.error);
    if (error) throw error;
  }
  return result;
}

export const router = t.router;
export const createCallerFactory = t.createCallerFactory;

/** Who may call: recorded in the metadata by the builders below, beside the middleware that enforces it. */
function access(role: Role | null, gateway: boolean): ProcedureMeta {
  return { access: { role, gateway } satisfies Access };
}

export const publicProcedure = t.procedure.use(mapGantryErrors).meta(access(null, false));

/**
 * Every state-changing call lands in the audit trail with its outcome, including the refused
 * ones (wrong gateway, wrong role, blocked by safety): those are the ones a reviewer looks for.
 * Outermost on the signed-in builders, where it also maps errors as mapGantryErrors does (the
 * audit sees the outcome first, as before): one step of tRPC's chain rather than two, as each step
 * copies the call's options (issue 16).
 */
const auditAndMapErrors = t.middleware(async function auditAndMapErrors({ ctx, type, path, next }) {
  const result = await next();
  if (type === 'mutation') {
    const failure = result.ok ? null : findGantryError(result.error);
    ctx.deps.audit.record({
      username: ctx.user?.username ?? null,
      gatewayId: ctx.meta.gatewayId ?? null,
      action: path,
      outcome: result.ok ? 'success' : 'failure',
      detail: result.ok
        ? null
        : (failure?.gantryCode ??
          (result.error.cause instanceof ZodError ? 'VALIDATION_ERROR' : result.error.code)),
      remoteAddress: ctx.meta.remoteAddress ?? null,
    });
  }
  return mapped(result);
});

/** A valid, unrevoked token (Bearer or session cookie) is required; the user it names. */
function requireUser(ctx: Context): NonNullable<Context['user']> {
  if (ctx.authError) throw ctx.authError;
  if (!ctx.user) throw new GantryError('AUTH_REQUIRED', 'Authentication required');
  return ctx.user;
}

/**
 * A write authenticated only by the ambient session cookie must come from a page of this origin
 * (or a configured trusted one): SameSite=Strict already stops most CSRF, this stops the rest.
 * Bearer tokens are never sent by a browser on its own, so they need no such proof.
 */
function requireSameOrigin(ctx: Context, type: string): void {
  if (type !== 'query' && ctx.meta.authMethod === 'cookie') {
    const { origin, host } = ctx.meta;
    const sameHost = origin !== undefined && host !== undefined && safeHost(origin) === host;
    const trusted = origin !== undefined && ctx.deps.config.trustedOrigins.includes(origin);
    if (!sameHost && !trusted) {
      throw new GantryError(
        'CSRF_REJECTED',
        'Cross-origin request refused: Origin does not match this server',
      );
    }
  }
}

/** X-Gateway-ID names a gateway this server hosts and this user may act on; that gateway. */
function requireGateway(ctx: Context, user: NonNullable<Context['user']>) {
  const id = ctx.meta.gatewayId;
  if (!id) throw new GantryError('GATEWAY_REQUIRED', 'X-Gateway-ID header is required');
  const gateway = ctx.deps.gateways.get(id);
  if (!gateway) throw new GantryError('GATEWAY_NOT_FOUND', `Gateway ${id} not found`);
  if (!user.gateways.includes('*') && !user.gateways.includes(id)) {
    throw new GantryError('GATEWAY_FORBIDDEN', `Not allowed to act on gateway ${id}`);
  }
  return gateway;
}

function requireRole(user: NonNullable<Context['user']>, role: Role): void {
  if (!roleAtLeast(user.role, role)) throw new GantryError('FORBIDDEN', `This action needs the ${role} role`);
}

function safeHost(origin: string): string | null {
  try {
    return new URL(origin).host;
  } catch {
    return null;
  }
}

/**
 * The checks of a signed-in call, in this order: the token, the origin of a cookie-authenticated
 * write, the role. One middleware rather than one per check: each step of tRPC's chain copies the
 * context, ~20 % of a `GET /status` request's CPU under load (profile of the issue 16 work).
 */
function signedIn(role: Role) {
  return t.middleware(function signedIn({ ctx, type, next }) {
    const user = requireUser(ctx);
    requireSameOrigin(ctx, type);
    requireRole(user, role);
    return next({ ctx: { user } });
  });
}

/** As signedIn, then X-Gateway-ID (checked before the role, as a wrong gateway is the first error). */
function onGateway(role: Role) {
  return t.middleware(function onGateway({ ctx, type, next }) {
    const user = requireUser(ctx);
    requireSameOrigin(ctx, type);
    const gateway = requireGateway(ctx, user);
    requireRole(user, role);
    return next({ ctx: { user, gateway } });
  });
}

// Audit first: a write refused for a missing, forged or expired token belongs in the trail too.
// A role is only ever required through these builders, so the metadata that documents it (the REST
// reference, the OpenAPI document) is set in the same expression that enforces it.
const audited = t.procedure.use(auditAndMapErrors);
export const authedProcedure = audited.use(signedIn('viewer')).meta(access('viewer', false));
/** Admin actions not bound to one gateway (users, the inspector). */
export const accountAdminProcedure = audited.use(signedIn('admin')).meta(access('admin', false));
/** Reads of one gateway: any role. */
export const viewerProcedure = audited.use(onGateway('viewer')).meta(access('viewer', true));
export const operatorProcedure = audited.use(onGateway('operator')).meta(access('operator', true));
export const adminProcedure = audited.use(onGateway('admin')).meta(access('admin', true));
