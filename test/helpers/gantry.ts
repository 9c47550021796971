import fs from 'node:fs';
import path from 'node:path';
import jwt from 'jsonwebtoken';
import type { TokenClaims } from '../../core/auth.js';
import { loadConfig, type GantryConfig } from '../../core/config.js';
import { startGantry, type RunningGantry } from '../../server/gantry.js';
import type { OtaWsOptions } from '../../server/ota-ws.js';
import type { TransferPolicy } from '../../services/updates/transfer.js';
import { makeTempDir } from './temp.js';

export const ADMIN_PASSWORD = 'admin-test-password';
export const GATEWAY = 'GW-3920A9';

/** A data dir for a test's Gantry, removed when the test (or, made outside one, its file) ends. */
export function tempDataDir(prefix = 'gantry-test-'): string {
  return makeTempDir(prefix);
}

export interface TestGantry extends RunningGantry {
  dataDir: string;
  config: GantryConfig;
  /** Logs in over real HTTP and returns the bearer token. */
  login(username?: string, password?: string): Promise<string>;
  /** A user of the given role, created through the store, and a token for it. */
  tokenFor(role: 'viewer' | 'operator' | 'admin', gateways?: string[]): Promise<string>;
  request(
    method: string,
    urlPath: string,
    opts?: {
      token?: string;
      gateway?: string | null;
      body?: unknown;
      rawBody?: string;
      headers?: Record<string, string>;
    },
  ): Promise<{ status: number; body: any; headers: Headers }>; // eslint-disable-line @typescript-eslint/no-explicit-any
  /** The HS256 secret this server signs with (GANTRY_JWT_SECRET or the one kept in the data dir). */
  jwtSecret(): string;
  /**
   * A token signed like the server's own, with overrides: `expiresInSeconds` < 0 gives an expired
   * token, `secret` another key (a forgery), `audience`/`issuer` a token meant for something else.
   */
  signToken(
    claims?: Partial<TokenClaims>,
    opts?: { expiresInSeconds?: number; secret?: string; audience?: string; issuer?: string },
  ): string;
}

/**
 * A real Gantry on a random loopback port with its own data dir (reused when `dataDir` is given,
 * for restart tests). Extra environment overrides config the same way `npm start` reads it. A data
 * dir made here is removed when the test ends (tempDataDir), not by `stop()`: restart tests start
 * the next server on `g.dataDir` after stopping the first.
 */
export async function startTestGantry(
  opts: {
    dataDir?: string;
    env?: Record<string, string>;
    ws?: OtaWsOptions;
    clock?: () => number;
    transferPolicy?: Partial<TransferPolicy>;
  } = {},
): Promise<TestGantry> {
  const dataDir = opts.dataDir ?? tempDataDir();
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    GANTRY_DATA_DIR: dataDir,
    GANTRY_ADMIN_PASSWORD: ADMIN_PASSWORD,
    GANTRY_LOGIN_ATTEMPTS_PER_MINUTE: '1000',
    // Tests bring their own feed (test/helpers/feed.ts); test/integration/demo-feed.test.ts turns it on.
    GANTRY_DEMO_FEED: 'off',
    ...opts.env,
  });
  const gantry = await startGantry(config, {
    ws: opts.ws,
    clock: opts.clock,
    transferPolicy: opts.transferPolicy,
  });
  let userSeq = 0;

  const request: TestGantry['request'] = async (method, urlPath, o = {}) => {
    const headers: Record<string, string> = { ...o.headers };
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    if (o.gateway !== null) headers['x-gateway-id'] = o.gateway ?? GATEWAY;
    let body: string | undefined;
    if (o.rawBody !== undefined) {
      body = o.rawBody;
      headers['content-type'] ??= 'application/json';
    } else if (o.body !== undefined) {
      body = JSON.stringify(o.body);
      headers['content-type'] = 'application/json';
    }
    const res = await fetch(gantry.url + urlPath, { method, headers, body, redirect: 'manual' });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON: keep the text */
    }
    return { status: res.status, body: parsed, headers: res.headers };
  };

  const login = async (username = 'admin', password = ADMIN_PASSWORD) => {
    const res = await request('POST', '/api/v1/auth/login', { body: { username, password }, gateway: null });
    if (res.status !== 200) throw new Error(`login failed: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.data.token as string;
  };

  const jwtSecret = () =>
    config.jwtSecret ?? fs.readFileSync(path.join(dataDir, 'secrets', 'jwt-secret'), 'utf8').trim();

  return {
    ...gantry,
    dataDir,
    config,
    request,
    login,
    jwtSecret,
    signToken(claims = {}, o = {}) {
      const now = Math.floor(Date.now() / 1000);
      const exp = now + (o.expiresInSeconds ?? 600);
      const payload = {
        sub: 'admin',
        role: 'admin',
        gateways: ['*'],
        ver: 0,
        ...claims,
        iat: Math.min(now, exp - 60),
        exp,
      };
      return jwt.sign(payload, o.secret ?? jwtSecret(), {
        algorithm: 'HS256',
        issuer: o.issuer ?? 'gantry',
        audience: o.audience ?? 'gantry-api',
      });
    },
    async tokenFor(role, gateways = ['*']) {
      const username = `${role}-${++userSeq}`;
      await gantry.deps.users.create({ username, password: 'password-123', role, gateways });
      return login(username, 'password-123');
    },
  };
}
