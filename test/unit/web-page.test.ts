import { describe, expect, it } from 'vitest';
import { html, jsonAttr } from '../../web/html.js';
import { CONTENT_SECURITY_POLICY } from '../../web/layout.js';
import { renderLoginPage } from '../../web/login-page.js';
import { OTA_PAGE_TITLE, renderOtaPage, type OtaPageData } from '../../web/ota-page.js';

/** The server-rendered OTA page: escaping of everything a feed, a log or a user can put in it. */

const XSS = '"</div><script>alert(1)</script>';
const ATTR_BREAKOUT = `' onmouseover='alert(2)`;

function decodeAttr(value: string): string {
  return value
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&#96;/g, '`')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/** The value of `data-<name>="…"` on #app (either quote: both are escaped inside). */
function dataAttr(page: string, name: string): unknown {
  const m = page.match(new RegExp(`data-${name}=(['"])(.*?)\\1`));
  if (!m) throw new Error(`no data-${name}`);
  return JSON.parse(decodeAttr(m[2]!));
}

function pageData(): OtaPageData {
  return {
    session: {
      username: `ops${ATTR_BREAKOUT}`,
      role: 'admin',
      gateway: 'GW-3920A9',
      gateways: ['GW-3920A9', `GW-<b>"x"</b>`],
      server_now: Date.parse('2025-03-15T12:00:00Z'),
    },
    system: {
      gateway: {
        model: 'Univa-GW-Pro',
        os_version: 'v5.0.4',
        kernel: '6.1.33-LTS',
        uptime: '19d 3h 12m',
        bootloader: 'U-Boot 2024.01',
        last_ota: null,
      },
      partitions: {
        active: {
          id: 'A',
          version: 'v5.0.4',
          status: 'healthy',
          size: '8GB',
          used: '3.2GB',
          booted: true,
          next_boot: true,
        },
        inactive: {
          id: 'B',
          version: XSS,
          status: 'ready',
          size: '8GB',
          used: '2.8GB',
          booted: false,
          next_boot: false,
        },
        auto_rollback: true,
        rollback_retries: 3,
      },
    },
    updates: [
      {
        id: 'update-001',
        version: 'v5.0.5',
        type: 'security',
        severity: 'critical',
        size: '452 MB',
        released: '2025-03-15',
        description: XSS,
        changelog: ['<img src=x onerror=alert(3)>', ATTR_BREAKOUT, '`${alert(4)}`', '&amp; stays &amp;'],
        signature: 'verified',
        compatible: true,
      },
    ],
    // A feed address comes from configuration: it is escaped like everything else.
    feed: { server: `demo feed (local, ${ATTR_BREAKOUT})`, demo: true },
    settings: {
      auto_update: { enabled: true, auto_download: true, auto_security: true, auto_reboot: false },
      maintenance_window: {
        enabled: true,
        schedule: 'daily',
        time: '02:00',
        day: 'sunday',
        duration_minutes: 120,
        timezone: 'Europe/Rotterdam',
      },
      update_strategy: 'seamless',
      auto_rollback: true,
      rollback_retries: 3,
      auto_check: true,
      check_interval_hours: 6,
    },
    safety: {
      constraints: {
        crane_motion: {
          enabled: true,
          status: 'idle',
          blocking: false,
          overridden: false,
          estimated_clear: null,
        },
        acs_collision: { enabled: true, status: 'clear', blocking: false, overridden: false },
        ups_battery: { enabled: true, status: 'ok', blocking: false, overridden: false, level: 85 },
        network: { enabled: true, status: 'connected', blocking: false, overridden: false },
        system_load: { enabled: true, status: 'normal', blocking: false, overridden: false, load: 0.2 },
      },
      force_override: false,
      update_allowed: true,
      override: null,
      thresholds: { ups_min_battery_percent: 30, max_system_load: 0.9 },
    },
    logs: [{ timestamp: '2025-03-15T10:25:30Z', level: 'info', source: 'ota', message: `</script>${XSS}` }],
    monitor: {
      system_status: 'idle',
      current_operation: 'none',
      last_update_check: null,
      next_check: null,
      resources: { cpu_usage: 1, memory_usage: '50.0%' },
    },
    snapshots: [],
    job: null,
    recovery: null,
  };
}

describe('OTA page HTML (server-rendered)', () => {
  const data = pageData();
  const page = renderOtaPage(data).toString();

  it('should carry the spec title and the four documented data attributes on #app', () => {
    expect(page).toContain('<title>OTA &amp; System Updates - Univa Gateway</title>');
    expect(OTA_PAGE_TITLE).toBe('OTA & System Updates - Univa Gateway');
    expect(page.match(/<div\s+id="app"/g)).toHaveLength(1);
    for (const name of ['system', 'updates', 'settings', 'safety']) expect(page).toMatch(`data-${name}="`);
  });

  it('should round-trip every data attribute to exactly the JSON it was given', () => {
    expect(dataAttr(page, 'system')).toEqual(data.system);
    expect(dataAttr(page, 'updates')).toEqual(data.updates);
    expect(dataAttr(page, 'feed')).toEqual(data.feed);
    expect(dataAttr(page, 'settings')).toEqual(data.settings);
    expect(dataAttr(page, 'safety')).toEqual(data.safety);
    expect(dataAttr(page, 'logs')).toEqual(data.logs);
    expect(dataAttr(page, 'session')).toEqual(data.session);
    expect(dataAttr(page, 'job')).toBeNull();
  });

  it('should never let a feed, log or user string become markup', () => {
    expect(page).not.toContain('</div><script>');
    expect(page).not.toContain('<img src=x');
    expect(page).not.toContain("' onmouseover='");
    expect(page).not.toContain('<b>"x"</b>');
    // The only script is the bundle, by URL: nothing inline.
    const scripts = page.match(/<script\b[^>]*>/g) ?? [];
    expect(scripts).toHaveLength(1);
    expect(scripts[0]).toMatch(/^<script type="module" src="\/assets\/app\.js\?v=\d+">$/);
    // No handler or style attribute on any element (attribute values set aside).
    const tags = (page.match(/<[a-z][^>]*>/gi) ?? []).map((t) => t.replace(/"[^"]*"|'[^']*'/g, '""'));
    expect(tags.length).toBeGreaterThan(10);
    expect(tags.filter((t) => /\s(on[a-z]+|style)=/i.test(t))).toEqual([]);
  });

  it('should offer the gateway picker only when there is a choice', () => {
    expect(page).toContain('<select id="gateway-select" name="gateway">');
    const single = renderOtaPage({
      ...data,
      session: { ...data.session, gateways: ['GW-3920A9'] },
    }).toString();
    expect(single).not.toContain('gateway-select');
  });
});

describe('escaping helpers and the policy', () => {
  it('should escape JSON for a single- or double-quoted attribute', () => {
    // Not named `html` here, so the formatter leaves the template's quotes as written.
    const template = html;
    const out =
      template`<i data-a='${jsonAttr({ s: `'"<>&\`` })}' data-b="${jsonAttr([ATTR_BREAKOUT])}"></i>`.toString();
    expect(out).toBe(
      `<i data-a='{&quot;s&quot;:&quot;&#39;\\&quot;&lt;&gt;&amp;&#96;&quot;}' data-b="[&quot;&#39; onmouseover=&#39;alert(2)&quot;]"></i>`,
    );
  });

  it('should allow scripts and styles from this server only, never inline', () => {
    expect(CONTENT_SECURITY_POLICY).toContain("script-src 'self'");
    expect(CONTENT_SECURITY_POLICY).toContain("style-src 'self'");
    expect(CONTENT_SECURITY_POLICY).toContain("default-src 'none'");
    expect(CONTENT_SECURITY_POLICY).not.toMatch(/unsafe-(inline|eval)/);
  });

  it('should render the login form with labelled fields and no inline script', () => {
    const login = renderLoginPage({ next: '/ota-system-updates', signedInAs: `<x>${XSS}` }).toString();
    expect(login).toContain('<label for="login-username">Username</label>');
    expect(login).toContain('<label for="login-password">Password</label>');
    expect(login).not.toContain('<x>');
    expect(login.match(/<script\b[^>]*>/g)).toHaveLength(1);
  });
});
