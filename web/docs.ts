import { html } from './html.js';

type Doc = { info?: { title?: string; description?: string }; paths?: Record<string, Record<string, Op>> };
type Op = { summary?: string; description?: string; tags?: string[] };

/** A plain, dependency-free reference page of the OpenAPI document (no CDN on a gateway). */
export function docsPage(openapi: Record<string, unknown>): string {
  const doc = openapi as Doc;
  const rows = Object.entries(doc.paths ?? {}).flatMap(([path, ops]) =>
    Object.entries(ops).map(
      ([method, op]) =>
        html`<tr>
          <td><code>${method.toUpperCase()}</code></td>
          <td><code>${path}</code></td>
          <td>${op.summary ?? ''}</td>
          <td>${op.description ?? ''}</td>
        </tr>`,
    ),
  );
  return html`<!DOCTYPE html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <title>${doc.info?.title ?? 'API'} reference</title>
        <style>
          body {
            font:
              15px system-ui,
              sans-serif;
            margin: 2rem;
            max-width: 1100px;
          }
          table {
            border-collapse: collapse;
            width: 100%;
          }
          td,
          th {
            border-bottom: 1px solid #ddd;
            padding: 0.4rem;
            text-align: left;
            vertical-align: top;
          }
          code {
            font-size: 13px;
          }
        </style>
      </head>
      <body>
        <h1>${doc.info?.title ?? 'API'}</h1>
        <p>${doc.info?.description ?? ''}</p>
        <p>
          Machine-readable: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a> (OpenAPI 3.1). Typed
          clients: tRPC at <code>/api/trpc</code>.
        </p>
        <table>
          <thead>
            <tr>
              <th>Method</th>
              <th>Path</th>
              <th>Summary</th>
              <th>Access</th>
            </tr>
          </thead>
          <tbody>
            ${rows}
          </tbody>
        </table>
      </body>
    </html>`.toString();
}
