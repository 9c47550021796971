import { chromium } from 'playwright-core';
import { startTestGantry } from './test/helpers/gantry.js';
import { ensureWebBuilt } from './scripts/build-web.js';
await ensureWebBuilt();
const g = await startTestGantry();
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu'] });
try {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  page.on('console', (m) => console.log('console', m.type(), m.text()));
  await page.goto(`${g.url}/login`);
  await page.getByLabel('Username').fill('admin');
  await page.getByLabel('Password').fill('admin-test-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${g.url}/ota-system-updates`);
  await page.goto(`${g.url}/dev/inspector`);
  await page.waitForSelector('#inspector[data-ready="true"]');
  for (const m of process.argv.slice(2)) {
    await page.locator(`[data-machine=${m}] button`, { hasText: 'Actual size' }).click();
    await page.locator(`[data-machine=${m}] svg.chart`).screenshot({ path: `/tmp/actual-${m}.png` });
  }
  const info = await page.evaluate(() => [...document.querySelectorAll('[data-machine=updateJob] text.edge-label')].slice(0, 40).map((t) => { const r = t.getBoundingClientRect(); const b = (t.previousElementSibling as Element).getBoundingClientRect(); return `${t.textContent} text=${r.width.toFixed(1)}x${r.height.toFixed(1)} bg=${b.width.toFixed(1)}x${b.height.toFixed(1)} dy=${(r.top - b.top).toFixed(1)}`; }));
  console.log(info.join('\n'));
} finally {
  await browser.close();
  await g.stop();
}
