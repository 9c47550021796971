import { TRPCError } from '@trpc/server';

/**
 * The one error type of Gantry. Every failure a caller can act on carries one of these codes; the
 * ten `OTA_*` codes are the documented ones, the rest cover auth, validation and lookups.
 *
 * It extends TRPCError so tRPC passes it through unchanged (status and code intact) and the REST
 * layer can read `gantryCode` off whatever the caller throws, with no second mapping table.
 */
export const ERROR_CODES = {
  OTA_INVALID_IMAGE: { status: 422, trpc: 'UNPROCESSABLE_CONTENT' },
  OTA_SIGNATURE_FAILED: { status: 422, trpc: 'UNPROCESSABLE_CONTENT' },
  OTA_INSUFFICIENT_SPACE: { status: 507, trpc: 'INTERNAL_SERVER_ERROR' },
  OTA_UPDATE_BLOCKED: { status: 409, trpc: 'CONFLICT' },
  OTA_DOWNLOAD_FAILED: { status: 502, trpc: 'BAD_GATEWAY' },
  OTA_INSTALL_FAILED: { status: 500, trpc: 'INTERNAL_SERVER_ERROR' },
  OTA_ROLLBACK_FAILED: { status: 409, trpc: 'CONFLICT' },
  OTA_RECOVERY_FAILED: { status: 409, trpc: 'CONFLICT' },
  OTA_INVALID_PIN: { status: 403, trpc: 'FORBIDDEN' },
  OTA_OPERATION_IN_PROGRESS: { status: 409, trpc: 'CONFLICT' },
  /** The gateway has no update feed to check: not a fault of the feed, a missing configuration. */
  OTA_FEED_NOT_CONFIGURED: { status: 409, trpc: 'CONFLICT' },
  /** Too many wrong PINs: overrides are locked until `details.locked_until`. */
  OTA_PIN_LOCKED: { status: 423, trpc: 'FORBIDDEN' },
  AUTH_REQUIRED: { status: 401, trpc: 'UNAUTHORIZED' },
  AUTH_INVALID_TOKEN: { status: 401, trpc: 'UNAUTHORIZED' },
  AUTH_TOKEN_EXPIRED: { status: 401, trpc: 'UNAUTHORIZED' },
  AUTH_INVALID_CREDENTIALS: { status: 401, trpc: 'UNAUTHORIZED' },
  AUTH_RATE_LIMITED: { status: 429, trpc: 'TOO_MANY_REQUESTS' },
  FORBIDDEN: { status: 403, trpc: 'FORBIDDEN' },
  CSRF_REJECTED: { status: 403, trpc: 'FORBIDDEN' },
  GATEWAY_REQUIRED: { status: 400, trpc: 'BAD_REQUEST' },
  GATEWAY_NOT_FOUND: { status: 404, trpc: 'NOT_FOUND' },
  GATEWAY_FORBIDDEN: { status: 403, trpc: 'FORBIDDEN' },
  VALIDATION_ERROR: { status: 400, trpc: 'BAD_REQUEST' },
  NOT_FOUND: { status: 404, trpc: 'NOT_FOUND' },
  PAYLOAD_TOO_LARGE: { status: 413, trpc: 'PAYLOAD_TOO_LARGE' },
  INTERNAL_ERROR: { status: 500, trpc: 'INTERNAL_SERVER_ERROR' },
} as const satisfies Record<string, { status: number; trpc: TRPCError['code'] }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class GantryError extends TRPCError {
  readonly gantryCode: ErrorCode;
  readonly httpStatus: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, cause?: unknown) {
    super({ code: ERROR_CODES[code].trpc, message, cause });
    this.name = 'GantryError';
    this.gantryCode = code;
    this.httpStatus = ERROR_CODES[code].status;
    this.details = details;
  }
}

export function isGantryError(err: unknown): err is GantryError {
  return err instanceof GantryError;
}

/** Finds the GantryError in an error or its cause chain (tRPC may wrap what a procedure threw). */
export function findGantryError(err: unknown): GantryError | undefined {
  let cur: unknown = err;
  for (let depth = 0; depth < 5 && cur; depth++) {
    if (cur instanceof GantryError) return cur;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}
