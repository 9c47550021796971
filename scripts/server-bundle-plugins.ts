import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Plugin } from 'esbuild';

/**
 * The esbuild plugins that decide what the server bundle (scripts/build-server.ts) holds, and what
 * of it an idle server leaves unloaded until first used: packages in files of their own, JSON beside
 * the bundle, one shim per built-in module, stand-ins for modules required at a file's top but
 * called only later, `debug` only when asked for, zod's English locale alone. Each says what it
 * bought (README "How it runs in production").
 */

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

/**
 * Packages the server only imports dynamically, and rarely: socket.io (the first terminal client on
 * `/ota-update`), jszip (a ZIP upload), the VCDIFF decoder (a hop delta with VCDIFF patches),
 * tar-stream (a debug bundle, a component's archive, the demo feed's bundles). Their
 * `vendor/` file names. Not tuf-js (20 KB): feed/fetch.ts throws its DownloadHTTPError, which tuf-js
 * tests with instanceof, so the two must share one copy of the class.
 */
export const LAZY_PACKAGES: Readonly<Record<string, string>> = {
  'socket.io': 'socket.io.cjs',
  jszip: 'jszip.cjs',
  '@ably/vcdiff-decoder': 'vcdiff-decoder.cjs',
  'tar-stream': 'tar-stream.cjs',
};

/**
 * Sends a dynamic import of a LAZY_PACKAGES package to its `vendor/` file. The server is one
 * CommonJS script run by V8 (server/bundle-loader.ts), so the import must become a `require` (the
 * build keeps no `import()`: a script compiled by node:vm has no way to load an ES module).
 */
export const lazyPackagesToVendor: Plugin = {
  name: 'lazy-packages-to-vendor',
  setup(b) {
    const names = Object.keys(LAZY_PACKAGES).map((n) => n.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'));
    b.onResolve({ filter: new RegExp(`^(${names.join('|')})$`) }, (args) =>
      args.kind === 'dynamic-import'
        ? { path: `./vendor/${LAZY_PACKAGES[args.path]}`, external: true }
        : undefined,
    );
  },
};

/**
 * The JSON files of packages stay JSON files beside the server, in `vendor/json/` (their paths
 * under node_modules), required from there. Bundled, each would be JavaScript source, resident like
 * the rest; Node parses a JSON file without keeping its text. The large ones: two copies of mime-db
 * (express's and multer's, 287 KB) and iconv-lite's code-page tables (Japanese, Chinese, Korean:
 * ~420 KB once written in ASCII, loaded only for a request body in such a code page).
 */
export function packageJsonToVendor(copied: Set<string>): Plugin {
  const modules = path.join(root, 'node_modules');
  return {
    name: 'package-json-to-vendor',
    setup(b) {
      b.onResolve({ filter: /^\.\.?\/.*\.json$/ }, (args) => {
        const file = path.resolve(args.resolveDir, args.path);
        if (!file.startsWith(`${modules}${path.sep}`)) return undefined;
        const relative = path.relative(modules, file);
        copied.add(relative);
        return { path: `./vendor/json/${relative.split(path.sep).join('/')}`, external: true };
      });
    },
  };
}

/**
 * Modules an idle server never calls, loaded on first use. Node keeps each module it loaded (its
 * compiled code, its objects; for a built-in, the pages of the `node` binary its source sits in),
 * and these are loaded at start-up by the packages and files that require them at their top, to be
 * called only later:
 * - LAZY_BUILTINS: `https` and `tls` (ws's client side, the feed client), `zlib` (a compressed
 *   request body, ws's per-message deflate, compressed bundles) and `fs/promises` (downloads and
 *   lending). Loaded by a bare `node`, the four add ~0.8 MiB resident.
 * - LAZY_PACKAGES_REQUIRED: `mime-types`, which Express's `res.json` and `res.type`, send, accepts
 *   and type-is require (and multer's type-is, its older copy): it loads mime-db, ~2,500 types, as it
 *   loads. The server's JSON answers to other requests than GETs are written without it
 *   (rest-compat/json-reply.ts); a GET's through Express, a static file or the API reference load it.
 *
 * Each is replaced by a stand-in: an object with one accessor per export (the names as the build's
 * node has them), which requires the module on first access. So a file may import them by default
 * (`import zlib from 'node:zlib'`) but not by name: a named import fails the build (no matching
 * export), as it would bind the export at start-up. `test/integration/server-bundle.test.ts` checks
 * that an idle server has not loaded them.
 */
export const LAZY_BUILTINS = ['fs/promises', 'https', 'tls', 'zlib'] as const;
export const LAZY_PACKAGES_REQUIRED = ['mime-types'] as const;

/** The CommonJS source of a stand-in for the module `specifier` requires, whose exports are `real`'s. */
function standInSource(specifier: string, real: object): string {
  const keys = Object.getOwnPropertyNames(real).map((key) => [
    key,
    Object.getOwnPropertyDescriptor(real, key)!.enumerable === true,
  ]);
  return `let real;
const load = () => real || (real = require(${JSON.stringify(specifier)}));
for (const [key, enumerable] of ${JSON.stringify(keys)}) {
  Object.defineProperty(module.exports, key, {
    enumerable,
    configurable: true,
    get: () => load()[key],
    set: (value) => { load()[key] = value; },
  });
}
`;
}

/** The stand-in for a LAZY_BUILTINS module. */
export function lazyBuiltinSource(name: string): string {
  return standInSource(`node:${name}`, require(`node:${name}`) as object);
}

const lazyBuiltinName = new RegExp(`^(?:node:)?(${LAZY_BUILTINS.join('|')})$`);

/** A package's `require` of a LAZY_PACKAGES_REQUIRED package, sent to a stand-in for the copy it resolves to. */
export const packagesRequiredOnFirstUse: Plugin = {
  name: 'packages-required-on-first-use',
  setup(b) {
    const names = new RegExp(`^(${LAZY_PACKAGES_REQUIRED.join('|')})$`);
    b.onResolve({ filter: names }, async (args) => {
      // The stand-in's own require, resolved below through this very hook: the real package.
      if (args.pluginData === 'stand-in') return undefined;
      const real = await b.resolve(args.path, {
        kind: args.kind,
        resolveDir: args.resolveDir,
        importer: args.importer,
        pluginData: 'stand-in',
      });
      if (real.errors.length > 0) return { errors: real.errors };
      // Relative, so the build's own directory is not written into the bundle.
      return {
        path: `./${path.relative(root, real.path).split(path.sep).join('/')}`,
        namespace: 'package-stand-in',
      };
    });
    b.onLoad({ filter: /.*/, namespace: 'package-stand-in' }, (args) => ({
      contents: standInSource(args.path, require(path.join(root, args.path)) as object),
      loader: 'js',
      resolveDir: root,
    }));
  },
};

/**
 * Node's built-in modules, each through one shim module. A default import of a CommonJS module
 * (`import fs from 'node:fs'`) makes esbuild wrap it at every importing file (`__toESM`), which
 * copies each of its exports onto a new object as a getter: 45 files import node:path, 44 node:fs,
 * ~5,700 getter closures resident at idle (heap snapshot). The shim takes the module once, with a
 * plain require: default imports link to that value directly, named imports go through one
 * namespace of getters per built-in. The LAZY_BUILTINS' shims take their stand-in instead, and a
 * package's `require` of one is sent to the stand-in too.
 */
export const builtinsThroughShims: Plugin = {
  name: 'builtins-through-shims',
  setup(b) {
    b.onResolve({ filter: lazyBuiltinName }, (args) =>
      args.kind === 'require-call' && args.namespace !== 'lazy-builtin'
        ? { path: `node:${lazyBuiltinName.exec(args.path)![1]!}`, namespace: 'lazy-builtin' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, (args) => ({
      contents: lazyBuiltinSource(args.path.slice('node:'.length)),
      loader: 'js',
      resolveDir: root,
    }));
    b.onResolve({ filter: /^node:[\w/]+$/ }, (args) =>
      args.kind === 'import-statement' && args.namespace === 'file'
        ? { path: args.path, namespace: 'node-builtin' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'node-builtin' }, (args) => {
      const name = JSON.stringify(args.path);
      return {
        contents: lazyBuiltinName.test(args.path)
          ? `const m = require(${name});\nexport default m;\n`
          : `const m = require(${name});\nexport default m;\nexport * from ${name};\n`,
        loader: 'js',
        resolveDir: root,
      };
    });
  },
};

/**
 * The `debug` package, as Express, its router, body-parser, finalhandler and send use it:
 * `require('debug')(namespace)` once as they load, then calls that print nothing unless the
 * namespace is enabled by the `DEBUG` environment variable (read once, at start-up). Loaded, it
 * makes a logger per namespace and asks `tty` and supports-color about the terminal at start-up
 * (`tty` alone: +0.27 MiB resident). So the server takes the real package when `DEBUG` is set at
 * its start, and otherwise loggers that are off, as the real ones would be.
 */
export const debugOnlyWhenAsked: Plugin = {
  name: 'debug-only-when-asked',
  setup(b) {
    b.onResolve({ filter: /^debug$/ }, (args) =>
      args.namespace === 'debug-when-asked' ? undefined : { path: 'debug', namespace: 'debug-when-asked' },
    );
    b.onLoad({ filter: /.*/, namespace: 'debug-when-asked' }, () => ({
      contents: `function off(namespace) {
  const logger = () => {};
  logger.namespace = namespace;
  logger.enabled = false;
  logger.useColors = false;
  logger.log = () => {};
  logger.extend = (name, delimiter = ':') => off(namespace + delimiter + name);
  logger.destroy = () => false;
  return logger;
}
off.enabled = () => false;
module.exports = process.env.DEBUG ? require('debug') : off;
`,
      loader: 'js',
      resolveDir: root,
    }));
  },
};

/**
 * zod's locales, English alone. zod 4 exports its ~60 locales as one namespace (`z.locales`),
 * 0.30 of the 2.20 MB server bundle, and uses English unless told otherwise (`z.config`, which
 * Gantry never calls: its error messages are its own, in English). The namespace keeps `en`, so a
 * `z.locales.en()` still works; any other locale would be undefined, which the server-bundle test
 * makes sure no code asks for.
 */
export const zodEnglishOnly: Plugin = {
  name: 'zod-english-only',
  setup(b) {
    b.onLoad({ filter: /[\\/]node_modules[\\/]zod[\\/]v4[\\/]locales[\\/]index\.js$/ }, (args) => ({
      contents: 'export { default as en } from "./en.js";\n',
      loader: 'js',
      resolveDir: path.dirname(args.path),
    }));
  },
};
