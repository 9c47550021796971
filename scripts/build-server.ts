import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type BuildOptions } from 'esbuild';
import { codeCacheFileName } from '../server/code-cache-name.js';
import {
  builtinsThroughShims,
  debugOnlyWhenAsked,
  LAZY_PACKAGES,
  lazyPackagesToVendor,
  packageJsonToVendor,
  packagesRequiredOnFirstUse,
  zodEnglishOnly,
} from './server-bundle-plugins.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/**
 * Two levels below the repository like dist/server/, so the paths the code finds from its own
 * location (drizzle/migrations, web/public: `../../…`) resolve the same from the bundle.
 */
export const SERVER_BUNDLE_DIR = path.join(root, 'dist', 'server-bundle');
/** The production launcher: the node and the flags the server runs with. */
const LAUNCHER = path.join(root, 'bin', 'gantry-server');

/** The launcher's default node flags (what `${GANTRY_NODE_FLAGS-…}` in bin/gantry-server falls back to). */
export function launcherFlags(): string {
  const m = /\$\{GANTRY_NODE_FLAGS-([^}]*)\}/.exec(fs.readFileSync(LAUNCHER, 'utf8'));
  if (!m) throw new Error('bin/gantry-server: its default node flags were not found');
  return m[1]!;
}

/** The malloc settings the launcher exports (`: "${NAME:=value}"`). */
export function launcherMallocEnv(): Record<string, string> {
  const text = fs.readFileSync(LAUNCHER, 'utf8');
  const env = Object.fromEntries(
    [...text.matchAll(/^: "\$\{(\w+):=([^}]*)\}"$/gm)].map((m) => [m[1]!, m[2]!]),
  );
  if (!env.MALLOC_ARENA_MAX) throw new Error('bin/gantry-server: its malloc settings were not found');
  return env;
}

/** Index of the first character above U+00FF, or -1. */
export function firstWideChar(text: string): number {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0xff) return i;
  return -1;
}

/** For a CommonJS build of sources that ask `import.meta.url`: answered from `__filename`. */
const importMetaUrlFromFilename = {
  define: { 'import.meta.url': '__gantryImportMetaUrl' },
  banner: { js: "var __gantryImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
} satisfies BuildOptions;

/** Reads a file the build wrote and refuses it if V8 could not keep it as one-byte source. */
function assertLatin1(file: string): string {
  const source = fs.readFileSync(file, 'utf8');
  // One character above U+00FF makes V8 keep the whole source as UTF-16, twice the bytes.
  const wide = firstWideChar(source);
  if (wide >= 0) {
    throw new Error(
      `${path.basename(file)} holds a non-Latin-1 character (${JSON.stringify(source.slice(Math.max(0, wide - 60), wide + 10))}): write it as an escape or entity`,
    );
  }
  return source;
}

/**
 * Starts the program built in `dir` once, as bin/gantry-server starts the server (its node: the
 * `GANTRY_NODE` or the one running the build; its flags: `GANTRY_NODE_FLAGS` or the launcher's),
 * on a throwaway data dir, and keeps the V8 code cache its loader writes there once it listens,
 * beside the bundle as `cacheName`: server/bundle-loader.ts takes it on a first start. V8 accepts
 * a cache only from its own version and flags; a gateway whose node differs from the build's
 * compiles on its first start, as without a shipped cache, and keeps its own.
 *
 * The start sees none of the builder's GANTRY_* settings (a GANTRY_DEVICE=linux there must not
 * reach the block devices): the simulator, no feed, port 0 on the loopback. A start that fails
 * leaves the build without a shipped cache, said on the console: the server works the same, its
 * first start is only slower.
 */
async function shipCodeCache(dir: string, cacheName: string, log: (line: string) => void): Promise<void> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-build-cache-'));
  const written = path.join(dataDir, 'cache', cacheName);
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('GANTRY_')) env[key] = value;
  const flags = (process.env.GANTRY_NODE_FLAGS ?? launcherFlags()).split(/\s+/).filter(Boolean);
  const child = spawn(process.env.GANTRY_NODE || process.execPath, [...flags, path.join(dir, 'main.cjs')], {
    cwd: dataDir,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...env, GANTRY_DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', GANTRY_DEMO_FEED: 'off' },
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  try {
    const deadline = Date.now() + 60_000;
    while (!fs.existsSync(written)) {
      if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
        log(
          `no code cache shipped with ${path.basename(dir)}: its start ${child.exitCode !== null ? `exited (${child.exitCode})` : 'did not write one'} ${stderr.trim()}`,
        );
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    fs.copyFileSync(written, path.join(dir, cacheName));
  } finally {
    child.kill('SIGTERM');
    await exited;
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * Bundles the server (server/main.ts and everything it imports, node_modules included) into one
 * CommonJS file, dist/server-bundle/server.cjs, and its loader (server/bundle-loader.ts) into
 * dist/server-bundle/main.cjs, what bin/gantry-server runs. Measured on this machine kind (npm run
 * bench, README "How it runs in production"): the per-file ES modules of dist/ cost ~700 ms of CPU
 * to load and resolve at start-up against ~370 ms for one file, and V8 keeps every module's source
 * text resident for lazy compilation: ~11 MiB for dist/ and node_modules (two bytes per character
 * for any file with one non-Latin-1 character in a comment), ~4 MiB for this bundle without
 * comments and indentation (kept ASCII: esbuild escapes strings; tagged templates must hold none).
 *
 * CommonJS, not an ES module: V8 can take a CommonJS file's compiled code from a cache (the build
 * ships one beside the bundle, made by starting it once: shipCodeCache), which Node 20 offers no way to do for ES modules, and one script
 * starts faster than an ES module graph even without it (restart to first answer, interleaved
 * runs: ES module bundle 774 ms, CommonJS 586, CommonJS with the cache 501, bare Express 338).
 * What a server only needs on rare occasions is imported dynamically, so it is not evaluated at
 * start-up. Its source would still be resident in one bundle, as V8 keeps a script's whole source:
 * the packages among it (LAZY_PACKAGES) are each built into their own file in `vendor/`, which the
 * server loads on their first import (0.95 of 3.97 MB: the idle server's source string shrinks by as
 * much). Each is whole in its file: a package shared with the server (socket.io's `ws`) is in both.
 * Identifiers are not renamed, so stack traces keep their function names; the source map, beside
 * the bundle, is read only by `node --enable-source-maps`.
 *
 * `entry` builds another program the same way (the foundation bench's dependency floor); the
 * packages the bundle holds are returned, by name. `log` hears what the build could not do.
 */
export async function buildServer(
  outdir = SERVER_BUNDLE_DIR,
  entry = 'server/main.ts',
  log: (line: string) => void = console.warn,
): Promise<{ outdir: string; packages: string[] }> {
  const scratch = `${outdir}.tmp-${process.pid}`;
  fs.rmSync(scratch, { recursive: true, force: true });
  const common: BuildOptions = {
    absWorkingDir: root,
    bundle: true,
    platform: 'node',
    target: ['node20'],
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'none',
    charset: 'ascii',
    logLevel: 'warning',
  };
  const jsonFiles = new Set<string>();
  let packages: string[];
  try {
    const main = await build({
      ...common,
      entryPoints: [{ in: entry, out: 'server' }],
      outdir: scratch,
      outExtension: { '.js': '.cjs' },
      format: 'cjs',
      // A native addon: loaded from node_modules by its own `bindings` lookup.
      external: ['better-sqlite3'],
      // Code that finds files from its own location (drizzle/migrations, web/public) asks
      // import.meta.url, which a CommonJS file answers from __filename.
      ...importMetaUrlFromFilename,
      sourcemap: 'external',
      supported: { 'dynamic-import': false },
      plugins: [
        lazyPackagesToVendor,
        packageJsonToVendor(jsonFiles),
        builtinsThroughShims,
        packagesRequiredOnFirstUse,
        debugOnlyWhenAsked,
        zodEnglishOnly,
      ],
      metafile: true,
    });
    const bundled = Object.keys(Object.values(main.metafile.outputs).find((o) => o.entryPoint)!.inputs);
    for (const name of Object.keys(LAZY_PACKAGES)) {
      // A static import somewhere would put the package in the server as well.
      if (bundled.some((input) => input.startsWith(`node_modules/${name}/`)))
        throw new Error(`${name} is imported statically somewhere: it belongs in vendor/ only`);
    }
    packages = [
      ...new Set(bundled.flatMap((input) => /^node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input)?.[1] ?? [])),
    ].sort();
    const source = assertLatin1(path.join(scratch, 'server.cjs'));
    for (const relative of jsonFiles) {
      const to = path.join(scratch, 'vendor', 'json', relative);
      fs.mkdirSync(path.dirname(to), { recursive: true });
      fs.copyFileSync(path.join(root, 'node_modules', relative), to);
    }
    for (const [name, file] of Object.entries(LAZY_PACKAGES)) {
      await build({
        ...common,
        stdin: {
          contents: `module.exports = require(${JSON.stringify(name)});`,
          resolveDir: root,
          loader: 'js',
        },
        outfile: path.join(scratch, 'vendor', file),
        format: 'cjs',
        sourcemap: 'external',
      });
      assertLatin1(path.join(scratch, 'vendor', file));
    }
    const sha256 = createHash('sha256').update(source).digest('hex');
    await build({
      ...common,
      entryPoints: [{ in: 'server/bundle-loader.ts', out: 'main' }],
      outdir: scratch,
      outExtension: { '.js': '.cjs' },
      // CommonJS too: an ES module as node's main program loads node's ES module loader (13 more
      // built-in modules, +0.85 MiB resident), which nothing else in the server needs.
      format: 'cjs',
      ...importMetaUrlFromFilename,
      // The code cache is named after the bundle it belongs to.
      define: {
        ...importMetaUrlFromFilename.define,
        __GANTRY_SERVER_SHA256__: JSON.stringify(sha256),
      },
    });
    await shipCodeCache(scratch, codeCacheFileName(sha256), log);
    fs.rmSync(outdir, { recursive: true, force: true });
    fs.renameSync(scratch, outdir);
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  return { outdir, packages };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const t0 = performance.now();
  const { outdir } = await buildServer();
  console.log(
    `server bundle built in ${Math.round(performance.now() - t0)} ms: ${path.relative(root, outdir)}`,
  );
}
