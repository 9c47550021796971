import { randomBytes, scryptSync } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  hashSecret,
  mayAccessGateway,
  needsRehash,
  roleAtLeast,
  TokenService,
  verifySecret,
  type TokenClaims,
} from '../../core/auth.js';
import { GantryError } from '../../core/errors.js';

const SECRET = 'unit-test-secret-that-is-long-enough-0123456789';
const CLAIMS: TokenClaims = { sub: 'alice', role: 'operator', gateways: ['GW-1'], ver: 0 };

/** The GantryError code `fn` throws. */
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(GantryError);
    return (err as GantryError).gantryCode;
  }
  throw new Error('expected a GantryError');
}

function signRaw(payload: object, secret = SECRET, opts: jwt.SignOptions = {}): string {
  return jwt.sign(payload, secret, {
    algorithm: 'HS256',
    issuer: 'gantry',
    audience: 'gantry-api',
    ...opts,
  });
}

describe('hashSecret / verifySecret', () => {
  it('should verify the right secret and refuse a wrong one', async () => {
    const stored = await hashSecret('correct horse battery staple');
    expect(await verifySecret('correct horse battery staple', stored)).toBe(true);
    expect(await verifySecret('correct horse battery stapler', stored)).toBe(false);
    expect(await verifySecret('', stored)).toBe(false);
  });

  it('should store the parameters and a random salt, never the secret', async () => {
    const a = await hashSecret('7392');
    const b = await hashSecret('7392');
    expect(a).toMatch(/^scrypt\$8192\$8\$10\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    expect(a).not.toBe(b);
    expect(a).not.toContain('7392');
  });

  it('should verify a hash made with other parameters, and say it needs hashing anew', async () => {
    const salt = randomBytes(16);
    const key = scryptSync('7392', salt, 32, { N: 16384, r: 8, p: 1 });
    const legacy = ['scrypt', 16384, 8, 1, salt.toString('base64'), key.toString('base64')].join('$');
    expect(await verifySecret('7392', legacy)).toBe(true);
    expect(await verifySecret('7393', legacy)).toBe(false);
    expect(needsRehash(legacy)).toBe(true);
    expect(needsRehash(await hashSecret('7392'))).toBe(false);
  });

  it('should refuse malformed stored hashes instead of throwing', async () => {
    expect(await verifySecret('x', '')).toBe(false);
    expect(await verifySecret('x', 'bcrypt$10$abc')).toBe(false);
    expect(await verifySecret('x', 'scrypt$16384$8$1$c2FsdA==')).toBe(false);
  });

  it('should refuse a hash whose key was tampered with', async () => {
    const stored = await hashSecret('secret-1');
    const parts = stored.split('$');
    parts[5] = Buffer.alloc(32, 1).toString('base64');
    expect(await verifySecret('secret-1', parts.join('$'))).toBe(false);
  });
});

describe('TokenService', () => {
  const tokens = new TokenService(SECRET, 600);

  it('should round-trip the claims of a token it signed', () => {
    const { token, expiresAt } = tokens.sign(CLAIMS);
    expect(tokens.verify(token)).toEqual(CLAIMS);
    expect(expiresAt).toBeGreaterThan(Date.now() + 590_000);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 600_000);
  });

  it('should answer an expired token with AUTH_TOKEN_EXPIRED', () => {
    const past = Math.floor(Date.now() / 1000) - 3600;
    const token = signRaw({ ...CLAIMS, iat: past, exp: past + 60 });
    expect(codeOf(() => tokens.verify(token))).toBe('AUTH_TOKEN_EXPIRED');
  });

  it('should answer a token signed with another secret with AUTH_INVALID_TOKEN', () => {
    const forged = new TokenService('another-secret-that-is-also-long-enough-xx', 600).sign(CLAIMS).token;
    expect(codeOf(() => tokens.verify(forged))).toBe('AUTH_INVALID_TOKEN');
  });

  it('should answer a token whose payload was altered with AUTH_INVALID_TOKEN', () => {
    const [header, , signature] = tokens.sign(CLAIMS).token.split('.');
    const payload = Buffer.from(
      JSON.stringify({ ...CLAIMS, role: 'admin', gateways: ['*'], iss: 'gantry', aud: 'gantry-api' }),
    ).toString('base64url');
    expect(codeOf(() => tokens.verify(`${header}.${payload}.${signature}`))).toBe('AUTH_INVALID_TOKEN');
  });

  it('should answer a token for another audience or issuer with AUTH_INVALID_TOKEN', () => {
    expect(codeOf(() => tokens.verify(signRaw(CLAIMS, SECRET, { audience: 'other-api' })))).toBe(
      'AUTH_INVALID_TOKEN',
    );
    expect(codeOf(() => tokens.verify(signRaw(CLAIMS, SECRET, { issuer: 'someone-else' })))).toBe(
      'AUTH_INVALID_TOKEN',
    );
  });

  it('should refuse an unsigned ("alg": "none") token', () => {
    const token = jwt.sign({ ...CLAIMS, iss: 'gantry', aud: 'gantry-api' }, null, { algorithm: 'none' });
    expect(codeOf(() => tokens.verify(token))).toBe('AUTH_INVALID_TOKEN');
  });

  it('should refuse a validly signed token whose claims do not match the schema', () => {
    expect(
      codeOf(() => tokens.verify(signRaw({ sub: 'alice', role: 'root', gateways: ['*'], ver: 0 }))),
    ).toBe('AUTH_INVALID_TOKEN');
    expect(codeOf(() => tokens.verify(signRaw({ sub: 'alice', role: 'admin' })))).toBe('AUTH_INVALID_TOKEN');
  });

  it('should refuse garbage', () => {
    expect(codeOf(() => tokens.verify('not.a.jwt'))).toBe('AUTH_INVALID_TOKEN');
    expect(codeOf(() => tokens.verify(''))).toBe('AUTH_INVALID_TOKEN');
  });

  describe('remembering verified tokens', () => {
    afterEach(() => vi.useRealTimers());

    it('should still answer AUTH_TOKEN_EXPIRED for a token verified while it was valid', () => {
      vi.useFakeTimers({ now: new Date('2026-12-05T00:00:00Z'), toFake: ['Date'] });
      const short = new TokenService(SECRET, 60);
      const { token } = short.sign(CLAIMS);
      expect(short.verify(token)).toEqual(CLAIMS);
      vi.setSystemTime(new Date('2026-12-05T00:00:59Z'));
      expect(short.verify(token)).toEqual(CLAIMS);
      // jsonwebtoken's rule: expired from the second `exp` on.
      vi.setSystemTime(new Date('2026-12-05T00:01:00Z'));
      expect(codeOf(() => short.verify(token))).toBe('AUTH_TOKEN_EXPIRED');
      expect(codeOf(() => short.verify(token))).toBe('AUTH_TOKEN_EXPIRED');
    });

    it('should not let a verified token vouch for an altered copy of it', () => {
      const { token } = tokens.sign(CLAIMS);
      expect(tokens.verify(token)).toEqual(CLAIMS);
      const [header, , signature] = token.split('.');
      const payload = Buffer.from(JSON.stringify({ ...CLAIMS, role: 'admin' })).toString('base64url');
      expect(codeOf(() => tokens.verify(`${header}.${payload}.${signature}`))).toBe('AUTH_INVALID_TOKEN');
      expect(codeOf(() => tokens.verify(`${token}x`))).toBe('AUTH_INVALID_TOKEN');
    });

    it('should hand out claims nobody can change for the next request', () => {
      const { token } = tokens.sign(CLAIMS);
      const first = tokens.verify(token);
      expect(() => first.gateways.push('*')).toThrow(TypeError);
      expect(() => Object.assign(first, { role: 'admin' })).toThrow(TypeError);
      expect(tokens.verify(token)).toEqual(CLAIMS);
    });

    it('should keep verifying correctly after more sessions than it remembers', () => {
      const many = Array.from({ length: 1100 }, (_, i) => tokens.sign({ ...CLAIMS, sub: `user-${i}` }).token);
      for (const [i, token] of many.entries()) expect(tokens.verify(token).sub).toBe(`user-${i}`);
      // The first ones were dropped and are verified afresh.
      expect(tokens.verify(many[0]!).sub).toBe('user-0');
    });
  });
});

describe('roleAtLeast', () => {
  it('should order viewer < operator < admin', () => {
    expect(roleAtLeast('admin', 'operator')).toBe(true);
    expect(roleAtLeast('operator', 'operator')).toBe(true);
    expect(roleAtLeast('operator', 'admin')).toBe(false);
    expect(roleAtLeast('viewer', 'operator')).toBe(false);
    expect(roleAtLeast('viewer', 'viewer')).toBe(true);
  });
});

describe('mayAccessGateway', () => {
  it('should allow listed gateways and everything with "*"', () => {
    expect(mayAccessGateway(['*'], 'GW-1')).toBe(true);
    expect(mayAccessGateway(['GW-1', 'GW-2'], 'GW-2')).toBe(true);
    expect(mayAccessGateway(['GW-1'], 'GW-2')).toBe(false);
    expect(mayAccessGateway([], 'GW-1')).toBe(false);
  });
});
