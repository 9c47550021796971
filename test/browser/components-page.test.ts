import fs from 'node:fs';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Component } from '../../bundle/manifest.js';
import { startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { randomImage, startTestFeed, type TestFeed } from '../helpers/feed.js';
import { makeTempDir } from '../helpers/temp.js';
import { waitFor } from '../helpers/wait.js';
import { describeBrowser, launchBrowser, loginThroughForm } from './helpers.js';
import { appComponent, rootfsComponent } from '../helpers/components.js';

/**
 * Issue 15: after a rolling update of a rootfs and an application partition, the OTA page lists
 * every component's version (the extra `components` of /status), in real Chromium.
 */

const COMPONENTS: Component[] = [
  rootfsComponent('v5.1.0'),
  appComponent('v2.1.0', { rootfsVersion: 'v5.1.0', order: 2, needsReboot: false }),
];

describeBrowser('OTA page: component versions (issue 15)', () => {
  let feed: TestFeed;
  let g: TestGantry;
  let browser: Browser | undefined;

  beforeAll(async () => {
    feed = await startTestFeed();
    const work = makeTempDir('gantry-components-page-');
    const app = path.join(work, 'app.img');
    fs.writeFileSync(app, randomImage(200 * 1024 + 7));
    await feed.publish({ version: 'v5.1.0', components: COMPONENTS }, randomImage(512 * 1024 + 3), {
      extraPayloads: [{ kind: 'app', path: app, name: 'app.img' }],
    });
    const dataDir = tempDataDir();
    feed.trustIn(dataDir);
    g = await startTestGantry({ dataDir, env: feed.env });
    browser = await launchBrowser();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await g?.stop();
    await feed?.close();
  });

  it('should list rootfs and app with their versions and slots once the rolling update is complete', async () => {
    const token = await g.login();
    const post = (p: string, body: unknown) => g.request('POST', p, { token, body });
    expect((await post('/api/v1/ota/check-updates', { force: true })).status).toBe(200);
    const download = await post('/api/v1/ota/download', { update_id: 'update-001' });
    expect(download.status, JSON.stringify(download.body)).toBe(200);
    const jobId = download.body.data.job_id as string;
    const progress = async () =>
      (await g.request('GET', `/api/v1/ota/progress?job_id=${jobId}`, { token })).body.data as {
        status: string;
      };
    await waitFor(progress, (p) => p.status === 'downloaded' || p.status === 'error', 'downloaded');
    const install = await post('/api/v1/ota/install', {
      job_id: jobId,
      strategy: 'rolling',
      reboot_after: true,
      create_snapshot: false,
    });
    expect(install.status, JSON.stringify(install.body)).toBe(200);
    const done = await waitFor(
      progress,
      (p) => ['complete', 'error', 'cancelled'].includes(p.status),
      'job ended',
      30_000,
    );
    expect(done.status, JSON.stringify(done)).toBe('complete');

    const page = await browser!.newPage();
    await loginThroughForm(page, g.url);
    const items = page.locator('[data-testid="gw-components"] li');
    await expect.poll(() => items.count()).toBe(2);
    expect(await page.locator('[data-component="rootfs"]').textContent()).toMatch(
      /^rootfs v5\.1\.0 .*slot B/,
    );
    expect(await page.locator('[data-component="app"]').textContent()).toBe(
      'app v2.1.0 (ab-slot app, slot B)',
    );
  });
});
