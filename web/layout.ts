import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Response } from 'express';
import { html, type SafeHtml } from './html.js';

/**
 * Pages load only this server's own script and style files: no inline script, no inline style, no
 * eval, nothing from elsewhere. A string that slipped through escaping still could not run.
 * `connect-src 'self'` also covers ws:/wss: to this host (CSP level 3).
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Where scripts/build-web.ts writes the bundles: web/public beside this file, or the source tree's from dist/. */
export function webPublicDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.join(here, 'public'), path.resolve(here, '..', '..', 'web', 'public')];
  return candidates.find((dir) => fs.existsSync(path.join(dir, 'app.js'))) ?? candidates[0]!;
}

/** `/assets/<name>?v=<mtime>`: a rebuilt bundle is fetched again, an unchanged one revalidates. */
export function assetUrl(name: string): string {
  let version = '0';
  try {
    version = String(Math.floor(fs.statSync(path.join(webPublicDir(), name)).mtimeMs));
  } catch {
    /* not built: the page still renders, the script answers 404 */
  }
  return `/assets/${name}?v=${version}`;
}

export function sendPage(res: Response, status: number, page: SafeHtml): void {
  res.status(status);
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Content-Security-Policy', CONTENT_SECURITY_POLICY);
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Frame-Options', 'DENY');
  res.send(page.toString());
}

/** The common document around every page: one stylesheet, module scripts only. */
export function documentShell(opts: { title: string; scripts: string[]; body: SafeHtml }): SafeHtml {
  return html`<!DOCTYPE html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${opts.title}</title>
        <link rel="stylesheet" href="${assetUrl('app.css')}" />
        ${opts.scripts.map((s) => html`<script type="module" src="${assetUrl(s)}"></script>`)}
      </head>
      <body>
        ${opts.body}
      </body>
    </html>`;
}

/** A plain page for refusals (403, 404) and failures: no script needed to read it. */
export function messagePage(
  title: string,
  message: string,
  link?: { href: string; label: string },
): SafeHtml {
  return documentShell({
    title,
    scripts: [],
    body: html`<main id="main" class="message-page">
      <h1>${title}</h1>
      <p>${message}</p>
      ${link ? html`<p><a href="${link.href}">${link.label}</a></p>` : ''}
    </main>`,
  });
}
