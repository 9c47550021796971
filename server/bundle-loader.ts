import { createHash } from 'node:crypto';
import fs from 'node:fs';
import Module, { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import { writeFileAtomicSync } from '../core/fsutil.js';
import { collectStartupGarbage } from '../core/young-gc.js';

/**
 * dist/server-bundle/main.js, what bin/gantry-server runs: loads the server (server.cjs beside
 * it, one CommonJS file built by scripts/build-server.ts) through V8's code cache. Node 20 keeps
 * no compile cache of its own, and compiling the bundle was the largest part of a restart's time
 * to its first answer (README "How it runs in production"). Once the server listens, the functions
 * V8 compiled so far (module set-up and start-up) are written to `<data dir>/cache/`, and the next
 * start takes them from there instead of compiling them again.
 *
 * The cache is named by the SHA-256 of the bundle it was made from (embedded here at build time),
 * so a cache is only ever offered to the very source it was compiled from (V8 itself compares
 * only the source's length). V8 checks the rest (its version, the flags it runs with, the data's
 * header and length) and refuses a cache that does not fit: the bundle is then compiled as without
 * one, and a new cache written, atomically, so a kill never leaves a torn one. A cache that cannot
 * be read or written costs nothing but the time it would have saved.
 */

declare const __GANTRY_SERVER_SHA256__: string;

const here = path.dirname(fileURLToPath(import.meta.url));
const file = path.join(here, 'server.cjs');

/** The cache's file name: the bundle's hash, set by the build (run from the sources, taken here). */
function cacheNameOf(source: string): string {
  const digest =
    typeof __GANTRY_SERVER_SHA256__ === 'string'
      ? __GANTRY_SERVER_SHA256__
      : createHash('sha256').update(source).digest('hex');
  return `server-${digest.slice(0, 32)}.v8cache`;
}

/** What the server's main module exports (server/main.ts). */
interface ServerExports {
  started?: Promise<{ dataDir: string } | null>;
}

function readCache(dataDir: string, cacheName: string): Buffer | undefined {
  try {
    return fs.readFileSync(path.join(dataDir, 'cache', cacheName));
  } catch {
    return undefined;
  }
}

/** Puts this cache in place (atomically: a kill leaves the old file or the new) and removes older builds'. */
function writeCache(dataDir: string, cacheName: string, data: Buffer): void {
  const dir = path.join(dataDir, 'cache');
  writeFileAtomicSync(path.join(dir, cacheName), data);
  for (const name of fs.readdirSync(dir)) {
    if (name !== cacheName && /^server-[0-9a-f]+\.v8cache$/.test(name))
      fs.rmSync(path.join(dir, name), { force: true });
  }
}

/**
 * Compiles the bundle, from the cache when there is one that fits. A function, so neither the
 * source read from disk nor the cache's bytes stay referenced once V8 has what it needs (~4 MiB
 * and ~2.4 MiB that would otherwise stay resident): V8 keeps its own copy of the source.
 */
function compile(): { script: vm.Script; cacheName: string; cacheWanted: boolean } {
  const source = fs.readFileSync(file, 'utf8');
  const cacheName = cacheNameOf(source);
  // The data dir as the server will resolve it (core/config.ts), to find the cache before it runs.
  const cachedData = readCache(path.resolve(process.env.GANTRY_DATA_DIR || './data'), cacheName);
  const script = new vm.Script(Module.wrap(source), { filename: file, cachedData });
  return { script, cacheName, cacheWanted: cachedData === undefined || script.cachedDataRejected === true };
}

const { script, cacheName, cacheWanted } = compile();
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
    if (cacheWanted) {
      try {
        writeCache(started.dataDir, cacheName, script.createCachedData());
      } catch (err) {
        console.warn(`Gantry: the code cache could not be written (${(err as Error).message})`);
      }
    }
    collectStartupGarbage();
  });
});
