import net from 'node:net';

/**
 * Which proxy a feed request goes through, decided the way curl and npm do it: `HTTPS_PROXY` for
 * https URLs, `HTTP_PROXY` for http ones (the lower-case spelling wins when both are set), unless
 * `NO_PROXY` names the host. The configuration ZIP's `feed` section carries the same three fields
 * and wins over the environment field by field; an empty value there means "no proxy" even when the
 * environment has one.
 *
 * A proxy URL is `http://[user:password@]host[:port]`. Its credentials go to the proxy only, as
 * `Proxy-Authorization: Basic`, and never appear in a message, a log line or an API answer: every
 * place that shows a proxy shows `display` (the URL without them).
 */

export interface ProxySettings {
  /** Proxy for https URLs (`HTTPS_PROXY`); '' or null: none. */
  httpsProxy?: string | null;
  /** Proxy for http URLs (`HTTP_PROXY`); '' or null: none. */
  httpProxy?: string | null;
  /** Hosts reached directly (`NO_PROXY`): comma- or space-separated. */
  noProxy?: string | null;
}

export interface ProxyServer {
  host: string;
  port: number;
  /** `http://host:port`, without credentials: the only form shown anywhere. */
  display: string;
  /** `Basic …` for Proxy-Authorization when the URL carried credentials. */
  authorization: string | null;
  /** The password, so that redaction can find it in any text (never shown). */
  password: string | null;
}

/** Reads the proxy variables the curl way: `https_proxy` before `HTTPS_PROXY`, and so on. */
export function proxySettingsFromEnv(env: Record<string, string | undefined>): ProxySettings {
  const pick = (lower: string, upper: string): string | null => env[lower] ?? env[upper] ?? null;
  return {
    httpsProxy: pick('https_proxy', 'HTTPS_PROXY'),
    httpProxy: pick('http_proxy', 'HTTP_PROXY'),
    noProxy: pick('no_proxy', 'NO_PROXY'),
  };
}

/** `override`'s fields where it has them (an empty string included), `base`'s otherwise. */
export function mergeProxySettings(base: ProxySettings, override: ProxySettings | undefined): ProxySettings {
  if (!override) return base;
  return {
    httpsProxy: override.httpsProxy !== undefined ? override.httpsProxy : base.httpsProxy,
    httpProxy: override.httpProxy !== undefined ? override.httpProxy : base.httpProxy,
    noProxy: override.noProxy !== undefined ? override.noProxy : base.noProxy,
  };
}

/** A URL for messages: its password (and user) replaced, so a credential never leaves in text. */
export function displayUrl(url: URL | string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return redactUrlCredentials(String(url));
  }
  if (!u.username && !u.password) return u.href;
  const copy = new URL(u.href);
  copy.username = '';
  copy.password = '';
  return copy.href;
}

/** Replaces the `user:password@` of every URL in free text. */
export function redactUrlCredentials(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@]*@/gi, '$1[REDACTED]@');
}

/**
 * Parses a proxy URL; `what` names the setting in errors. The message never repeats the value (it
 * may hold a password). Only http:// proxies: a TLS connection to the proxy itself is not supported.
 */
export function parseProxyUrl(value: string, what: string): ProxyServer {
  let u: URL;
  try {
    // curl and npm accept a bare host:port and mean http://
    u = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`);
  } catch {
    throw new Error(`${what} is not a valid proxy URL`);
  }
  if (u.protocol !== 'http:') {
    throw new Error(`${what}: only http:// proxies are supported (got ${u.protocol}//)`);
  }
  if (!u.hostname) throw new Error(`${what} names no proxy host`);
  if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) {
    throw new Error(`${what} must be http://[user:password@]host[:port], without a path`);
  }
  const user = decodeURIComponent(u.username);
  const password = decodeURIComponent(u.password);
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: Number(u.port) || 80,
    display: `http://${u.host}`,
    authorization: user || password ? `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` : null,
    password: password || null,
  };
}

/** Checks every proxy URL of `settings`; returns the problems (with the setting named, never the value). */
export function checkProxySettings(
  settings: ProxySettings,
  names: { https: string; http: string },
): string[] {
  const problems: string[] = [];
  for (const [value, what] of [
    [settings.httpsProxy, names.https],
    [settings.httpProxy, names.http],
  ] as const) {
    if (!value) continue;
    try {
      parseProxyUrl(value, what);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  return problems;
}

/** The passwords of the proxies in `settings`, for redaction. */
export function proxyPasswords(settings: ProxySettings): string[] {
  const out: string[] = [];
  for (const value of [settings.httpsProxy, settings.httpProxy]) {
    if (!value) continue;
    try {
      const password = parseProxyUrl(value, 'proxy').password;
      if (password) out.push(password);
    } catch {
      /* not a valid URL: nothing that could be sent */
    }
  }
  return out;
}

/**
 * Does `NO_PROXY` send `host:port` directly? Entries (curl's rules): `*` (every host); a host name,
 * which also covers its subdomains (`example.com` and `.example.com` both match `a.example.com`);
 * an IP address; a CIDR block (`10.0.0.0/8`, `fd00::/8`), matched against IP-literal hosts (names
 * are not resolved for it); any of them with `:port` to match that port only.
 */
export function bypassesProxy(hostname: string, port: number, noProxy: string | null | undefined): boolean {
  if (!noProxy) return false;
  const host = hostname
    .replace(/^\[(.*)\]$/, '$1')
    .replace(/\.$/, '')
    .toLowerCase();
  const hostIp = net.isIP(host);
  for (const raw of noProxy.split(/[\s,]+/)) {
    let entry = raw.trim().toLowerCase();
    if (!entry) continue;
    if (entry === '*') return true;
    let entryPort: number | null = null;
    const withPort = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(entry);
    if (withPort) {
      entry = withPort[1]!;
      entryPort = Number(withPort[2]);
    }
    if (entryPort !== null && entryPort !== port) continue;
    entry = entry.replace(/^\[(.*)\]$/, '$1');
    const slash = entry.indexOf('/');
    if (slash > 0) {
      const base = entry.slice(0, slash);
      const bits = Number(entry.slice(slash + 1));
      const family = net.isIP(base);
      if (!family || !hostIp || family !== hostIp || !Number.isInteger(bits)) continue;
      const list = new net.BlockList();
      try {
        list.addSubnet(base, bits, family === 4 ? 'ipv4' : 'ipv6');
      } catch {
        continue; // a prefix out of range matches nothing
      }
      if (list.check(host, hostIp === 4 ? 'ipv4' : 'ipv6')) return true;
      continue;
    }
    if (net.isIP(entry)) {
      if (hostIp && sameAddress(entry, host)) return true;
      continue;
    }
    const domain = entry.replace(/^\*?\./, '').replace(/\.$/, '');
    if (domain && (host === domain || host.endsWith(`.${domain}`))) return true;
  }
  return false;
}

function sameAddress(a: string, b: string): boolean {
  if (a === b) return true;
  const list = new net.BlockList();
  const family = net.isIP(a) === 4 ? 'ipv4' : 'ipv6';
  list.addAddress(a, family);
  return list.check(b, net.isIP(b) === 4 ? 'ipv4' : 'ipv6');
}

/** The proxy for `url` under `settings`, or null to connect directly. Throws on an invalid proxy URL. */
export function proxyFor(url: URL, settings: ProxySettings): ProxyServer | null {
  const secure = url.protocol === 'https:';
  const value = secure ? settings.httpsProxy : settings.httpProxy;
  if (!value) return null;
  const port = Number(url.port) || (secure ? 443 : 80);
  if (bypassesProxy(url.hostname, port, settings.noProxy)) return null;
  return parseProxyUrl(value, secure ? 'HTTPS_PROXY' : 'HTTP_PROXY');
}
