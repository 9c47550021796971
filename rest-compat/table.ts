import type { AnyRouter } from '@trpc/server';
import { z } from 'zod';
import type { Access, ProcedureMeta, RestMeta } from '../api/meta.js';
import { appRouter } from '../api/routers/_app.js';

/** One REST route, read from the metadata of the procedure it calls. */
export interface RestRoute {
  /** The procedure's dotted path, e.g. `settings.get`. */
  procedure: string;
  access: Access;
  rest: RestMeta;
  /** What the procedure validates (absent: it takes no input). */
  input: z.ZodType | undefined;
  output: z.ZodType | undefined;
  /** The names of the path's `:params`, which are then the whole input. */
  pathParams: string[];
  /** The path in OpenAPI's syntax (`{name}`). */
  openApiPath: string;
}

/** The part of a built procedure's definition the table reads (tRPC keeps these at runtime). */
interface ProcedureDef {
  type: 'query' | 'mutation' | 'subscription';
  meta?: ProcedureMeta;
  inputs: unknown[];
  output?: unknown;
}

function zodOrUndefined(value: unknown, what: string): z.ZodType | undefined {
  if (value === undefined) return undefined;
  if (value instanceof z.ZodType) return value;
  throw new Error(`${what} is not a zod schema: the REST reference needs one`);
}

/**
 * The field names of an object schema, through `z.lazy` (api/schemas/ builds its payloads on first
 * use): built here only for the routes whose path or upload fills input fields.
 */
function objectFields(schema: z.ZodType | undefined): string[] {
  const built = schema instanceof z.ZodLazy ? (schema.unwrap() as z.ZodType) : schema;
  return built instanceof z.ZodObject ? Object.keys(built.shape) : [];
}

function procedureDefs(router: AnyRouter): Map<string, ProcedureDef> {
  // tRPC types `procedures` as the nested record but keeps it flat, keyed by dotted path.
  const flat = router._def.procedures as unknown as Record<string, { _def: ProcedureDef }>;
  return new Map(Object.entries(flat).map(([path, procedure]) => [path, procedure._def]));
}

/**
 * Every REST route of the router, in router order, checked for what would otherwise only fail on a
 * request: duplicate routes, a GET that writes, a path parameter the input does not take, an upload
 * authorized by a procedure with other access rules. The server refuses to start on any of them.
 */
export function restRouteTable(router: AnyRouter = appRouter): RestRoute[] {
  const defs = procedureDefs(router);
  const routes: RestRoute[] = [];
  const seen = new Set<string>();
  for (const [procedure, def] of defs) {
    const metas = def.meta?.rest;
    if (!metas) continue;
    const where = `procedure ${procedure}`;
    const access = def.meta?.access;
    if (!access) throw new Error(`${where}: no access metadata (build it from a procedure in api/trpc.ts)`);
    if (def.inputs.length > 1) throw new Error(`${where}: a REST route needs one input schema`);
    const input = zodOrUndefined(def.inputs[0], `${where} input`);
    const output = zodOrUndefined(def.output, `${where} output`);
    for (const rest of Array.isArray(metas) ? (metas as readonly RestMeta[]) : [metas as RestMeta]) {
      const key = `${rest.method.toUpperCase()} ${rest.path}`;
      if (seen.has(key)) throw new Error(`${where}: ${key} is declared twice`);
      seen.add(key);
      if (def.type !== (rest.method === 'get' ? 'query' : 'mutation')) {
        throw new Error(`${where}: ${key} needs a ${rest.method === 'get' ? 'query' : 'mutation'}`);
      }
      const pathParams = [...rest.path.matchAll(/:(\w+)/g)].map((m) => m[1]!);
      if (rest.bind && !rest.upload && pathParams.length === 0) {
        throw new Error(
          `${where}: ${key} binds input fields, which only an upload or a path with parameters can join`,
        );
      }
      const filled = [...pathParams, ...Object.keys(rest.bind ?? {})];
      if (rest.reply.kind !== 'file' && filled.length > 0) {
        const fields = objectFields(input);
        for (const name of filled) {
          if (!fields.includes(name)) throw new Error(`${where}: ${key} fills ${name}, not an input field`);
        }
      }
      if (rest.upload) {
        const authorize = defs.get(rest.upload.authorize);
        const same = authorize?.meta?.access;
        if (authorize?.type !== 'query' || same?.role !== access.role || same.gateway !== access.gateway) {
          throw new Error(`${where}: ${key} must be authorized by a query with the same access`);
        }
        if (!(rest.upload.file in rest.upload.form.shape)) {
          throw new Error(`${where}: ${key}'s form has no field ${rest.upload.file}`);
        }
      }
      routes.push({
        procedure,
        access,
        rest,
        input,
        output,
        pathParams,
        openApiPath: rest.path.replace(/:(\w+)/g, '{$1}'),
      });
    }
  }
  return routes;
}
