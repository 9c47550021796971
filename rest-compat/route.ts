import type { IRouter, Request, RequestHandler, Response } from 'express';
import {
  createContextInner,
  requestMetaFrom,
  SESSION_COOKIE,
  type Context,
  type RequestMeta,
} from '../api/context.js';
import type { RestReply, UploadMeta } from '../api/meta.js';
import { createCaller, type AppCaller } from '../api/routers/_app.js';
import { findGantryError } from '../core/errors.js';
import type { GantryDeps } from '../server/deps.js';
import { fileSources, sendFile } from './downloads.js';
import { toErrorResponse, type PlainErrorBody } from './errors.js';
import { writeJson, type JsonReply } from './json-reply.js';
import { ClientGone, readMultipart } from './multipart.js';
import type { RestRoute } from './table.js';
import { uploadTargets, type UploadSession } from './uploads.js';

export type Caller = AppCaller;

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

/** A refusal in the envelope of gateway-ota-system-api.rst. */
export function sendError(_deps: GantryDeps, res: Response, err: unknown, where: string): void {
  const { status, body, internal } = toErrorResponse(err);
  if (internal) console.error(`[gantry] ${where}:`, err);
  if (!res.headersSent) res.status(status).json(body);
}

/** Mounts every route of the table: parse → the procedure, through the tRPC caller → the documented reply. */
export function mountRestRoutes(router: IRouter, deps: GantryDeps, routes: readonly RestRoute[]): void {
  for (const route of routes) {
    const { method, path, reply } = route.rest;
    const where = `${method.toUpperCase()} ${path}`;
    router[method](
      path,
      reply.kind === 'file'
        ? fileHandler(deps, reply.source, reply.contentType, where)
        : procedureHandler(deps, route, reply, where),
    );
  }
}

/** The tRPC caller's procedure at a dotted path (the table names procedures by path). */
export function procedureAt(caller: Caller, path: string): (input: unknown) => Promise<unknown> {
  let node: unknown = caller;
  for (const key of path.split('.')) node = (node as Record<string, unknown>)[key];
  return node as (input: unknown) => Promise<unknown>;
}

function procedureHandler(
  deps: GantryDeps,
  route: RestRoute,
  reply: Exclude<RestReply, { kind: 'file' }>,
  where: string,
): RequestHandler {
  const answer = answerOf(reply);
  return async (req, res) => {
    const ctx = createContextInner(deps, restMeta(deps, req, res));
    const caller = createCaller(ctx);
    let release = () => {};
    let outcome: { ok: true; data: unknown } | { ok: false; error: unknown };
    try {
      let input: unknown;
      if (route.rest.upload) {
        const upload = await receiveUpload(deps, route, route.rest.upload, ctx, caller, req, res);
        release = upload.release;
        input = upload.input;
      } else {
        input = requestInput(route, req);
      }
      outcome = { ok: true, data: await procedureAt(caller, route.procedure)(input) };
    } catch (error) {
      outcome = { ok: false, error };
    }
    // Before the reply, so a client that reads the answer never sees a refused file still there.
    release();
    if (outcome.ok) return sendReply(req, res, answer.ok(outcome.data));
    if (outcome.error instanceof ClientGone) {
      // Only a body being read can be abandoned: `authorize` resolved the gateway by then.
      deps.logs.warn(
        ctx.meta.gatewayId!,
        'ota',
        'Upload abandoned: the client closed the connection mid-file',
      );
      if (!res.headersSent) res.destroy();
      return;
    }
    const failed = answer.fail(outcome.error, where);
    if (!res.headersSent) sendReply(req, res, failed);
  };
}

function sendReply(req: Request, res: Response, reply: JsonReply): void {
  // GET and HEAD through Express: its conditional answers (304) and HEAD's empty body.
  if (req.method === 'GET' || req.method === 'HEAD') res.status(reply.status).json(reply.body);
  else writeJson(res, reply);
}

/** The input of a JSON route: the path's parameters if it has any, else the query (GET) or the body. */
function requestInput(route: RestRoute, req: Request): unknown {
  if (!route.input) return undefined;
  if (route.pathParams.length > 0) {
    const params = route.pathParams.map((name) => [name, String(req.params[name])]);
    return { ...route.rest.bind, ...Object.fromEntries(params) };
  }
  return route.rest.method === 'get' ? { ...req.query } : req.body;
}

/**
 * A multipart route: the `authorize` query (role, gateway, token, whatever else it checks) and the
 * target's room check run BEFORE the body is read — a stranger must not be able to fill the disk —
 * then the file streams to its target, which makes it the procedure's input.
 */
async function receiveUpload(
  deps: GantryDeps,
  route: RestRoute,
  upload: UploadMeta,
  ctx: Context,
  caller: Caller,
  req: Request,
  res: Response,
): Promise<{ input: Record<string, unknown>; release: () => void }> {
  let session: UploadSession;
  try {
    await procedureAt(caller, upload.authorize)(route.rest.bind);
    // Known now: `authorize` has the route's access, so it resolved the gateway and the user.
    const gateway = deps.gateways.get(ctx.meta.gatewayId!)!;
    session = uploadTargets[upload.target](deps, gateway, ctx.user!.username);
    await session.admit(Number(req.headers['content-length'] ?? 0));
  } catch (err) {
    req.resume(); // the refusal is the answer; the body is only drained
    throw err;
  }
  const form = await readMultipart(req, res, {
    field: upload.file,
    maxFileBytes: upload.maxBytes ?? deps.config.maxUploadBytes,
    storage: session.storage,
  });
  const accepted = session.accept(form.file);
  // The form's other fields join the input when given (an empty text input sends "").
  const fields = Object.keys(upload.form.shape)
    .filter((name) => name !== upload.file && form.fields[name])
    .map((name) => [name, form.fields[name]]);
  return {
    input: { ...route.rest.bind, ...Object.fromEntries(fields), ...accepted.input },
    release: accepted.release,
  };
}

/** How a route answers its procedure's result or refusal, in its document's shape. */
export interface Answer {
  ok(data: unknown): JsonReply;
  /** Logs what is internal (a 500), never put in the answer. */
  fail(err: unknown, where: string): JsonReply;
}

export function answerOf(reply: Exclude<RestReply, { kind: 'file' }>): Answer {
  return reply.kind === 'envelope' ? envelopeReply(reply) : plainReply(reply);
}

function envelopeReply(reply: Extract<RestReply, { kind: 'envelope' }>): Answer {
  return {
    ok(data) {
      const message = typeof reply.message === 'function' ? reply.message(data as never) : reply.message;
      return { status: 200, body: { data, success: true, message } };
    },
    fail(err, where) {
      const { status, body, internal } = toErrorResponse(err);
      if (internal) console.error(`[gantry] ${where}:`, err);
      return { status, body };
    },
  };
}

function plainReply(reply: Extract<RestReply, { kind: 'plain' }>): Answer {
  return {
    ok: (data) => ({ status: 200, body: data }),
    fail(err, where) {
      if (reply.notFound !== undefined && findGantryError(err)?.gantryCode === 'NOT_FOUND') {
        return { status: 404, body: reply.notFound };
      }
      const { status, body, internal } = toErrorResponse(err);
      if (internal) console.error(`[gantry] ${where}:`, err);
      const out: PlainErrorBody = { success: false, message: body.message, error: body.error.code };
      return { status, body: out };
    },
  };
}

function fileHandler(
  deps: GantryDeps,
  source: keyof typeof fileSources,
  contentType: string,
  where: string,
): RequestHandler {
  return async (req, res) => {
    try {
      const ctx = createContextInner(deps, restMeta(deps, req, res));
      const download = await fileSources[source](ctx, createCaller(ctx), req);
      await sendFile(res, download, contentType);
    } catch (err) {
      if (res.headersSent) res.destroy();
      else sendError(deps, res, err, where);
    }
  };
}
