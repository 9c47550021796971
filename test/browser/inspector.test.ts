import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomImage, startTestFeed, type TestFeed } from '../helpers/feed.js';
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
 * /dev/inspector: the statecharts drawn from their definitions (laid out by ELK in the page), live
 * states highlighted as they change, pushed over the tRPC WebSocket (no polling).
 */

const FAST_POLICY = { retryDelayMs: 10, checkpointMs: 0, checkpointBytes: 256 * 1024 };
const PIN = '2468';

describeBrowser('statechart inspector (/dev/inspector) in Chromium', () => {
  let feed: TestFeed;
  let g: TestGantry;
  let token: string;
  let browser: Browser;
  let page: Page;
  let watch: PageWatch;
  /** The page's own HTTP calls (fetch/XHR) and WebSockets, to tell pushing from polling. */
  const calls: string[] = [];
  const sockets: string[] = [];

  beforeAll(async () => {
    feed = await startTestFeed();
    await feed.publish({ version: 'v5.0.5' }, randomImage(1024 * 1024));
    const dataDir = tempDataDir();
    feed.trustIn(dataDir);
    g = await startTestGantry({
      dataDir,
      env: { ...feed.env, GANTRY_SAFETY_PIN: PIN },
      transferPolicy: FAST_POLICY,
    });
    token = await g.login();
    browser = await launchBrowser();
    page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    watch = watchPage(page);
    page.on('request', (req) => {
      if (['fetch', 'xhr'].includes(req.resourceType())) calls.push(new URL(req.url()).pathname);
    });
    page.on('websocket', (ws) => sockets.push(new URL(ws.url()).pathname));
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await g?.stop();
    await feed?.close();
  });

  const state = (machine: string, id: string) =>
    page.locator(`[data-machine=${machine}] g[data-state-id="${id}"]`);
  const active = (machine: string, id: string) =>
    page.locator(`[data-machine=${machine}] g.state.active[data-state-id="${id}"]`);

  it('should answer 404 to anyone but an admin', async () => {
    const anonymous = await browser.newContext();
    const res = await (await anonymous.newPage()).goto(`${g.url}/dev/inspector`);
    expect(res!.status()).toBe(404);
    await anonymous.close();

    await g.deps.users.create({
      username: 'op',
      password: 'password-123',
      role: 'operator',
      gateways: ['*'],
    });
    const operator = await browser.newContext();
    const opPage = await operator.newPage();
    await loginThroughForm(opPage, g.url, 'op', 'password-123');
    expect((await opPage.goto(`${g.url}/dev/inspector`))!.status()).toBe(404);
    await operator.close();
  });

  it("should draw every statechart from its definition, with each gateway actor's state", async () => {
    await loginThroughForm(page, g.url);
    await page.goto(`${g.url}/dev/inspector`);
    calls.length = 0;
    await page.waitForSelector('#inspector[data-ready="true"]');
    for (const id of [
      'updateJob.pending',
      'updateJob.downloading',
      'updateJob.installing',
      'updateJob.installing.rebooting',
      'updateJob.complete',
    ]) {
      expect(await state('updateJob', id).count(), id).toBe(1);
    }
    expect(await state('zipOp', 'zipOp.in_progress.extracting').count()).toBe(1);
    expect(await page.locator('[data-machine=updateJob] g.edge').count()).toBeGreaterThan(8);
    await active('partition', 'partition.stable').waitFor();
    await active('safetyInterlock', 'safetyInterlock.normal').waitFor();
    for (const m of ['updateJob', 'partition', 'safetyInterlock', 'zipOp', 'componentSequence']) {
      await shot(page, `[data-machine=${m}]`, `inspector-${m}`);
    }
  });

  it('should give every transition label its own place, clear of the others and of the states', async () => {
    for (const m of ['updateJob', 'partition', 'safetyInterlock', 'zipOp', 'componentSequence']) {
      const found = await page.evaluate((machine) => {
        type Box = { name: string; left: number; top: number; right: number; bottom: number };
        const box = (el: Element, name: string): Box => {
          const r = el.getBoundingClientRect();
          return { name, left: r.left, top: r.top, right: r.right, bottom: r.bottom };
        };
        const chart = document.querySelector(`[data-machine=${machine}] svg.chart`)!;
        const texts = [...chart.querySelectorAll('text.edge-label')].map((t) => box(t, t.textContent ?? ''));
        const backgrounds = [...chart.querySelectorAll('rect.edge-label-bg')].map((r) => box(r, 'bg'));
        const states = [...chart.querySelectorAll('g.state:not(.compound) > rect:first-of-type')].map((r) =>
          box(r, (r.parentElement as unknown as SVGGElement).dataset.stateId ?? ''),
        );
        const hit = (a: Box, b: Box) =>
          a.left < b.right - 0.5 &&
          b.left < a.right - 0.5 &&
          a.top < b.bottom - 0.5 &&
          b.top < a.bottom - 0.5;
        const inside = (a: Box, b: Box) =>
          a.left >= b.left - 0.5 &&
          a.right <= b.right + 0.5 &&
          a.top >= b.top - 0.5 &&
          a.bottom <= b.bottom + 0.5;
        const problems: string[] = [];
        texts.forEach((t, i) => {
          if (!inside(t, backgrounds[i]!)) problems.push(`"${t.name}" spills out of its box`);
          for (const u of texts.slice(i + 1))
            if (hit(t, u)) problems.push(`"${t.name}" overlaps "${u.name}"`);
          for (const st of states) if (hit(t, st)) problems.push(`"${t.name}" lies on ${st.name}`);
        });
        backgrounds.forEach((b, i) => {
          for (const c of backgrounds.slice(i + 1)) if (hit(b, c)) problems.push(`label boxes ${i} overlap`);
        });
        return { labels: texts.length, problems };
      }, m);
      expect(found.labels, m).toBeGreaterThan(1);
      expect(found.problems, m).toEqual([]);
    }
  });

  it("should highlight a job's state as it changes, pushed over the WebSocket", async () => {
    await page.locator('[data-testid=live-status][data-live=live]').waitFor();
    expect(sockets).toContain('/api/trpc');
    const check = await g.request('POST', '/api/v1/ota/check-updates', { token, body: { force: true } });
    expect(check.status).toBe(200);
    const start = await g.request('POST', '/api/v1/ota/download', {
      token,
      body: { update_id: 'update-001' },
    });
    expect(start.status, JSON.stringify(start.body)).toBe(200);
    const jobId: string = start.body.data.job_id;

    await active('updateJob', 'updateJob.downloaded').waitFor({ timeout: 20_000 });
    await waitForText(page, '[data-testid=status-updateJob]', `${jobId}: downloaded`);
    await shot(page, '[data-machine=updateJob]', 'inspector-job-downloaded');

    const install = await g.request('POST', '/api/v1/ota/install', { token, body: { job_id: jobId } });
    expect(install.status, JSON.stringify(install.body)).toBe(200);
    await active('updateJob', 'updateJob.complete').waitFor({ timeout: 20_000 });
    expect(await active('updateJob', 'updateJob.downloaded').count()).toBe(0);
    await active('partition', 'partition.stable').waitFor();
    // The events the statecharts received, with their payloads, as they arrived.
    await waitForText(page, '[data-testid=event-list]', /INSTALL\s*\{[^}]*"strategy":"seamless"/);
    await waitForText(page, '[data-testid=event-list]', new RegExp(`updateJob ${jobId}\\s*TRANSFER_DONE`));
    await waitForText(page, '[data-testid=event-list]', /partition GW-3920A9\s*HEALTH_OK/);

    const override = await g.request('POST', '/api/v1/ota/safety/override', {
      token,
      body: { enable: true, pin: PIN, reason: 'inspector test', constraints: ['crane_motion'] },
    });
    expect(override.status, JSON.stringify(override.body)).toBe(200);
    await active('safetyInterlock', 'safetyInterlock.overridden').waitFor();
    await waitForText(page, '[data-testid=event-list]', /safetyInterlock GW-3920A9\s*OVERRIDE_ENABLE/);
    // Every change above came over the WebSocket: the page made no HTTP call of its own.
    expect(calls).toEqual([]);

    // Step through the job's persisted history.
    await page.getByLabel('Job', { exact: true }).selectOption(jobId);
    await page.getByRole('button', { name: 'Show history' }).click();
    // pending, downloading, verifying, downloaded, installing, rebooting, activating, complete.
    await waitForText(page, '[data-testid=history-step]', 'Step 1 of 8: (start) → pending');
    expect(calls.filter((c) => c.startsWith('/dev/inspector/jobs/'))).toHaveLength(1);
    await page.getByRole('button', { name: 'Next ▶' }).click();
    await waitForText(page, '[data-testid=history-step]', 'Step 2 of 8: pending → downloading');
    expect(
      await page
        .locator('[data-machine=updateJob] g.state.step[data-state-id="updateJob.downloading"]')
        .count(),
    ).toBe(1);
    expect(
      await page
        .locator('[data-machine=updateJob] g.edge.step[data-edge="updateJob.pending→updateJob.downloading"]')
        .count(),
    ).toBe(1);
    await shot(page, '[data-machine=updateJob]', 'inspector-history-step');
    expect(watch.errors).toEqual([]);
  });
});
