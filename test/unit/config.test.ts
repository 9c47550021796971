import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, isValidTimeZone, loadConfig } from '../../core/config.js';
import { makeTempDir } from '../helpers/temp.js';

/** The ConfigError thrown for `env`, or a failure if loading succeeds or throws something else. */
function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(env)}`);
}

describe('loadConfig', () => {
  it('should apply the documented defaults when nothing is set', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 8080,
      host: '127.0.0.1',
      tokenTtlSeconds: 1800,
      cookieSecure: false,
      device: 'simulated',
      gateways: [{ id: 'GW-3920A9', model: 'Univa-GW-Pro', timezone: 'UTC' }],
      trustedOrigins: [],
      loginAttemptsPerMinute: 10,
      downloadTimeoutMinutes: 120,
      demoFeed: 'auto',
    });
    expect(config.dataDir).toBe(path.resolve('./data'));
    expect(config.adminPassword).toBeUndefined();
    expect(config.jwtSecret).toBeUndefined();
  });

  it('should read and coerce every environment variable', () => {
    const config = loadConfig({
      PORT: '0',
      HOST: '0.0.0.0',
      GANTRY_DATA_DIR: '/tmp/gantry-x',
      GANTRY_ADMIN_PASSWORD: 'correct-horse',
      GANTRY_JWT_SECRET: 'x'.repeat(32),
      GANTRY_TOKEN_TTL_SECONDS: '600',
      GANTRY_COOKIE_SECURE: 'yes',
      GANTRY_DEVICE: 'simulated',
      GANTRY_TRUSTED_ORIGINS: 'https://ops.example.com, https://scada.example.com',
      GANTRY_LOGIN_ATTEMPTS_PER_MINUTE: '3',
      GANTRY_DOWNLOAD_TIMEOUT_MINUTES: '480',
      GANTRY_DEMO_FEED: 'off',
    });
    expect(config).toMatchObject({
      port: 0,
      host: '0.0.0.0',
      dataDir: '/tmp/gantry-x',
      adminPassword: 'correct-horse',
      jwtSecret: 'x'.repeat(32),
      tokenTtlSeconds: 600,
      cookieSecure: true,
      trustedOrigins: ['https://ops.example.com', 'https://scada.example.com'],
      loginAttemptsPerMinute: 3,
      downloadTimeoutMinutes: 480,
      demoFeed: 'off',
    });
  });

  it('should treat an empty variable as unset', () => {
    expect(loadConfig({ PORT: '', GANTRY_ADMIN_PASSWORD: '' })).toMatchObject({ port: 8080 });
    expect(loadConfig({ GANTRY_ADMIN_PASSWORD: '' }).adminPassword).toBeUndefined();
  });

  it.each([
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['PORT', '-1'],
    ['PORT', '80.5'],
    ['GANTRY_ADMIN_PASSWORD', 'short'],
    ['GANTRY_JWT_SECRET', 'too-short-for-hs256'],
    ['GANTRY_TOKEN_TTL_SECONDS', '10'],
    ['GANTRY_TOKEN_TTL_SECONDS', '100000'],
    ['GANTRY_TOKEN_TTL_SECONDS', 'forever'],
    ['GANTRY_COOKIE_SECURE', 'maybe'],
    ['GANTRY_DEVICE', 'qemu'],
    ['GANTRY_DEMO_FEED', 'maybe'],
    ['GANTRY_GATEWAYS', 'bad id!'],
    ['GANTRY_GATEWAYS', 'GW-1:Model:Mars/Olympus_Mons'],
    ['GANTRY_GATEWAYS', ','],
    ['GANTRY_TRUSTED_ORIGINS', 'not a url'],
    ['GANTRY_LOGIN_ATTEMPTS_PER_MINUTE', '0'],
    ['GANTRY_LOGIN_ATTEMPTS_PER_MINUTE', 'lots'],
    ['GANTRY_DOWNLOAD_TIMEOUT_MINUTES', '0'],
    ['GANTRY_DOWNLOAD_TIMEOUT_MINUTES', '10081'],
    ['GANTRY_DOWNLOAD_TIMEOUT_MINUTES', '1.5'],
  ])('should reject %s=%j with a ConfigError naming the variable', (name, value) => {
    const err = configError({ [name]: value });
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]!.startsWith(name)).toBe(true);
    expect(err.message).toContain(name);
  });

  it('should report every bad variable at once, not only the first', () => {
    const err = configError({ PORT: 'abc', GANTRY_DEVICE: 'qemu', GANTRY_TOKEN_TTL_SECONDS: '1' });
    expect(err.problems).toHaveLength(3);
    expect(err.message).toMatch(/PORT/);
    expect(err.message).toMatch(/GANTRY_DEVICE/);
    expect(err.message).toMatch(/GANTRY_TOKEN_TTL_SECONDS/);
  });

  it('should point at the gateway entry and field of a bad GANTRY_GATEWAYS entry', () => {
    const err = configError({ GANTRY_GATEWAYS: 'GW-1,GW-2:Lite:Not/AZone' });
    expect(err.problems).toEqual([expect.stringMatching(/^GANTRY_GATEWAYS \[1\.timezone\]: .*time zone/)]);
  });

  describe('GANTRY_GATEWAYS', () => {
    it('should parse ID, ID:MODEL and ID:MODEL:TIMEZONE entries with defaults', () => {
      const { gateways } = loadConfig({
        GANTRY_GATEWAYS: 'GW-1, GW-2:Univa-GW-Lite ,GW-3:Univa-GW-Pro:Europe/Amsterdam,GW-4::Asia/Tokyo',
      });
      expect(gateways).toEqual([
        { id: 'GW-1', model: 'Univa-GW-Pro', timezone: 'UTC' },
        { id: 'GW-2', model: 'Univa-GW-Lite', timezone: 'UTC' },
        { id: 'GW-3', model: 'Univa-GW-Pro', timezone: 'Europe/Amsterdam' },
        { id: 'GW-4', model: 'Univa-GW-Pro', timezone: 'Asia/Tokyo' },
      ]);
    });

    it('should reject a gateway listed twice, naming it', () => {
      const err = configError({ GANTRY_GATEWAYS: 'GW-1:A,GW-2,GW-1:B' });
      expect(err.problems).toEqual(['GANTRY_GATEWAYS: gateway GW-1 is listed twice']);
    });

    it('should reject an unknown time zone', () => {
      const err = configError({ GANTRY_GATEWAYS: 'GW-1:Univa-GW-Pro:Europe/Atlantis' });
      expect(err.problems[0]).toMatch(/^GANTRY_GATEWAYS \[0\.timezone\]/);
    });

    it('should reject an id longer than 64 characters or starting with a separator', () => {
      expect(configError({ GANTRY_GATEWAYS: 'G'.repeat(65) }).problems[0]).toMatch(
        /^GANTRY_GATEWAYS \[0\.id\]/,
      );
      expect(configError({ GANTRY_GATEWAYS: '-GW' }).problems[0]).toMatch(/^GANTRY_GATEWAYS \[0\.id\]/);
    });
  });

  describe('GANTRY_CONFIG file', () => {
    function configFile(content: string): string {
      const dir = makeTempDir('gantry-config-');
      const file = path.join(dir, 'gantry.json');
      fs.writeFileSync(file, content);
      return file;
    }

    it('should read camelCase keys from the file, with environment variables winning', () => {
      const file = configFile(
        JSON.stringify({
          port: 9090,
          tokenTtlSeconds: 900,
          gateways: [{ id: 'GW-F', timezone: 'Europe/Amsterdam' }],
        }),
      );
      const config = loadConfig({ GANTRY_CONFIG: file, PORT: '9191' });
      expect(config.port).toBe(9191);
      expect(config.tokenTtlSeconds).toBe(900);
      expect(config.gateways).toEqual([{ id: 'GW-F', model: 'Univa-GW-Pro', timezone: 'Europe/Amsterdam' }]);
    });

    it('should name GANTRY_CONFIG when the file is missing or not JSON', () => {
      expect(configError({ GANTRY_CONFIG: '/nonexistent/gantry.json' }).problems[0]).toMatch(
        /^GANTRY_CONFIG: cannot read/,
      );
      expect(configError({ GANTRY_CONFIG: configFile('{ not json') }).problems[0]).toMatch(
        /^GANTRY_CONFIG: cannot read/,
      );
    });

    it('should name the variable of a bad value given in the file', () => {
      const err = configError({ GANTRY_CONFIG: configFile(JSON.stringify({ tokenTtlSeconds: 5 })) });
      expect(err.problems[0]).toMatch(/^GANTRY_TOKEN_TTL_SECONDS/);
    });

    it('should reject an unknown key in the file', () => {
      const err = configError({ GANTRY_CONFIG: configFile(JSON.stringify({ prot: 8080 })) });
      expect(err.message).toContain('prot');
    });
  });
});

describe('isValidTimeZone', () => {
  it('should accept IANA zones and reject made-up ones', () => {
    expect(isValidTimeZone('UTC')).toBe(true);
    expect(isValidTimeZone('Europe/Amsterdam')).toBe(true);
    expect(isValidTimeZone('America/Argentina/Buenos_Aires')).toBe(true);
    expect(isValidTimeZone('Europe/Atlantis')).toBe(false);
    expect(isValidTimeZone('')).toBe(false);
  });
});
