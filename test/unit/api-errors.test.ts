import { getHTTPStatusCodeFromError } from '@trpc/server/http';
import { describe, expect, it } from 'vitest';
import { toTRPCError, trpcCodeOf } from '../../api/errors.js';
import { ERROR_CODES, findGantryError, GantryError, type ErrorCode } from '../../core/errors.js';

describe('the tRPC edge of GantryError', () => {
  // tRPC has no 423 or 507: those leave /api/trpc as 403 and 500, the REST envelope keeps them.
  const statusOnTrpc = (status: number) => (status === 423 ? 403 : status === 507 ? 500 : status);

  it.each(Object.keys(ERROR_CODES) as ErrorCode[])(
    'should give %s the HTTP status of its table row',
    (code) => {
      const mapped = toTRPCError(new GantryError(code, 'x'));
      expect(mapped).toBeDefined();
      expect(getHTTPStatusCodeFromError(mapped!)).toBe(statusOnTrpc(ERROR_CODES[code].status));
    },
  );

  it('should keep the GantryError as the cause, with its code and details', () => {
    const original = new GantryError('OTA_PIN_LOCKED', 'locked', { locked_until: 'later' });
    const mapped = toTRPCError(new Error('wrapped', { cause: original }));
    expect(mapped?.code).toBe(trpcCodeOf(original));
    expect(mapped?.message).toBe('locked');
    expect(findGantryError(mapped)).toBe(original);
  });

  it('should leave other errors alone', () => {
    expect(toTRPCError(new Error('boom'))).toBeUndefined();
  });

  it('should be a plain Error, not a transport type', () => {
    const err = new GantryError('NOT_FOUND', 'gone');
    expect(Object.getPrototypeOf(GantryError.prototype)).toBe(Error.prototype);
    expect(err).toBeInstanceOf(Error);
    expect(err.httpStatus).toBe(404);
  });
});
