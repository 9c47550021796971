import { randomBytes } from 'node:crypto';
import { eq, sql } from 'drizzle-orm';
import RateLimiterMemory from 'rate-limiter-flexible/lib/RateLimiterMemory.js';
import RateLimiterRes from 'rate-limiter-flexible/lib/RateLimiterRes.js';
import { dummyHash, hashSecret, needsRehash, verifySecret, type TokenService } from '../core/auth.js';
import { GantryError } from '../core/errors.js';
import type { GantryDb } from '../drizzle/db.js';
import { users, type UserRow } from '../drizzle/schema.js';
import type { Role } from '../core/vocabulary.js';

export interface PublicUser {
  username: string;
  role: Role;
  gateways: string[];
}

function publicUser(row: UserRow): PublicUser {
  return { username: row.username, role: row.role, gateways: row.gateways };
}

/**
 * Accounts and login. Failed logins are limited per (address, username) so a guesser is slowed
 * without letting anyone lock a real operator out from elsewhere.
 */
export class UserService {
  private readonly failedLogins: RateLimiterMemory;

  constructor(
    private readonly db: GantryDb,
    private readonly tokens: TokenService,
    private readonly clock: () => number,
    attemptsPerMinute: number,
  ) {
    this.byUsername = this.prepareByUsername();
    this.failedLogins = new RateLimiterMemory({ points: attemptsPerMinute, duration: 60 });
  }

  /** Prepared once: every authenticated request looks its user up (token revocation check). */
  private readonly byUsername: ReturnType<UserService['prepareByUsername']>;

  private prepareByUsername() {
    return this.db
      .select()
      .from(users)
      .where(eq(users.username, sql.placeholder('username')))
      .prepare();
  }

  /**
   * Rows as last read, frozen (gateways too). Every authenticated request looks its user up to
   * check the token version; this service is the only writer of the users table, and each of its
   * writes forgets the row it changes before writing, so a revoked session is refused from the
   * very next request. Unknown names are not remembered (a stream of them cannot grow this).
   */
  private readonly rows = new Map<string, UserRow>();

  find(username: string): UserRow | undefined {
    const known = this.rows.get(username);
    if (known) return known;
    const row = this.byUsername.get({ username });
    if (!row) return undefined;
    Object.freeze(row.gateways);
    this.rows.set(username, Object.freeze(row));
    return row;
  }

  async create(input: {
    username: string;
    password: string;
    role: Role;
    gateways: string[];
  }): Promise<PublicUser> {
    if (this.find(input.username))
      throw new GantryError('VALIDATION_ERROR', `User ${input.username} already exists`);
    this.rows.delete(input.username);
    const row = this.db
      .insert(users)
      .values({
        username: input.username,
        passwordHash: await hashSecret(input.password),
        role: input.role,
        gateways: input.gateways,
        createdAt: this.clock(),
      })
      .returning()
      .get();
    return publicUser(row);
  }

  /**
   * First start: creates `admin` with the given password, or a generated one that is returned so
   * the caller can print it once. Later starts leave the existing admin alone.
   */
  async ensureAdmin(password: string | undefined): Promise<{ created: boolean; generatedPassword?: string }> {
    if (this.find('admin')) return { created: false };
    const generated = password ? undefined : randomBytes(12).toString('base64url');
    await this.create({
      username: 'admin',
      password: password ?? generated!,
      role: 'admin',
      gateways: ['*'],
    });
    return { created: true, generatedPassword: generated };
  }

  async login(username: string, password: string, remoteAddress: string) {
    const key = `${remoteAddress}|${username}`;
    // Take the attempt's point before the (slow) password check: checking the count first and
    // consuming after a failure let any number of parallel guesses through while the first hashed.
    try {
      await this.failedLogins.consume(key);
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) throw err;
      throw new GantryError('AUTH_RATE_LIMITED', 'Too many failed logins; try again later', {
        retry_after_seconds: Math.ceil(err.msBeforeNext / 1000),
      });
    }
    const row = this.find(username);
    // Verify against a dummy hash for unknown users: same cost, no user-enumeration by timing.
    const ok = await verifySecret(password, row?.passwordHash ?? (await dummyHash()));
    if (!row || !ok) throw new GantryError('AUTH_INVALID_CREDENTIALS', 'Invalid username or password');
    await this.failedLogins.delete(key);
    if (needsRehash(row.passwordHash)) await this.rehash(row, password);
    const { token, expiresAt } = this.tokens.sign({
      sub: row.username,
      role: row.role,
      gateways: row.gateways,
      ver: row.tokenVersion,
    });
    return { token, expiresAt, user: publicUser(row) };
  }

  /** Stores the password's hash with the current parameters (core/auth.ts needsRehash). */
  private async rehash(row: UserRow, password: string): Promise<void> {
    const passwordHash = await hashSecret(password);
    this.rows.delete(row.username);
    this.db.update(users).set({ passwordHash }).where(eq(users.id, row.id)).run();
  }

  /** Ends every session of the user (their tokens carry the old version). */
  revokeSessions(username: string): void {
    const row = this.find(username);
    this.rows.delete(username);
    if (row)
      this.db
        .update(users)
        .set({ tokenVersion: row.tokenVersion + 1 })
        .where(eq(users.id, row.id))
        .run();
  }
}
