import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../core/config.js';
import {
  bypassesProxy,
  displayUrl,
  mergeProxySettings,
  parseProxyUrl,
  proxyFor,
  proxySettingsFromEnv,
  redactUrlCredentials,
} from '../../feed/http/proxy.js';
import { REDACTED, redactSecrets } from '../../services/debug-bundle.js';

describe('proxy settings', () => {
  it('should read both spellings of the variables, the lower-case one first (curl)', () => {
    expect(
      proxySettingsFromEnv({
        HTTPS_PROXY: 'http://upper:1',
        https_proxy: 'http://lower:1',
        HTTP_PROXY: 'http://h:2',
      }),
    ).toEqual({ httpsProxy: 'http://lower:1', httpProxy: 'http://h:2', noProxy: null });
    expect(proxySettingsFromEnv({ NO_PROXY: 'a', no_proxy: 'b' }).noProxy).toBe('b');
  });

  it("should let the ZIP's fields win one by one, an empty one meaning no proxy", () => {
    const env = { httpsProxy: 'http://env:1', httpProxy: 'http://env:2', noProxy: 'x' };
    expect(mergeProxySettings(env, { httpsProxy: '' })).toEqual({
      httpsProxy: '',
      httpProxy: 'http://env:2',
      noProxy: 'x',
    });
    expect(mergeProxySettings(env, { noProxy: '*' }).noProxy).toBe('*');
    expect(mergeProxySettings(env, undefined)).toBe(env);
  });

  it('should pick the proxy by scheme and send credentials only as Proxy-Authorization', () => {
    const settings = { httpsProxy: 'http://u:p%40ss@proxy.plant:3128', httpProxy: 'proxy.plant:8080' };
    const secure = proxyFor(new URL('https://feed.example/m'), settings)!;
    expect(secure).toMatchObject({
      host: 'proxy.plant',
      port: 3128,
      display: 'http://proxy.plant:3128',
      password: 'p@ss',
    });
    expect(Buffer.from(secure.authorization!.slice(6), 'base64').toString()).toBe('u:p@ss');
    expect(proxyFor(new URL('http://feed.example/m'), settings)).toMatchObject({
      port: 8080,
      authorization: null,
    });
    expect(proxyFor(new URL('http://feed.example/m'), { httpsProxy: 'http://p:1' })).toBeNull();
  });

  it('should refuse unusable proxy URLs without repeating them', () => {
    for (const [value, message] of [
      ['https://u:secret-pw@p:1', /only http:\/\/ proxies/],
      ['http://u:secret-pw@p:1/path', /without a path/],
      ['http://u:secret-pw@:1', /not a valid proxy URL|names no proxy host/],
    ] as const) {
      expect(() => parseProxyUrl(value, 'HTTPS_PROXY')).toThrow(message);
      try {
        parseProxyUrl(value, 'HTTPS_PROXY');
      } catch (err) {
        expect((err as Error).message).not.toContain('secret-pw');
      }
    }
  });

  it('should stop the server at start on a bad proxy variable, naming it and not its value', () => {
    const err = (() => {
      try {
        loadConfig({ https_proxy: 'ftp://user:secret-pw@proxy:21', GANTRY_DATA_DIR: '/tmp/x' });
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/HTTPS_PROXY: only http:\/\/ proxies are supported/);
    expect((err as Error).message).not.toContain('secret-pw');
    const ok = loadConfig({ HTTP_PROXY: 'http://p:3128', no_proxy: 'localhost', GANTRY_DATA_DIR: '/tmp/x' });
    expect(ok).toMatchObject({ httpProxy: 'http://p:3128', noProxy: 'localhost', feedHttpClient: 'gantry' });
    expect(() => loadConfig({ GANTRY_FEED_HTTP_CLIENT: 'curl', GANTRY_DATA_DIR: '/tmp/x' })).toThrow(
      /GANTRY_FEED_HTTP_CLIENT/,
    );
  });
});

describe('NO_PROXY', () => {
  const cases: [string, number, string, boolean][] = [
    // host names, and their subdomains
    ['feed.example.com', 443, 'feed.example.com', true],
    ['FEED.Example.com', 443, 'feed.example.com', true],
    ['feed.example.com.', 443, 'feed.example.com', true],
    ['cdn.feed.example.com', 443, 'feed.example.com', true],
    ['otherfeed.example.com', 443, 'feed.example.com', false],
    ['example.com', 443, 'feed.example.com', false],
    // domain suffixes, with a leading dot or *.
    ['a.plant.local', 80, '.plant.local', true],
    ['plant.local', 80, '.plant.local', true],
    ['a.b.plant.local', 80, '*.plant.local', true],
    ['aplant.local', 80, '.plant.local', false],
    // IP addresses, v4 and v6
    ['10.1.2.3', 80, '10.1.2.3', true],
    ['10.1.2.4', 80, '10.1.2.3', false],
    ['[::1]', 80, '::1', true],
    ['[::1]', 80, '0:0:0:0:0:0:0:1', true],
    // CIDR blocks, against IP literals only
    ['10.20.30.40', 80, '10.0.0.0/8', true],
    ['11.0.0.1', 80, '10.0.0.0/8', false],
    ['192.168.7.9', 80, '192.168.0.0/16', true],
    ['[fd00::5]', 80, 'fd00::/8', true],
    ['[fe80::1]', 80, 'fd00::/8', false],
    ['ten.example', 80, '10.0.0.0/8', false],
    ['10.0.0.1', 80, '10.0.0.0/99', false],
    // ports
    ['feed.example.com', 8443, 'feed.example.com:8443', true],
    ['feed.example.com', 443, 'feed.example.com:8443', false],
    ['[::1]', 8080, '[::1]:8080', true],
    // lists, wildcard, empty entries
    ['feed.example.com', 443, 'a.example, ,feed.example.com', true],
    ['feed.example.com', 443, 'a.example b.example', false],
    ['anything.at.all', 1, '*', true],
    ['anything.at.all', 1, '', false],
  ];
  for (const [host, port, noProxy, bypass] of cases) {
    it(`should ${bypass ? '' : 'not '}send ${host}:${port} directly for NO_PROXY=${JSON.stringify(noProxy)}`, () => {
      expect(bypassesProxy(host, port, noProxy)).toBe(bypass);
    });
  }

  it('should decide per URL, with the default port of its scheme', () => {
    const settings = { httpsProxy: 'http://p:1', noProxy: 'feed.example:443' };
    expect(proxyFor(new URL('https://feed.example/x'), settings)).toBeNull();
    expect(proxyFor(new URL('https://feed.example:8443/x'), settings)).not.toBeNull();
  });
});

describe('credentials in text', () => {
  it('should take the credentials out of URLs wherever they appear', () => {
    expect(displayUrl('http://u:pw@feed.example:8080/a?b')).toBe('http://feed.example:8080/a?b');
    expect(redactUrlCredentials('via http://u:pw@p:1 and https://tok@h/x, not mail@host')).toBe(
      'via http://[REDACTED]@p:1 and https://[REDACTED]@h/x, not mail@host',
    );
    expect(redactSecrets({ httpsProxy: 'http://gantry:pw@p:3128', note: ['x http://a:b@c'] }, [])).toEqual({
      httpsProxy: `http://${REDACTED}@p:3128`,
      note: [`x http://${REDACTED}@c`],
    });
  });
});
