import {
  createSecretKey,
  randomBytes,
  scrypt,
  timingSafeEqual,
  type KeyObject,
  type ScryptOptions,
} from 'node:crypto';
import jwt from 'jsonwebtoken';
import { z } from 'zod';
import { ROLES, type Role } from './vocabulary.js';
import { GantryError } from './errors.js';

/** Password and PIN hashing (scrypt, node:crypto) and session tokens (JWT, HS256). */

/**
 * N=2^13, r=8, p=10: the 8 MiB row of OWASP's Password Storage Cheat Sheet, which rates its rows
 * (128 MiB at p=1 down to 8 MiB at p=10) as equal defences. It replaced N=2^14, r=8, p=1, which took
 * 16 MiB (128·N·r bytes, the largest single allocation Gantry makes: it set the process's peak RSS
 * at every login) and is below that table's 16 MiB row (p=5). OpenSSL runs the p lanes one after
 * the other, so memory stays 8 MiB; the time is 5× the old one's (measured: 38 → 155 ms per hash
 * on the bench machine), spent only at a login or a PIN check.
 */
const SCRYPT = { N: 8192, r: 8, p: 10, keylen: 32 } as const;

function scryptAsync(secret: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(secret, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

/** "scrypt$N$r$p$salt$hash", parameters stored so they can be raised without breaking old hashes. */
export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(secret, salt, SCRYPT.keylen, { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p });
  return ['scrypt', SCRYPT.N, SCRYPT.r, SCRYPT.p, salt.toString('base64'), key.toString('base64')].join('$');
}

export async function verifySecret(secret: string, stored: string): Promise<boolean> {
  const [alg, n, r, p, salt, hash] = stored.split('$');
  if (alg !== 'scrypt' || !n || !r || !p || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64');
  const key = await scryptAsync(secret, Buffer.from(salt, 'base64'), expected.length, {
    N: Number(n),
    r: Number(r),
    p: Number(p),
  });
  return key.length === expected.length && timingSafeEqual(key, expected);
}

/**
 * Whether a stored hash was made with other parameters than hashSecret's: the caller replaces it
 * after a successful check (the secret is at hand only then), so a hash made before the parameters
 * changed costs the old memory once more, not at every check.
 */
export function needsRehash(stored: string): boolean {
  const [alg, n, r, p] = stored.split('$');
  return alg !== 'scrypt' || Number(n) !== SCRYPT.N || Number(r) !== SCRYPT.r || Number(p) !== SCRYPT.p;
}

/** A hash of a random password, so an unknown user costs as much as a wrong password (no timing oracle). */
export const dummyHash: () => Promise<string> = (() => {
  let hash: Promise<string> | undefined;
  return () => (hash ??= hashSecret(randomBytes(16).toString('hex')));
})();

export const tokenClaimsSchema = z.object({
  sub: z.string(),
  role: z.enum(ROLES),
  gateways: z.array(z.string()),
  ver: z.int(),
});
export type TokenClaims = z.infer<typeof tokenClaimsSchema>;

const ISSUER = 'gantry';
/** Sessions whose verification is remembered (a few per operator; ~0.5 KB each). */
const VERIFIED_TOKENS = 1024;
const AUDIENCE = 'gantry-api';

export class TokenService {
  /**
   * The secret as a KeyObject, made once: given a string, jsonwebtoken first tries (and fails) to
   * parse it as a PEM public key on every verify, which cost a fifth of the CPU of a /status call.
   */
  private readonly key: KeyObject;

  constructor(
    secret: string,
    readonly ttlSeconds: number,
  ) {
    this.key = createSecretKey(Buffer.from(secret, 'utf8'));
  }

  sign(claims: TokenClaims): { token: string; expiresAt: number } {
    const token = jwt.sign(claims, this.key, {
      algorithm: 'HS256',
      expiresIn: this.ttlSeconds,
      issuer: ISSUER,
      audience: AUDIENCE,
    });
    return { token, expiresAt: Date.now() + this.ttlSeconds * 1000 };
  }

  /**
   * Tokens this service verified, with their expiry (epoch s): the same string under the same key
   * verifies the same until `exp`, so a session polling /status is HMAC-checked and parsed once,
   * not on every request (~8% of the route's CPU in a profile under load). Expiry is still
   * checked on each use, as jsonwebtoken does (expired once now >= exp); revocation is the
   * caller's check (token version). Oldest first out past VERIFIED_TOKENS, so a stream of
   * distinct tokens cannot grow it.
   */
  private readonly verified = new Map<string, { claims: TokenClaims; exp: number }>();

  /** Verifies signature, algorithm, issuer, audience and expiry; throws the matching auth error. */
  verify(token: string): TokenClaims {
    const known = this.verified.get(token);
    if (known) {
      if (Math.floor(Date.now() / 1000) < known.exp) return known.claims;
      this.verified.delete(token);
    }
    const { claims, exp } = this.verifyAfresh(token);
    // sign() always sets exp; a token without one is verified every time, never remembered.
    if (exp !== null) {
      if (this.verified.size >= VERIFIED_TOKENS) this.verified.delete(this.verified.keys().next().value!);
      this.verified.set(token, { claims, exp });
    }
    return claims;
  }

  private verifyAfresh(token: string): { claims: TokenClaims; exp: number | null } {
    let payload: unknown;
    try {
      payload = jwt.verify(token, this.key, { algorithms: ['HS256'], issuer: ISSUER, audience: AUDIENCE });
    } catch (err) {
      if (err instanceof jwt.TokenExpiredError)
        throw new GantryError('AUTH_TOKEN_EXPIRED', 'Session token expired');
      throw new GantryError('AUTH_INVALID_TOKEN', 'Invalid session token');
    }
    const claims = tokenClaimsSchema.safeParse(payload);
    if (!claims.success) throw new GantryError('AUTH_INVALID_TOKEN', 'Invalid session token');
    // jwt.verify checked that exp, when present, is a number in the future.
    const exp = (payload as { exp?: number }).exp ?? null;
    // Shared between the requests of one session: nobody may change it.
    Object.freeze(claims.data.gateways);
    return { claims: Object.freeze(claims.data), exp };
  }
}

const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

export function roleAtLeast(role: Role, needed: Role): boolean {
  return RANK[role] >= RANK[needed];
}

export function mayAccessGateway(gateways: readonly string[], gatewayId: string): boolean {
  return gateways.includes('*') || gateways.includes(gatewayId);
}
