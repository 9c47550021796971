import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { FEED_HTTP_IMPLEMENTATIONS } from '../feed/http/client.js';
import { checkProxySettings, proxySettingsFromEnv } from '../feed/http/proxy.js';
import {
  LINUX_ENV_KEYS,
  linuxConfigFields,
  linuxDeviceConfig,
  type LinuxDeviceConfig,
} from '../device/linux/config.js';

/**
 * Start-up configuration: environment variables, optionally overlaid on a JSON file named by
 * GANTRY_CONFIG. Validated once, fail-fast, with the offending variable named in the message.
 */

const GATEWAY_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * The configuration's schema, built by loadConfig and garbage once it returns: the server reads its
 * configuration once (device/linux/config.ts linuxConfigFields says what holding it cost).
 */
function configSchema() {
  const gatewayConfigSchema = z.strictObject({
    id: z.string().regex(GATEWAY_ID, 'gateway id: letters, digits, ".", "_" or "-", at most 64'),
    model: z.string().min(1).max(64).default('Univa-GW-Pro'),
    timezone: z
      .string()
      .default('UTC')
      .refine((tz) => isValidTimeZone(tz), 'unknown IANA time zone'),
  });
  const booleanString = z
    .enum(['true', 'false', '1', '0', 'yes', 'no'])
    .transform((v) => v === 'true' || v === '1' || v === 'yes');

  return z.strictObject({
    port: z.coerce.number().int().min(0).max(65535).default(8080),
    host: z.string().min(1).default('127.0.0.1'),
    dataDir: z.string().min(1).default('./data'),
    adminPassword: z.string().min(8, 'must be at least 8 characters').optional(),
    /** Safety override PIN of gateways that have none provisioned yet (first start only; else generated). */
    safetyPin: z
      .string()
      .regex(/^\d{4,8}$/, 'must be 4 to 8 digits')
      .optional(),
    jwtSecret: z.string().min(32, 'must be at least 32 characters').optional(),
    tokenTtlSeconds: z.coerce.number().int().min(60).max(86_400).default(1800),
    cookieSecure: booleanString.default(false),
    device: z.enum(['simulated', 'linux']).default('simulated'),
    gateways: z
      .array(gatewayConfigSchema)
      .min(1)
      .default([{ id: 'GW-3920A9', model: 'Univa-GW-Pro', timezone: 'UTC' }]),
    /** Extra origins allowed for cookie-authenticated writes (besides the request's own host). */
    trustedOrigins: z.array(z.string().url()).default([]),
    /** Largest accepted image upload (manual upload, recovery image). */
    maxUploadBytes: z.coerce
      .number()
      .int()
      .min(1024)
      .default(4 * 1024 ** 3),
    /** Default update feed for gateways a configuration ZIP has not provisioned (TUF metadata base URL). */
    feedUrl: z.string().url().optional(),
    /** Target base URL of that feed (default: `<feedUrl>/targets`). */
    feedTargetsUrl: z.string().url().optional(),
    /** The TUF root.json this gateway trusts for that feed. */
    feedRoot: z.string().optional(),
    /**
     * `auto`: a simulated gateway with no feed configured gets a local demo feed (generated once in
     * the data dir, served on loopback); `off`: never. Never used with the Linux device.
     */
    demoFeed: z.enum(['auto', 'off']).default('auto'),
    /** The feed's HTTP client: Gantry's own (reused buffers) or node:http, the fallback. */
    feedHttpClient: z.enum(FEED_HTTP_IMPLEMENTATIONS).default('gantry'),
    /** PEM file of certificate authorities trusted for https feeds, besides Node's bundled ones. */
    feedCaFile: z.string().min(1).optional(),
    /** Proxies for the feed (HTTPS_PROXY, HTTP_PROXY, NO_PROXY; a configuration ZIP's win). */
    httpsProxy: z.string().optional(),
    httpProxy: z.string().optional(),
    noProxy: z.string().optional(),
    loginAttemptsPerMinute: z.coerce.number().int().min(1).max(1000).default(10),
    /** Snapshots kept per gateway; creating one more deletes the oldest. */
    snapshotRetention: z.coerce.number().int().min(1).max(100).default(5),
    /** A download (all its attempts) still running after this long fails with OTA_DOWNLOAD_FAILED. */
    downloadTimeoutMinutes: z.coerce.number().int().min(1).max(10_080).default(120),
    /** The dynamic delta path is used when it plans under this share (%) of the full download. */
    dynamicDeltaMaxPercent: z.coerce.number().min(0).max(100).default(60),
    /**
     * A reboot asked for by a component's activation that has not brought the system down after this
     * long did not happen: it is asked again (at most three times), then the component fails.
     */
    rebootTimeoutSeconds: z.coerce.number().int().min(1).max(3600).default(300),
    ...linuxConfigFields(),
  });
}

/** `linux`: the Linux device's configuration, set by loadConfig on the one gateway of GANTRY_DEVICE=linux. */
export type GatewayConfig = z.infer<ReturnType<typeof configSchema>>['gateways'][number] & {
  linux?: LinuxDeviceConfig;
};
export type GantryConfig = Omit<z.infer<ReturnType<typeof configSchema>>, 'gateways'> & {
  gateways: GatewayConfig[];
};

/** Environment variable → config key. */
const ENV_KEYS = {
  PORT: 'port',
  HOST: 'host',
  GANTRY_DATA_DIR: 'dataDir',
  GANTRY_ADMIN_PASSWORD: 'adminPassword',
  GANTRY_SAFETY_PIN: 'safetyPin',
  GANTRY_JWT_SECRET: 'jwtSecret',
  GANTRY_TOKEN_TTL_SECONDS: 'tokenTtlSeconds',
  GANTRY_COOKIE_SECURE: 'cookieSecure',
  GANTRY_DEVICE: 'device',
  GANTRY_GATEWAYS: 'gateways',
  GANTRY_TRUSTED_ORIGINS: 'trustedOrigins',
  GANTRY_LOGIN_ATTEMPTS_PER_MINUTE: 'loginAttemptsPerMinute',
  GANTRY_SNAPSHOT_RETENTION: 'snapshotRetention',
  GANTRY_DOWNLOAD_TIMEOUT_MINUTES: 'downloadTimeoutMinutes',
  GANTRY_DYNAMIC_DELTA_MAX_PERCENT: 'dynamicDeltaMaxPercent',
  GANTRY_REBOOT_TIMEOUT_SECONDS: 'rebootTimeoutSeconds',
  GANTRY_MAX_UPLOAD_BYTES: 'maxUploadBytes',
  GANTRY_FEED_URL: 'feedUrl',
  GANTRY_FEED_TARGETS_URL: 'feedTargetsUrl',
  GANTRY_FEED_ROOT: 'feedRoot',
  GANTRY_DEMO_FEED: 'demoFeed',
  GANTRY_FEED_HTTP_CLIENT: 'feedHttpClient',
  GANTRY_FEED_CA_FILE: 'feedCaFile',
  HTTPS_PROXY: 'httpsProxy',
  HTTP_PROXY: 'httpProxy',
  NO_PROXY: 'noProxy',
  ...LINUX_ENV_KEYS,
} as const satisfies Record<string, keyof GantryConfig>;

const KEY_TO_ENV = Object.fromEntries(Object.entries(ENV_KEYS).map(([env, key]) => [key, env])) as Record<
  keyof GantryConfig,
  string
>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid Gantry configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/**
 * GANTRY_GATEWAYS is "ID[:MODEL[:TIMEZONE]]" separated by commas, e.g.
 * "GW-3920A9:Univa-GW-Pro,GW-7781B2:Univa-GW-Lite:Europe/Rotterdam".
 */
function parseGatewayList(value: string): unknown {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      const [id, model, timezone] = entry.split(':');
      return { id, ...(model ? { model } : {}), ...(timezone ? { timezone } : {}) };
    });
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): GantryConfig {
  const raw: Record<string, unknown> = {};
  const fromFile = env.GANTRY_CONFIG;
  if (fromFile) {
    try {
      Object.assign(raw, JSON.parse(fs.readFileSync(fromFile, 'utf8')) as Record<string, unknown>);
    } catch (err) {
      throw new ConfigError([`GANTRY_CONFIG: cannot read ${fromFile}: ${(err as Error).message}`]);
    }
  }
  // The proxy variables in both spellings, the lower-case one first (curl's convention).
  const proxyEnv = proxySettingsFromEnv(env);
  for (const [envName, key] of Object.entries(ENV_KEYS)) {
    const value =
      key === 'httpsProxy'
        ? proxyEnv.httpsProxy
        : key === 'httpProxy'
          ? proxyEnv.httpProxy
          : key === 'noProxy'
            ? proxyEnv.noProxy
            : env[envName];
    if (value === undefined || value === null || value === '') continue;
    if (key === 'gateways') raw[key] = parseGatewayList(value);
    else if (key === 'trustedOrigins') raw[key] = value.split(',').map((s) => s.trim());
    else raw[key] = value;
  }
  const parsed = configSchema().safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => {
        const [head, ...rest] = issue.path;
        const envName =
          typeof head === 'string' ? (KEY_TO_ENV[head as keyof GantryConfig] ?? head) : '(config)';
        const where = rest.length ? `${envName} [${rest.join('.')}]` : envName;
        return `${where}: ${issue.message}`;
      }),
    );
  }
  // Checked here so a mistyped proxy stops the server at start; the messages never echo the URL.
  const proxyProblems = checkProxySettings(parsed.data, { https: 'HTTPS_PROXY', http: 'HTTP_PROXY' });
  if (proxyProblems.length) throw new ConfigError(proxyProblems);
  const ids = parsed.data.gateways.map((g) => g.id);
  const dup = ids.find((id, i) => ids.indexOf(id) !== i);
  if (dup) throw new ConfigError([`GANTRY_GATEWAYS: gateway ${dup} is listed twice`]);
  let gatewayList: GatewayConfig[] = parsed.data.gateways;
  if (parsed.data.device === 'linux') {
    const linux = linuxDeviceConfig(parsed.data);
    if (!linux.ok) throw new ConfigError(linux.problems);
    gatewayList = gatewayList.map((g) => ({ ...g, linux: linux.config }));
  }
  return { ...parsed.data, gateways: gatewayList, dataDir: path.resolve(parsed.data.dataDir) };
}

export function isValidTimeZone(tz: string): boolean {
  // Without asking ICU (services/maintenance-window.ts says why).
  if (tz === 'UTC') return true;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}
