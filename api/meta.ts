import type { z } from 'zod';
import type { Role } from '../core/vocabulary.js';

/**
 * What every procedure carries in its tRPC metadata (`.meta()`): who may call it, set by the
 * procedure builder that enforces it (api/trpc.ts), and, for the routes of the documented REST API,
 * where the route lives. rest-compat/ builds the Express routes and the OpenAPI document from this,
 * so the documentation cannot disagree with the router.
 */
export interface ProcedureMeta {
  /** Set only by the builders in api/trpc.ts, next to the middlewares that enforce it. */
  access?: Access;
  /** One REST route, or several when paths differ only by a fixed input (the two ZIP uploads). */
  rest?: RestMeta | readonly RestMeta[];
}

export interface Access {
  /** Least role allowed; null: no token needed. */
  role: Role | null;
  /** X-Gateway-ID must name a gateway this server hosts and the token may act on. */
  gateway: boolean;
}

/** The document a path comes from (test/unit/rest-table.test.ts holds the table to both). */
export type RestSpec = 'gateway-ota-system-api' | 'ota-zip-updates';

export interface RestMeta {
  method: 'get' | 'post';
  /**
   * Express syntax. The procedure's input comes from the path's `:params` if it has any, else the
   * query string (GET) or the JSON body (POST), else the multipart form (`upload`).
   */
  path: string;
  /** Absent for Gantry's own additions (README, "Decisions where the spec is silent"). */
  spec?: RestSpec;
  tag: string;
  summary: string;
  /** More for the reference, after the role. */
  description?: string;
  /** Input fields fixed by the path. */
  bind?: Readonly<Record<string, string>>;
  reply: RestReply;
  /** A multipart/form-data upload instead of a JSON body. */
  upload?: UploadMeta;
  /** Refusals worth documenting beyond the common ones (bad input, auth, unknown gateway). */
  refusals?: Readonly<Record<number, string>>;
}

export type RestReply =
  /** gateway-ota-system-api.rst: `{data, success: true, message}`; refusals `{success: false, error: {code, message}, message}`. */
  | { kind: 'envelope'; message: string | ((data: never) => string) }
  /**
   * ota-zip-updates.md: the output is the whole body; refusals `{success: false, message, error}`,
   * `error` the code. `notFound`, if given, is the body of a NOT_FOUND refusal (still a 404).
   */
  | { kind: 'plain'; notFound?: unknown }
  /** A file streamed by a named source in rest-compat/ once the procedure authorized it. */
  | { kind: 'file'; source: FileSource; contentType: string };

export type FileSource = 'debug-bundle';

export interface UploadMeta {
  /** The form as documented; its text fields join the procedure's input when sent non-empty. */
  form: z.ZodObject;
  /** The form field carrying the file (the one file part accepted). */
  file: string;
  /**
   * A query with the route's access, run (with `bind` as input) before a byte of the body is read:
   * nobody streams a gigabyte to learn they are not an operator. Its dotted path, e.g.
   * `updates.authorizeUpload`; the table checks it exists with the same access.
   */
  authorize: string;
  /** Where the file goes (rest-compat/uploads.ts), which also makes it the procedure's input. */
  target: UploadTarget;
  /** Largest file accepted; the server's GANTRY_MAX_UPLOAD_BYTES when absent. */
  maxBytes?: number;
}

export type UploadTarget = 'bundle' | 'recovery-image' | 'zip-archive';

/** An envelope reply; the message may depend on the data (annotate its type in place). */
export function envelope<T>(message: string | ((data: T) => string)): RestReply {
  return { kind: 'envelope', message };
}
