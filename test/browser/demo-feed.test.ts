import fs from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import {
  describeBrowser,
  launchBrowser,
  loginThroughForm,
  shot,
  waitForText,
  watchPage,
  type PageWatch,
} from './helpers.js';

/**
 * The first start on the embedded default, from the page only: the demo feed is shown as a demo
 * in section 2, its releases install, and its simulator control shows a rollback.
 */

const FAST_POLICY = { retryDelayMs: 10, checkpointMs: 0, checkpointBytes: 256 * 1024 };

describeBrowser('OTA page on the demo feed (first start) in Chromium', () => {
  const dataDir = tempDataDir();
  let g: TestGantry;
  let browser: Browser;
  let page: Page;
  let watch: PageWatch;

  beforeAll(async () => {
    g = await startTestGantry({ dataDir, env: { GANTRY_DEMO_FEED: 'auto' }, transferPolicy: FAST_POLICY });
    browser = await launchBrowser();
    page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    watch = watchPage(page);
    await loginThroughForm(page, g.url);
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await g?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('should mark the demo feed in section 2 and check it', async () => {
    const source = page.locator('[data-testid=feed-source]');
    expect(await source.textContent()).toMatch(
      /^Demo ?Feed: demo feed \(local, http:\/\/127\.0\.0\.1:\d+\): releases generated/,
    );
    await page.getByRole('button', { name: 'Check for Updates' }).click();
    await waitForText(
      page,
      '#section-updates',
      /Checked demo feed \(local, http:\/\/127\.0\.0\.1:\d+\): 2 updates available/,
    );
    await page.getByRole('button', { name: 'Install v5.1.0 now' }).waitFor();
    await shot(page, '#section-updates', 'demo-feed-updates');
  });

  it('should fail the next boots of the inactive slot with the demo control and show the rollback', async () => {
    await page.getByRole('button', { name: 'Demo: fail the next boot of slot B' }).click();
    await waitForText(page, '#section-updates', 'The next 3 boots of slot B will fail');
    await page.getByRole('button', { name: 'Install v5.1.0 now' }).click();
    await page.locator('[data-testid=job][data-status=downloaded]').waitFor({ timeout: 20_000 });
    await page.getByRole('button', { name: 'Install', exact: true }).click();
    await page.locator('[data-testid=job][data-status=error]').waitFor({ timeout: 20_000 });
    // The bootloader gave up on slot B and came back to A, which still runs v5.0.4.
    await waitForText(page, '[data-testid=slot-active]', /Slot A.*v5\.0\.4.*healthy/s);
    await waitForText(page, '[data-testid=slot-inactive]', /Slot B.*invalid/s);
    await shot(page, '#section-system', 'demo-feed-rollback');
    expect(watch.errors).toEqual([]);
  });
});
