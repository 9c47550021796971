import { TRPCError } from '@trpc/server';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { settingsUpdateInputSchema } from '../../api/schemas/settings.js';
import { logsInputSchema } from '../../api/schemas/system.js';
import { ERROR_CODES, GantryError, type ErrorCode } from '../../core/errors.js';
import { toErrorResponse } from '../../rest-compat/errors.js';

function zodErrorOf(schema: z.ZodType, value: unknown): z.ZodError {
  const result = schema.safeParse(value);
  if (result.success) throw new Error('expected the value to be invalid');
  return result.error;
}

/** What tRPC throws when a procedure's input fails validation. */
function trpcInputError(cause: z.ZodError): TRPCError {
  return new TRPCError({ code: 'BAD_REQUEST', cause });
}

describe('toErrorResponse', () => {
  describe('GantryError', () => {
    const documented: Array<[ErrorCode, number]> = [
      ['OTA_INVALID_IMAGE', 422],
      ['OTA_SIGNATURE_FAILED', 422],
      ['OTA_INSUFFICIENT_SPACE', 507],
      ['OTA_UPDATE_BLOCKED', 409],
      ['OTA_DOWNLOAD_FAILED', 502],
      ['OTA_INSTALL_FAILED', 500],
      ['OTA_ROLLBACK_FAILED', 409],
      ['OTA_RECOVERY_FAILED', 409],
      ['OTA_INVALID_PIN', 403],
      ['OTA_OPERATION_IN_PROGRESS', 409],
      ['OTA_PIN_LOCKED', 423],
      ['OTA_FEED_NOT_CONFIGURED', 409],
      ['AUTH_REQUIRED', 401],
      ['AUTH_INVALID_TOKEN', 401],
      ['AUTH_TOKEN_EXPIRED', 401],
      ['AUTH_INVALID_CREDENTIALS', 401],
      ['AUTH_RATE_LIMITED', 429],
      ['FORBIDDEN', 403],
      ['CSRF_REJECTED', 403],
      ['GATEWAY_REQUIRED', 400],
      ['GATEWAY_NOT_FOUND', 404],
      ['GATEWAY_FORBIDDEN', 403],
      ['VALIDATION_ERROR', 400],
      ['NOT_FOUND', 404],
      ['PAYLOAD_TOO_LARGE', 413],
      ['INTERNAL_ERROR', 500],
    ];

    it('should cover every error code in this table', () => {
      expect(documented.map(([code]) => code).sort()).toEqual(Object.keys(ERROR_CODES).sort());
    });

    it.each(documented)('should answer %s with HTTP %i and the code in the envelope', (code, status) => {
      const res = toErrorResponse(new GantryError(code, `message of ${code}`));
      expect(res.status).toBe(status);
      expect(res.internal).toBe(false);
      expect(res.body).toEqual({
        success: false,
        error: { code, message: `message of ${code}` },
        message: `message of ${code}`,
      });
    });

    it('should pass details through', () => {
      const res = toErrorResponse(
        new GantryError('AUTH_RATE_LIMITED', 'Too many failed logins', { retry_after_seconds: 42 }),
      );
      expect(res.body.error.details).toEqual({ retry_after_seconds: 42 });
    });

    it('should find a GantryError wrapped in the cause chain (as tRPC may wrap it)', () => {
      const inner = new GantryError('OTA_UPDATE_BLOCKED', 'Crane is moving');
      const wrapped = new TRPCError({ code: 'INTERNAL_SERVER_ERROR', message: 'wrapped', cause: inner });
      const res = toErrorResponse(new Error('outer', { cause: wrapped }));
      expect(res.status).toBe(409);
      expect(res.body.error.code).toBe('OTA_UPDATE_BLOCKED');
      expect(res.body.message).toBe('Crane is moving');
    });
  });

  describe('validation', () => {
    it('should answer a ZodError with 400 VALIDATION_ERROR naming the field', () => {
      const res = toErrorResponse(zodErrorOf(settingsUpdateInputSchema, { rollback_retries: 'three' }));
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('VALIDATION_ERROR');
      expect(res.body.message).toMatch(/^Invalid request: rollback_retries: /);
      expect(res.body.error.details).toEqual({
        fields: [{ field: 'rollback_retries', message: expect.any(String) }],
      });
    });

    it('should name a nested field by its dotted path', () => {
      const res = toErrorResponse(
        trpcInputError(zodErrorOf(settingsUpdateInputSchema, { maintenance_window: { time: '25:00' } })),
      );
      expect(res.status).toBe(400);
      expect(res.body.message).toContain('maintenance_window.time');
      expect(res.body.message).toContain('HH:MM');
    });

    it('should list every invalid field in details.fields', () => {
      const res = toErrorResponse(
        trpcInputError(zodErrorOf(logsInputSchema, { limit: '0', level: 'verbose' })),
      );
      const fields = (res.body.error.details as { fields: Array<{ field: string }> }).fields;
      expect(fields.map((f) => f.field).sort()).toEqual(['level', 'limit']);
    });

    it('should name an unknown field itself, not its parent object (regression)', () => {
      const res = toErrorResponse(
        trpcInputError(
          zodErrorOf(settingsUpdateInputSchema, { bogus: 1, maintenance_window: { colour: 'red' } }),
        ),
      );
      expect(res.status).toBe(400);
      const fields = (res.body.error.details as { fields: Array<{ field: string; message: string }> }).fields;
      expect(fields).toEqual(
        expect.arrayContaining([
          { field: 'bogus', message: 'unknown field' },
          { field: 'maintenance_window.colour', message: 'unknown field' },
        ]),
      );
      expect(res.body.message).toMatch(/bogus|colour/);
    });

    it('should call a missing body "(body)"', () => {
      const res = toErrorResponse(trpcInputError(zodErrorOf(settingsUpdateInputSchema, undefined)));
      expect(res.status).toBe(400);
      expect(res.body.message).toContain('(body)');
    });

    it('should treat a failed output validation as an internal error, not the client’s fault', () => {
      // tRPC reports an output that does not match its schema as INTERNAL_SERVER_ERROR with the
      // ZodError as cause: that is a server bug and must not be blamed on the request.
      const cause = zodErrorOf(z.object({ secret_path: z.string() }), { secret_path: 42 });
      const res = toErrorResponse(
        new TRPCError({ code: 'INTERNAL_SERVER_ERROR', message: 'Output validation failed', cause }),
      );
      expect(res.status).toBe(500);
      expect(res.internal).toBe(true);
      expect(JSON.stringify(res.body)).not.toContain('secret_path');
    });
  });

  describe('other tRPC errors', () => {
    it('should map a tRPC NOT_FOUND to 404 NOT_FOUND', () => {
      const res = toErrorResponse(new TRPCError({ code: 'NOT_FOUND', message: 'No such procedure' }));
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('NOT_FOUND');
    });

    it('should map a tRPC BAD_REQUEST without a ZodError to 400 VALIDATION_ERROR', () => {
      const res = toErrorResponse(new TRPCError({ code: 'BAD_REQUEST', message: 'bad' }));
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('VALIDATION_ERROR');
    });
  });

  describe('unknown errors', () => {
    it('should answer 500 INTERNAL_ERROR without the internals', () => {
      const err = new Error('SQLITE_CORRUPT: database disk image is malformed at /var/lib/gantry/gantry.db');
      const res = toErrorResponse(err);
      expect(res.status).toBe(500);
      expect(res.internal).toBe(true);
      expect(res.body).toEqual({
        success: false,
        error: { code: 'INTERNAL_ERROR', message: 'Internal server error' },
        message: 'Internal server error',
      });
      expect(JSON.stringify(res.body)).not.toMatch(/SQLITE|gantry\.db|stack/);
    });

    it('should not leak a tRPC INTERNAL_SERVER_ERROR message', () => {
      const res = toErrorResponse(
        new TRPCError({ code: 'INTERNAL_SERVER_ERROR', message: 'ENOENT /data/secrets/jwt-secret' }),
      );
      expect(res.status).toBe(500);
      expect(res.body.message).toBe('Internal server error');
    });

    it.each([['a string'], [null], [undefined], [{ weird: true }]])(
      'should answer a thrown non-Error (%j) with 500',
      (thrown) => {
        const res = toErrorResponse(thrown);
        expect(res.status).toBe(500);
        expect(res.body.error.code).toBe('INTERNAL_ERROR');
      },
    );
  });
});
