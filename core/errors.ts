/**
 * The one error type of Gantry. Every failure a caller can act on carries one of these codes; the
 * ten `OTA_*` codes are the documented ones, the rest cover auth, validation and lookups.
 *
 * A plain Error with no transport in it: the bundle tool, the feed client and the pure machines
 * throw and read it without loading tRPC. Each edge maps it once: tRPC in api/errors.ts (from the
 * HTTP status below), REST in rest-compat/errors.ts (status and code as they are).
 */
export const ERROR_CODES = {
  OTA_INVALID_IMAGE: { status: 422 },
  OTA_SIGNATURE_FAILED: { status: 422 },
  OTA_INSUFFICIENT_SPACE: { status: 507 },
  OTA_UPDATE_BLOCKED: { status: 409 },
  OTA_DOWNLOAD_FAILED: { status: 502 },
  OTA_INSTALL_FAILED: { status: 500 },
  OTA_ROLLBACK_FAILED: { status: 409 },
  OTA_RECOVERY_FAILED: { status: 409 },
  OTA_INVALID_PIN: { status: 403 },
  OTA_OPERATION_IN_PROGRESS: { status: 409 },
  /** The gateway has no update feed to check: not a fault of the feed, a missing configuration. */
  OTA_FEED_NOT_CONFIGURED: { status: 409 },
  /** Too many wrong PINs: overrides are locked until `details.locked_until`. */
  OTA_PIN_LOCKED: { status: 423 },
  AUTH_REQUIRED: { status: 401 },
  AUTH_INVALID_TOKEN: { status: 401 },
  AUTH_TOKEN_EXPIRED: { status: 401 },
  AUTH_INVALID_CREDENTIALS: { status: 401 },
  AUTH_RATE_LIMITED: { status: 429 },
  FORBIDDEN: { status: 403 },
  CSRF_REJECTED: { status: 403 },
  GATEWAY_REQUIRED: { status: 400 },
  GATEWAY_NOT_FOUND: { status: 404 },
  GATEWAY_FORBIDDEN: { status: 403 },
  VALIDATION_ERROR: { status: 400 },
  NOT_FOUND: { status: 404 },
  PAYLOAD_TOO_LARGE: { status: 413 },
  INTERNAL_ERROR: { status: 500 },
} as const satisfies Record<string, { status: number }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class GantryError extends Error {
  readonly gantryCode: ErrorCode;
  readonly httpStatus: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'GantryError';
    this.gantryCode = code;
    this.httpStatus = ERROR_CODES[code].status;
    this.details = details;
  }
}

export function isGantryError(err: unknown): err is GantryError {
  return err instanceof GantryError;
}

/** Finds the GantryError in an error or its cause chain (the tRPC edge wraps what a procedure threw). */
export function findGantryError(err: unknown): GantryError | undefined {
  let cur: unknown = err;
  for (let depth = 0; depth < 5 && cur; depth++) {
    if (cur instanceof GantryError) return cur;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}
