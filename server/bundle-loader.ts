import { createHash } from 'node:crypto';
import fs from 'node:fs';
import Module, { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import { writeFileAtomicSync } from '../core/fsutil.js';
import { collectStartupGarbage } from '../core/young-gc.js';
import { CODE_CACHE_FILE, codeCacheFileName } from './code-cache-name.js';

/**
 * dist/server-bundle/main.cjs, what bin/gantry-server runs: loads the server (server.cjs beside
 * it, one CommonJS file built by scripts/build-server.ts) through V8's code cache. Node 20 keeps
 * no compile cache of its own, and compiling the bundle was the largest part of a restart's time
 * to its first answer (README "How it runs in production"); on a first start it also leaves the
 * parser's memory in malloc's heap for good (~3 MiB of the idle's resident set).
 *
 * The build ships a cache beside the bundle: it starts the built server once, with the launcher's
 * node and flags, and keeps the cache it wrote (scripts/build-server.ts). A gateway's first start,
 * and the first start after every update of Gantry, therefore starts as a restart does. Where that
 * cache does not fit (another node, other flags), the functions V8 compiled up to listening
 * (module set-up and start-up) are written to `<data dir>/cache/` once the server listens, and the
 * next start takes them from there, before the shipped one.
 *
 * Both are named after the bundle's SHA-256 (embedded here at build time; code-cache-name.ts). V8
 * checks the rest (its version, the flags it runs with, the data's header and length) and refuses
 * a cache that does not fit: the bundle is then compiled as without one, and a data dir cache
 * written, atomically, so a kill never leaves a torn one. A cache that cannot be read or written
 * costs nothing but the time it would have saved.
 */

declare const __GANTRY_SERVER_SHA256__: string;

const here = path.dirname(fileURLToPath(import.meta.url));
const file = path.join(here, 'server.cjs');

/** The cache's file name: from the bundle's hash, set by the build (run from the sources, taken here). */
function cacheNameOf(source: string): string {
  return codeCacheFileName(
    typeof __GANTRY_SERVER_SHA256__ === 'string'
      ? __GANTRY_SERVER_SHA256__
      : createHash('sha256').update(source).digest('hex'),
  );
}

/** What the server's main module exports (server/main.ts). */
interface ServerExports {
  started?: Promise<{ dataDir: string } | null>;
}

function readCache(file: string): Buffer | undefined {
  try {
    return fs.readFileSync(file);
  } catch {
    return undefined;
  }
}

/**
 * Puts a new cache in the data dir, if V8 wanted one (atomically: a kill leaves the old file or the
 * new), and removes the caches of other builds there: an update of Gantry leaves its predecessor's.
 */
function settleDataDirCache(dir: string, cacheName: string, data: Buffer | undefined): void {
  if (data) writeFileAtomicSync(path.join(dir, cacheName), data);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return; // no data dir cache, none to remove
  }
  for (const name of names) {
    if (name !== cacheName && CODE_CACHE_FILE.test(name)) fs.rmSync(path.join(dir, name), { force: true });
  }
}

/**
 * Compiles the bundle, from the cache when there is one that fits. A function, so neither the
 * source read from disk nor the cache's bytes stay referenced once V8 has what it needs (~4 MiB
 * and ~2.4 MiB that would otherwise stay resident): V8 keeps its own copy of the source.
 */
function compile(cacheDir: string): { script: vm.Script; cacheName: string; cacheWanted: boolean } {
  const source = fs.readFileSync(file, 'utf8');
  const cacheName = cacheNameOf(source);
  // This machine's own cache first: there is one only where the shipped one did not fit.
  const cachedData = readCache(path.join(cacheDir, cacheName)) ?? readCache(path.join(here, cacheName));
  const script = new vm.Script(Module.wrap(source), { filename: file, cachedData });
  return { script, cacheName, cacheWanted: cachedData === undefined || script.cachedDataRejected === true };
}

// The data dir as the server will resolve it (core/config.ts), to find the cache before it runs.
const { script, cacheName, cacheWanted } = compile(
  path.join(path.resolve(process.env.GANTRY_DATA_DIR || './data'), 'cache'),
);
const mod = new Module(file);
mod.filename = file;
const run = script.runInThisContext() as (
  exports: unknown,
  require: NodeJS.Require,
  module: Module,
  filename: string,
  dirname: string,
) => void;
run.call(mod.exports, mod.exports, createRequire(file), mod, file, here);

void (mod.exports as ServerExports).started?.then((started) => {
  if (!started) return;
  // After the listen callback: the answers waiting for it go first.
  setImmediate(() => {
    try {
      settleDataDirCache(
        path.join(started.dataDir, 'cache'),
        cacheName,
        cacheWanted ? script.createCachedData() : undefined,
      );
    } catch (err) {
      console.warn(`Gantry: the code cache could not be written (${(err as Error).message})`);
    }
    collectStartupGarbage();
  });
});
