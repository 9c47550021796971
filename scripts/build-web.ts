import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const WEB_PUBLIC_DIR = path.join(root, 'web', 'public');
const OUTPUTS = ['app.js', 'login.js', 'inspector.js', 'app.css'];

/**
 * Bundles the browser code (web/client, TypeScript) into web/public: app.js (OTA page), login.js,
 * inspector.js and app.css. Served by the gateway itself: it may have no internet, so no CDN.
 * Built in a scratch directory and renamed into place file by file, so a server reading the
 * bundle meanwhile (or a second build running at once) never sees a half-written file.
 */
export async function buildWeb(opts: { outdir?: string; minify?: boolean } = {}): Promise<string> {
  const outdir = opts.outdir ?? WEB_PUBLIC_DIR;
  fs.mkdirSync(path.dirname(outdir), { recursive: true });
  const scratch = fs.mkdtempSync(path.join(path.dirname(outdir), '.public-'));
  try {
    await build({
      absWorkingDir: root,
      // app.css is one stylesheet for every page (its name differs from app.js by extension only).
      entryPoints: [
        { in: 'web/client/app.ts', out: 'app' },
        { in: 'web/client/login.ts', out: 'login' },
        { in: 'web/client/inspector/main.ts', out: 'inspector' },
        { in: 'web/client/styles.css', out: 'app' },
      ],
      outdir: scratch,
      bundle: true,
      format: 'esm',
      target: ['es2022'],
      platform: 'browser',
      minify: opts.minify ?? true,
      sourcemap: true,
      legalComments: 'none',
      logLevel: 'warning',
    });
    fs.mkdirSync(outdir, { recursive: true });
    // Maps first, then the files that name them.
    const files = fs
      .readdirSync(scratch)
      .sort((a, b) => Number(b.endsWith('.map')) - Number(a.endsWith('.map')));
    for (const f of files) fs.renameSync(path.join(scratch, f), path.join(outdir, f));
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  return outdir;
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : fs.statSync(p).mtimeMs);
  }
  return newest;
}

/** Whether web/public holds a bundle at least as new as every browser source and this script. */
export function webBuildIsFresh(outdir = WEB_PUBLIC_DIR): boolean {
  try {
    const built = Math.min(...OUTPUTS.map((f) => fs.statSync(path.join(outdir, f)).mtimeMs));
    const sources = Math.max(
      newestMtime(path.join(root, 'web', 'client')),
      fs.statSync(fileURLToPath(import.meta.url)).mtimeMs,
    );
    return built >= sources;
  } catch {
    return false;
  }
}

/** Builds unless the bundle is fresh (tests call this; `npm test` has built it already). */
export async function ensureWebBuilt(): Promise<void> {
  if (!webBuildIsFresh()) await buildWeb();
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const started = performance.now();
  buildWeb({ minify: !process.argv.includes('--dev') }).then(
    (outdir) =>
      console.log(
        `web bundle built in ${Math.round(performance.now() - started)} ms: ${path.relative(root, outdir)}`,
      ),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
