import fs from 'node:fs';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { generateKeyPair } from '../../bundle/keys.js';
import { randomImage, startTestFeed, type TestFeed } from '../helpers/feed.js';
import { ADMIN_PASSWORD, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import {
  describeBrowser,
  launchBrowser,
  loginThroughForm,
  shot,
  signedBundle,
  waitForText,
  watchPage,
  type PageWatch,
} from './helpers.js';

/**
 * The operator page in a real browser against a real server with a loopback TUF feed: every
 * scenario drives the page the way an operator would (labels, buttons, dialogs), and the page
 * learns of what happens over its WebSocket, never by reloading.
 */

const FAST_POLICY = { retryDelayMs: 10, checkpointMs: 0, checkpointBytes: 256 * 1024 };
const PIN = '7392';
/** A feed-supplied description that would close #app and run a script if it were ever markup. */
const XSS = '"</div><script>alert(1)</script>';
const XSS_CHANGELOG = '<img src=x onerror=alert(2)>';

describeBrowser('OTA page (/ota-system-updates) in Chromium', () => {
  let feed: TestFeed;
  let g: TestGantry;
  let token: string;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let watch: PageWatch;
  let url: string;

  beforeAll(async () => {
    feed = await startTestFeed();
    await feed.publish(
      { version: 'v5.0.5', description: XSS, changelog: [XSS_CHANGELOG, 'Fixed CVE-2025-1234'] },
      randomImage(2 * 1024 * 1024),
    );
    const dataDir = tempDataDir();
    feed.trustIn(dataDir);
    g = await startTestGantry({
      dataDir,
      env: { ...feed.env, GANTRY_SAFETY_PIN: PIN },
      transferPolicy: FAST_POLICY,
    });
    token = await g.login();
    url = `${g.url}/ota-system-updates`;
    browser = await launchBrowser();
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    watch = watchPage(page);
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await g?.stop();
    await feed?.close();
  });

  const simulator = async (path: string, body: unknown) => {
    const res = await g.request('POST', `/api/v1/dev/simulator/${path}`, { token, body });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  };

  it('should send a visitor without a session to /login, refuse a wrong password, then sign in', async () => {
    await page.goto(url);
    expect(new URL(page.url()).pathname).toBe('/login');
    await page.getByLabel('Username').fill('admin');
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await waitForText(page, '#login-error', 'Wrong username or password');
    await shot(page, 'main', 'login');

    // Keyboard only: type, Tab to the password, Enter submits.
    await page.getByLabel('Username').fill('admin');
    await page.keyboard.press('Tab');
    await page.keyboard.type(ADMIN_PASSWORD);
    await page.keyboard.press('Enter');
    await page.waitForURL(url);
    expect(await page.title()).toBe('OTA & System Updates - Univa Gateway');
    const res = await page.reload();
    const csp = res!.headers()['content-security-policy'] ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    await page.waitForSelector('#app[data-ready="true"]');
  });

  it("should show the server's data in all 7 sections, with no API call for the first paint", async () => {
    const calls: string[] = [];
    const onRequest = (r: { url(): string; resourceType(): string }) => {
      if (r.url().includes('/api/') && ['fetch', 'xhr'].includes(r.resourceType())) calls.push(r.url());
    };
    page.on('request', onRequest);
    await page.reload();
    await page.waitForSelector('#app[data-ready="true"]');
    await waitForText(page, '[data-testid=live-indicator]', 'connected');
    page.off('request', onRequest);
    expect(calls).toEqual([]);

    // 1: system cards and both slots
    expect(await page.textContent('[data-testid=gw-model]')).toBe('Univa-GW-Pro');
    expect(await page.textContent('[data-testid=gw-os-version]')).toBe('v5.0.4');
    expect(await page.textContent('[data-testid=slot-active]')).toMatch(/Slot A.*v5\.0\.4.*healthy/s);
    expect(await page.textContent('[data-testid=slot-inactive]')).toMatch(/Slot B.*v5\.0\.3.*ready/s);
    // 2: nothing checked yet; the auto-update toggle shows the setting
    expect(await page.isVisible('[data-testid=updates-empty]')).toBe(true);
    expect(await page.textContent('#auto-update-button')).toBe('Auto-Update: Off');
    // 3: the file field is labelled; deploying waits for a verified image
    expect(await page.getByLabel('Firmware bundle').count()).toBe(1);
    expect(await page.isVisible('#upload-deploy-button')).toBe(false);
    // 4: the stored settings fill the form
    expect(await page.getByLabel('Start time').inputValue()).toBe('02:00');
    expect(await page.getByLabel('Duration (minutes)').inputValue()).toBe('120');
    expect(await page.getByLabel('Update strategy').inputValue()).toBe('seamless');
    // 5: rollback names its target
    expect(await page.textContent('[data-testid=rollback-target]')).toContain('slot B (v5.0.3)');
    // 6: live readings of the simulated crane
    expect(await page.textContent('[data-testid=safety-status-crane_motion]')).toBe('idle');
    expect(await page.textContent('[data-testid=safety-summary]')).toContain('Updates allowed');
    // 7: the activity log the server rendered
    expect(await page.textContent('[data-testid=activity-log]')).toContain('Gantry started');

    const sections = ['system', 'updates', 'upload', 'settings', 'recovery', 'safety', 'monitor'];
    for (const [i, id] of sections.entries())
      await shot(page, `#section-${id}`, `section-${i + 1}-${id}-1280`);

    // Narrow (a phone on the quay): nothing wider than the screen.
    await page.setViewportSize({ width: 390, height: 844 });
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    for (const [i, id] of sections.entries())
      await shot(page, `#section-${id}`, `section-${i + 1}-${id}-390`);
    await page.setViewportSize({ width: 1280, height: 900 });
    expect(watch.errors).toEqual([]);
  });

  it('should check the feed, install an update and follow it to 100% and the new slot, without reloading', async () => {
    await page.evaluate(() => Object.assign(window, { gantryNoReload: true }));
    await page.getByRole('button', { name: 'Check for Updates' }).click();
    await waitForText(page, '#section-updates', 'Checked');
    const row = page.locator('[data-testid=update-update-001]');
    await row.waitFor();
    expect(await row.locator('th').textContent()).toBe('v5.0.5');
    expect(await row.textContent()).toContain('critical');

    await page.getByRole('button', { name: 'Install v5.0.5 now' }).click();
    await expect
      .poll(() => page.locator('#monitor-progress').evaluate((el) => (el as HTMLProgressElement).value), {
        timeout: 20_000,
      })
      .toBe(100);
    await page.locator('[data-testid=job][data-status=downloaded]').waitFor();
    expect(await page.textContent('[data-testid=progress-percent]')).toBe('100%');
    await shot(page, '#section-monitor', 'monitor-downloaded');
    // The verified image now sits in slot B.
    await waitForText(page, '[data-testid=slot-inactive]', 'v5.0.5');

    // Installed without a reboot: the job waits, visibly, for the gateway to boot the new slot.
    await page.getByLabel('Reboot into the new image when installed').uncheck();
    await page.getByRole('button', { name: 'Install', exact: true }).click();
    await page.locator('[data-testid=job][data-status=installed]').waitFor({ timeout: 20_000 });
    expect(await page.textContent('[data-testid=job-title]')).toContain('Installed – reboot to activate');
    expect(await page.textContent('[data-testid=job-operation]')).toBe('pending reboot');
    expect(await page.textContent('[data-testid=job-note]')).toContain('boots at the next reboot');
    await waitForText(page, '[data-testid=slot-active]', /Slot A.*v5\.0\.4/s);
    await shot(page, '#section-monitor', 'monitor-installed');

    await simulator('reboot', {});
    await page.locator('[data-testid=job][data-status=complete]').waitFor({ timeout: 20_000 });
    // The gateway rebooted into slot B and committed it: the cards swap on their own.
    await waitForText(page, '[data-testid=slot-active]', /Slot B.*v5\.0\.5.*healthy/s);
    await waitForText(page, '[data-testid=slot-inactive]', /Slot A.*v5\.0\.4/s);
    await waitForText(page, '[data-testid=gw-os-version]', 'v5.0.5');
    await waitForText(page, '[data-testid=activity-log]', 'committed');
    expect(
      await page.evaluate(() => (window as unknown as { gantryNoReload?: boolean }).gantryNoReload),
    ).toBe(true);
    await shot(page, '#section-system', 'system-after-install');
    expect(watch.dialogs).toEqual([]);
  });

  it("should render a feed description that looks like markup as inert text, also from the server's HTML", async () => {
    const res = await page.reload();
    const raw = await res!.text();
    expect(raw).not.toContain('</div><script>alert(1)');
    expect(raw).toContain('&lt;/div&gt;&lt;script&gt;alert(1)&lt;/script&gt;');
    await page.waitForSelector('#app[data-ready="true"]');
    const row = page.locator('[data-testid=update-update-001]');
    expect(await row.locator('.update-description').textContent()).toBe(XSS);
    await row.locator('summary').click();
    expect(await row.locator('li').first().textContent()).toBe(XSS_CHANGELOG);
    // Only the page's own module script exists; nothing from the feed became an element.
    expect(await page.evaluate(() => document.scripts.length)).toBe(1);
    expect(await page.locator('#app img').count()).toBe(0);
    await page.waitForTimeout(300);
    expect(watch.dialogs).toEqual([]);
    await shot(page, '#section-updates', 'updates-inert-markup');
    await page.setViewportSize({ width: 390, height: 844 });
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    await shot(page, '#section-updates', 'updates-row-390');
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it('should name the blocking constraint, then roll back, and swap the slot cards at a simulated reboot', async () => {
    await simulator('sensors', { crane_motion: 'moving', crane_estimated_clear_seconds: 90 });
    await waitForText(page, '[data-testid=safety-status-crane_motion]', 'moving');
    await waitForText(page, '[data-testid=safety-summary]', 'Updates blocked by: Crane motion');

    await page.getByRole('button', { name: 'Execute Rollback' }).click();
    const dialog = page.getByRole('dialog', { name: 'Execute rollback?' });
    await dialog.waitFor();
    // Escape cancels: nothing is sent.
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    expect(await page.locator('#section-recovery [role=alert]').allTextContents()).toEqual(['', '', '', '']);
    await page.getByRole('button', { name: 'Execute Rollback' }).click();
    await dialog.waitFor();
    await dialog.getByRole('button', { name: 'Execute Rollback' }).click();
    await waitForText(page, '#section-recovery', 'Blocked by safety: Crane motion');
    await shot(page, '#section-recovery', 'recovery-blocked');

    await simulator('sensors', { crane_motion: 'idle', crane_estimated_clear_seconds: null });
    await waitForText(page, '[data-testid=safety-status-crane_motion]', 'idle');
    await page.getByRole('button', { name: 'Execute Rollback' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Execute Rollback' }).click();
    await waitForText(page, '#section-recovery', 'Rollback done: the next boot is slot A');

    await simulator('reboot', {});
    await waitForText(page, '[data-testid=slot-active]', /Slot A.*v5\.0\.4/s);
    await waitForText(page, '[data-testid=slot-inactive]', /Slot B.*v5\.0\.5/s);
    await shot(page, '#section-system', 'system-after-reboot');
  });

  it('should refuse a wrong safety PIN next to the control, accept the right one and count down', async () => {
    const safety = page.locator('#section-safety');
    await safety.getByLabel('Crane motion').check();
    await safety.getByLabel('Anti-collision system (ACS)').check();
    await safety.getByLabel('Safety PIN').fill('0000');
    await safety.getByLabel('Reason').fill('Emergency update required');
    await safety.getByRole('button', { name: 'Enable Override' }).click();
    await waitForText(page, '#override-form .error', 'Wrong PIN. 4 attempts left');
    expect(
      await page.getByRole('button', { name: 'Enable Override' }).getAttribute('aria-describedby'),
    ).toContain(await page.locator('#override-form .error').getAttribute('id'));

    await safety.getByLabel('Safety PIN').fill(PIN);
    await safety.getByRole('button', { name: 'Enable Override' }).click();
    await page.locator('[data-testid=override-active]').waitFor();
    const first = await page.textContent('[data-testid=override-countdown]');
    expect(first).toMatch(/^1[45]:\d\d$/);
    await expect
      .poll(() => page.textContent('[data-testid=override-countdown]'), { timeout: 5000 })
      .not.toBe(first);
    expect(await page.textContent('[data-testid=safety-blocking-crane_motion]')).toBe('overridden');
    await shot(page, '#section-safety', 'safety-override');

    await page.getByRole('button', { name: 'End Override' }).click();
    await page.locator('[data-testid=override-active]').waitFor({ state: 'hidden' });
  });

  it('should validate the settings next to their fields, then save them', async () => {
    const toggle = page.getByRole('button', { name: 'Auto-Update: Off' });
    await toggle.click();
    await waitForText(page, '#auto-update-button', 'Auto-Update: On');
    expect(await page.locator('#auto-update-button').getAttribute('aria-pressed')).toBe('true');
    expect(await page.getByLabel('Automatic updates').isChecked()).toBe(true);
    expect(g.deps.settings.get('GW-3920A9').auto_update.enabled).toBe(true);

    const duration = page.getByLabel('Duration (minutes)');
    await duration.fill('5');
    await page.getByRole('button', { name: 'Save Settings' }).click();
    await waitForText(page, '#set-mw-duration-error', 'Enter whole minutes from 15 to 720');
    expect(await duration.getAttribute('aria-invalid')).toBe('true');
    await shot(page, '#section-settings', 'settings-invalid');

    await duration.fill('90');
    await page.getByLabel('Start time').fill('03:30');
    await page.getByLabel('Schedule', { exact: true }).selectOption('weekly');
    await page.getByLabel('Day of the week').selectOption('wednesday');
    await page.getByRole('button', { name: 'Save Settings' }).click();
    await waitForText(page, '#section-settings', 'Settings saved. Next maintenance window');
    const stored = g.deps.settings.get('GW-3920A9').maintenance_window;
    expect(stored).toMatchObject({
      time: '03:30',
      duration_minutes: 90,
      schedule: 'weekly',
      day: 'wednesday',
    });
  });

  it('should take a snapshot (then offered for restore) and hand over a debug bundle when it is ready', async () => {
    await page.getByLabel('Snapshot name').fill('pre-update-backup');
    await page.getByRole('button', { name: 'Snapshot', exact: true }).click();
    await waitForText(page, '#section-system', /Snapshot snap-\d+ started/);
    await page.locator('[data-testid=job][data-status=complete]').waitFor({ timeout: 20_000 });
    await waitForText(page, '#restore-version', 'pre-update-backup');
    expect(await page.getByRole('button', { name: 'Start Restore' }).isEnabled()).toBe(true);

    await page.getByRole('button', { name: 'Debug Bundle' }).click();
    const link = page.getByRole('link', { name: /^Download debug-.+\.tar\.gz$/ });
    await link.waitFor({ timeout: 20_000 });
    const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
    expect(download.suggestedFilename()).toMatch(/^debug-\d{8}-\d+\.tar\.gz$/);
    expect((await fs.promises.stat((await download.path())!)).size).toBeGreaterThan(100);
    await shot(page, '#section-system', 'system-snapshot-debug');
  });

  it('should upload a bundle through the file input, verify it and deploy it to the inactive slot', async () => {
    const bundle = await signedBundle(feed, { version: 'v5.1.0' });
    await page.getByLabel('Firmware bundle').setInputFiles(bundle);
    await page.getByLabel('Version label (optional)').fill('v5.1.0-custom');
    await page.getByRole('button', { name: 'Verify & Prepare Deployment' }).click();
    await waitForText(page, '[data-testid=upload-result]', 'v5.1.0-custom');
    expect(await page.textContent('[data-testid=upload-result]')).toContain('sha256:');
    const deploy = page.getByRole('button', { name: 'Deploy to Partition B' });
    await deploy.click();
    await waitForText(page, '#section-upload', 'Deploying to slot B');
    await page.locator('[data-testid=job][data-status=downloaded]').waitFor({ timeout: 20_000 });
    await shot(page, '#section-upload', 'upload-deployed');
    // Not installed after all: Cancel marks the written slot invalid.
    await page.getByRole('button', { name: 'Cancel', exact: true }).click();
    await page.locator('[data-testid=job][data-status=cancelled]').waitFor();
    await waitForText(page, '[data-testid=slot-inactive]', 'invalid');

    // The recovery image arrives by drag and drop on its zone.
    const recovery = await signedBundle(feed, { version: 'v5.0.1' }, 64 * 1024);
    const bytes = fs.readFileSync(recovery).toString('base64');
    await page.evaluate((b64) => {
      const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const transfer = new DataTransfer();
      transfer.items.add(new File([data], 'recovery-v5.0.1.bundle'));
      const zone = document.querySelector('[data-testid=recovery-file-zone]')!;
      zone.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }, bytes);
    await waitForText(page, '[data-testid=recovery-file-zone]', 'recovery-v5.0.1.bundle');
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await waitForText(page, '[data-testid=recovery-image]', 'recovery-v5.0.1.bundle (v5.0.1');
    expect(watch.errors).toEqual([]);
  });

  it('should confirm a factory reset in a dialog and refuse a wrong PIN next to the button', async () => {
    const form = page.locator('#factory-form');
    await form.getByLabel('Safety PIN').fill('1111');
    await form.getByLabel('Reason').fill('System decommissioning');
    await form.getByRole('button', { name: 'Factory Reset' }).click();
    const dialog = page.getByRole('dialog', { name: 'Factory reset this gateway?' });
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await dialog.waitFor({ state: 'hidden' });
    expect(await form.locator('[role=alert]').textContent()).toBe('');

    await form.getByLabel('Safety PIN').press('Enter');
    await dialog.getByRole('button', { name: 'Factory Reset' }).click();
    await waitForText(page, '#factory-form [role=alert]', /^Wrong PIN\. \d attempts? left/);
    expect(await form.getByLabel('Safety PIN').inputValue()).toBe('');
    await shot(page, '#section-recovery', 'recovery-factory-wrong-pin');
  });

  // Regression (issue 11.3): every listed update said "verified", even one signed by a key the
  // gateway does not trust.
  it('should show an update signed by an untrusted key as untrusted and not offer to install it', async () => {
    await feed.publish({ version: 'v6.0.0' }, randomImage(64 * 1024), {
      signingKey: generateKeyPair().privateKey,
    });
    await page.getByRole('button', { name: 'Check for Updates' }).click();
    const row = page.locator('#section-updates tr', { has: page.locator('th', { hasText: 'v6.0.0' }) });
    await row.waitFor();
    expect(await row.locator('.badge', { hasText: 'untrusted' }).count()).toBe(1);
    expect(await row.textContent()).toContain('Signed by a key this gateway does not trust');
    expect(await page.getByRole('button', { name: 'Install v6.0.0 now' }).isDisabled()).toBe(true);
    await shot(page, '#section-updates', 'updates-untrusted-signer');
  });

  it('should show a viewer the data, with the controls its role may not use disabled', async () => {
    await g.deps.users.create({
      username: 'watcher',
      password: 'password-123',
      role: 'viewer',
      gateways: ['*'],
    });
    const viewerContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const viewer = await viewerContext.newPage();
    await loginThroughForm(viewer, g.url, 'watcher', 'password-123');
    expect(await viewer.textContent('[data-testid=gw-model]')).toBe('Univa-GW-Pro');
    for (const name of [
      'Check for Updates',
      'Snapshot',
      'Debug Bundle',
      'Save Settings',
      'Enable Override',
    ]) {
      expect(await viewer.getByRole('button', { name, exact: true }).isDisabled(), name).toBe(true);
    }
    expect(await viewer.textContent('#section-settings')).toContain('changing it needs the admin role');
    await viewerContext.close();
  });

  it('should log out and send the next visit to /login', async () => {
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(`${g.url}/login`);
    await page.goto(url);
    expect(new URL(page.url()).pathname).toBe('/login');
  });
});
