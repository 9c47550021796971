import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { describe, expect } from 'vitest';
import { buildBundle } from '../../bundle/build.js';
import { ensureWebBuilt } from '../../scripts/build-web.js';
import { ADMIN_PASSWORD, tempDataDir } from '../helpers/gantry.js';
import { makeTempDir } from '../helpers/temp.js';
import type { TestFeed } from '../helpers/feed.js';

export const CHROMIUM_PATH = process.env.GANTRY_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
export const ARTIFACTS = path.resolve('test-artifacts');

const inCI = !!process.env.CI && !['false', '0'].includes(process.env.CI.toLowerCase());
const chromiumPresent = fs.existsSync(CHROMIUM_PATH);
const MISSING = `Chromium not found at ${CHROMIUM_PATH} (apt-get install -y --no-install-recommends chromium)`;

if (!chromiumPresent && !inCI) {
  console.warn(`[browser tests] SKIPPED: ${MISSING}. With CI=true they fail instead.`);
}

/**
 * The browser suites: skipped locally without Chromium (with the message above), never in CI,
 * where a missing browser must fail the run rather than pass it silently.
 */
export const describeBrowser = describe.skipIf(!chromiumPresent && !inCI);

export async function launchBrowser(): Promise<Browser> {
  if (!chromiumPresent) throw new Error(`${MISSING}: the browser tests cannot run`);
  await ensureWebBuilt();
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  // Chromium's own scratch files go to a directory of the test's; playwright removes the profile
  // it makes under TMPDIR when the browser closes.
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: CHROMIUM_ARGS,
    env: { ...process.env, TMPDIR: makeTempDir('gantry-chromium-') },
  });
}

/** What a page did that it should not: script errors, CSP refusals, dialogs (alert & co). */
export interface PageWatch {
  errors: string[];
  dialogs: string[];
}

export function watchPage(page: Page): PageWatch {
  const watch: PageWatch = { errors: [], dialogs: [] };
  page.on('pageerror', (err) => watch.errors.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/favicon/.test(msg.text()) && !/status of (4|5)\d\d/.test(msg.text())) {
      watch.errors.push(`console: ${msg.text()}`);
    }
    if (/Content Security Policy/i.test(msg.text())) watch.errors.push(`csp: ${msg.text()}`);
  });
  page.on('dialog', (d) => {
    watch.dialogs.push(`${d.type()}: ${d.message()}`);
    void d.dismiss();
  });
  return watch;
}

/** Signs in through the /login form, as an operator would. */
export async function loginThroughForm(
  page: Page,
  baseUrl: string,
  username = 'admin',
  password = ADMIN_PASSWORD,
) {
  await page.goto(`${baseUrl}/login`);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${baseUrl}/ota-system-updates`);
  await page.waitForSelector('#app[data-ready="true"]');
}

export async function shot(page: Page, selector: string, name: string): Promise<string> {
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.locator(selector).screenshot({ path: file });
  return file;
}

/** A signed bundle (not published on the feed) for the upload fields. */
export async function signedBundle(
  feed: TestFeed,
  fields: { version: string; description?: string },
  bytes = 256 * 1024,
): Promise<string> {
  const dir = tempDataDir('gantry-upload-');
  const image = path.join(dir, 'rootfs.img');
  fs.writeFileSync(image, Buffer.alloc(bytes, 7));
  const out = path.join(dir, `custom-${fields.version}.bundle`);
  await buildBundle({
    manifestFields: {
      type: 'feature',
      severity: 'medium',
      compatible: ['Univa-GW-Pro'],
      kernel: '6.2.0-LTS',
      released: '2025-03-20',
      description: fields.description ?? `Custom image ${fields.version}`,
      changelog: ['Custom build'],
      version: fields.version,
    },
    payloadFiles: [{ kind: 'rootfs', path: image, name: 'rootfs.img' }],
    privateKey: feed.signingKey,
    out,
  });
  return out;
}

/** Waits until the element's text matches (the UI updates asynchronously: WebSocket, refreshes). */
export async function waitForText(
  page: Page,
  selector: string,
  expected: string | RegExp,
  timeoutMs = 20_000,
): Promise<void> {
  const poll = expect.poll(async () => (await page.locator(selector).first().textContent()) ?? '', {
    timeout: timeoutMs,
    interval: 100,
  });
  if (typeof expected === 'string') await poll.toContain(expected);
  else await poll.toMatch(expected);
}
