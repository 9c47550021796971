/**
 * The file name of a server bundle's V8 code cache, from the SHA-256 (hex) of the bundle it was
 * made from: the build names the cache it ships beside the bundle so (scripts/build-server.ts),
 * and the loader (server/bundle-loader.ts) looks for that name, in the data dir and beside the
 * bundle. A cache is so only ever offered to the very source it was compiled from (V8 itself
 * compares only the source's length).
 */
export function codeCacheFileName(bundleSha256: string): string {
  return `server-${bundleSha256.slice(0, 32)}.v8cache`;
}

/** Names of the caches `codeCacheFileName` gives, of any build. */
export const CODE_CACHE_FILE = /^server-[0-9a-f]+\.v8cache$/;
