import { TRPCError } from '@trpc/server';
import { getHTTPStatusCodeFromError } from '@trpc/server/http';
import { ZodError } from 'zod';
import { findGantryError, type ErrorCode } from '../core/errors.js';

/** A refusal in the envelope of gateway-ota-system-api.rst. */
export interface ErrorEnvelope {
  success: false;
  error: { code: ErrorCode; message: string; details?: Record<string, unknown> };
  message: string;
}

/** A refusal of a route answering in its own shape (ota-zip-updates.md): `error` is the code. */
export interface PlainErrorBody {
  success: false;
  message: string;
  error: ErrorCode;
}

function describeZod(err: ZodError): { message: string; details: Record<string, unknown> } {
  // An unknown field is reported on its parent object by zod: name the field itself instead.
  const fields = err.issues.flatMap((i) =>
    i.code === 'unrecognized_keys'
      ? i.keys.map((key) => ({ field: [...i.path, key].join('.'), message: 'unknown field' }))
      : [{ field: i.path.join('.') || '(body)', message: i.message }],
  );
  const first = fields[0];
  return {
    message: first ? `Invalid request: ${first.field}: ${first.message}` : 'Invalid request',
    details: { fields },
  };
}

/**
 * The one mapping from whatever the core threw to an HTTP status and the documented envelope.
 * Unknown errors become a 500 without internals in the message (they are logged by the caller).
 */
export function toErrorResponse(err: unknown): { status: number; body: ErrorEnvelope; internal: boolean } {
  const gantry = findGantryError(err);
  if (gantry) {
    return {
      status: gantry.httpStatus,
      body: {
        success: false,
        error: {
          code: gantry.gantryCode,
          message: gantry.message,
          ...(gantry.details ? { details: gantry.details } : {}),
        },
        message: gantry.message,
      },
      internal: false,
    };
  }
  const zod =
    err instanceof ZodError
      ? err
      : err instanceof TRPCError && err.cause instanceof ZodError
        ? err.cause
        : null;
  if (zod && (!(err instanceof TRPCError) || err.code === 'BAD_REQUEST')) {
    const { message, details } = describeZod(zod);
    return {
      status: 400,
      body: { success: false, error: { code: 'VALIDATION_ERROR', message, details }, message },
      internal: false,
    };
  }
  if (err instanceof TRPCError && err.code !== 'INTERNAL_SERVER_ERROR') {
    const status = getHTTPStatusCodeFromError(err);
    const code: ErrorCode =
      status === 404 ? 'NOT_FOUND' : status === 400 ? 'VALIDATION_ERROR' : 'INTERNAL_ERROR';
    return {
      status,
      body: { success: false, error: { code, message: err.message }, message: err.message },
      internal: false,
    };
  }
  const message = 'Internal server error';
  return {
    status: 500,
    body: { success: false, error: { code: 'INTERNAL_ERROR', message }, message },
    internal: true,
  };
}
