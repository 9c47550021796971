import { TRPCError } from '@trpc/server';
import { findGantryError, type GantryError } from '../core/errors.js';

type TrpcCode = TRPCError['code'];

/**
 * tRPC's edge of the one error type: a GantryError leaves a procedure as the TRPCError whose code
 * gives the same HTTP status on /api/trpc, with the GantryError as its cause (the error formatter
 * and REST read `gantryCode` and `details` from there). The code follows from the status in
 * core/errors.ts, so there is no second table to keep in step.
 */
const TRPC_CODE_BY_STATUS: Readonly<Record<number, TrpcCode>> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHORIZED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  409: 'CONFLICT',
  413: 'PAYLOAD_TOO_LARGE',
  422: 'UNPROCESSABLE_CONTENT',
  // tRPC has no 423 Locked: a locked PIN is a refusal like a wrong one.
  423: 'FORBIDDEN',
  429: 'TOO_MANY_REQUESTS',
  502: 'BAD_GATEWAY',
};

export function trpcCodeOf(error: GantryError): TrpcCode {
  return TRPC_CODE_BY_STATUS[error.httpStatus] ?? 'INTERNAL_SERVER_ERROR';
}

/** The TRPCError for whatever a procedure threw, when a GantryError is in it; otherwise undefined. */
export function toTRPCError(thrown: unknown): TRPCError | undefined {
  const gantry = findGantryError(thrown);
  if (!gantry) return undefined;
  return new TRPCError({ code: trpcCodeOf(gantry), message: gantry.message, cause: gantry });
}
