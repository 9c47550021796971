import type { IncomingMessage, ServerResponse } from 'node:http';
import querystring from 'node:querystring';
import { createContextInner, requestMetaFrom } from '../api/context.js';
import { createCaller } from '../api/routers/_app.js';
import { toErrorResponse } from './errors.js';
import { writeJson, type JsonReply } from './json-reply.js';
import { answerOf, procedureAt, type Answer } from './route.js';
import type { RestRoute } from './table.js';
import type { GantryDeps } from '../server/deps.js';

interface LaneRoute {
  route: RestRoute;
  answer: Answer;
  where: string;
  /** What Express's route gives the procedure for a GET without a query string. */
  input: unknown;
  /** Whether the procedure takes an input (then the query string is it). */
  takesQuery: boolean;
}

/**
 * The GET lane: a JSON GET route of the table without path parameters, asked for at its exact
 * path with no body and no conditional headers, is answered straight from the HTTP server instead
 * of through Express. It calls the same procedure through the same tRPC caller as the Express route
 * (rest-compat/route.ts), with the same input: the query string parsed as Express's default
 * ("simple") query parser does, with node:querystring. So every check (token, revocation, gateway,
 * role, input and output schemas) runs as before, and it writes the same answer: status, body,
 * content type, weak ETag and the common headers. What it skips is Express itself: its router walks
 * ~100 layers (pages, assets, the JSON body parser, every REST route before the one asked for) and
 * wraps request and response on every call; under a load of `GET /status` that was ~40% of the CPU
 * (`npm run bench -- foundation`, README "Footprint on the gateway"). The operator's progress poll
 * (`/progress?job_id=…`, every second during an update) is among what it takes.
 *
 * Anything else goes to Express, which answers it as always: other methods and paths, a path
 * Express would also match in another spelling (a trailing slash, other letter case), a conditional
 * request (Express answers 304 when fresh), a request with a body (Express's JSON parser may refuse
 * it). Returns whether it took the request.
 */
export function createGetLane(
  deps: GantryDeps,
  routes: readonly RestRoute[],
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const lane = new Map<string, LaneRoute>();
  for (const route of routes) {
    const { method, path, reply, upload } = route.rest;
    if (method !== 'get' || reply.kind === 'file' || upload || route.pathParams.length > 0) continue;
    lane.set(path, {
      route,
      answer: answerOf(reply),
      where: `GET ${path}`,
      input: route.input ? {} : undefined,
      takesQuery: route.input !== undefined,
    });
  }
  return (req, res) => {
    if (req.method !== 'GET') return false;
    const url = req.url ?? '';
    const queryAt = url.indexOf('?');
    const entry = lane.get(queryAt < 0 ? url : url.slice(0, queryAt));
    if (!entry) return false;
    const h = req.headers;
    if (h['if-none-match'] !== undefined || h['if-modified-since'] !== undefined) return false;
    if (h['transfer-encoding'] !== undefined || (h['content-length'] ?? '0') !== '0') return false;
    // As route.ts's requestInput: `{ ...req.query }`, Express parsing it with querystring.parse.
    const input =
      queryAt < 0 || !entry.takesQuery ? entry.input : { ...querystring.parse(url.slice(queryAt + 1)) };
    void answer(deps, entry, input, req, res);
    return true;
  };
}

async function answer(
  deps: GantryDeps,
  entry: LaneRoute,
  input: unknown,
  req: IncomingMessage,
  res: ServerResponse,
) {
  let reply: JsonReply;
  try {
    // GET procedures are queries: none sets or clears the session cookie, so the meta needs no setters.
    const ctx = createContextInner(deps, requestMetaFrom(req));
    const data = await procedureAt(createCaller(ctx), entry.route.procedure)(input);
    reply = entry.answer.ok(data);
  } catch (err) {
    reply = entry.answer.fail(err, entry.where);
  }
  try {
    writeJson(res, reply);
  } catch (err) {
    // A body JSON cannot write (what Express's error handler would answer with a 500).
    const { status, body } = toErrorResponse(err);
    console.error(`[gantry] ${entry.where}:`, err);
    if (!res.headersSent) writeJson(res, { status, body });
  }
}
