/**
 * The dynamic delta path on an image pair, without a gateway (delta/dynamic/measure.ts):
 *
 *   npx tsx scripts/dynamic-measure.ts OLD.img NEW.img [ZSTD19_BYTES] [KEEP_DIR]
 *
 * Prints one JSON line; with ZSTD19_BYTES (the size of `zstd -19` of NEW.img) also the wire bytes
 * as a share of it, the yardstick. With KEEP_DIR the index and pack are kept there and
 * reused by the next run, which then measures the gateway's side alone (peak RSS included). Run it
 * with the server's memory settings (bin/gantry-server) for RSS figures that mean something:
 *
 *   MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=131072 \
 *     node --max-semi-space-size=2 --expose-gc --import tsx scripts/dynamic-measure.ts ...
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { measureDynamicPair } from '../delta/dynamic/measure.js';

const [v1, v2, zstd19, keepDir] = process.argv.slice(2);
if (!v1 || !v2) {
  console.error('usage: tsx scripts/dynamic-measure.ts OLD.img NEW.img [ZSTD19_BYTES]');
  process.exit(2);
}
const workDir = keepDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-dynamic-measure-'));
fs.mkdirSync(workDir, { recursive: true });
try {
  const m = await measureDynamicPair({ v1, v2, workDir, reuse: keepDir !== undefined });
  const share = zstd19
    ? { wire_pct_of_zstd19: Number(((m.wireBytes / Number(zstd19)) * 100).toFixed(2)) }
    : {};
  console.log(
    JSON.stringify({ ...m, ...share, peak_rss_mib: Math.round(process.resourceUsage().maxRSS / 1024) }),
  );
} finally {
  if (!keepDir) fs.rmSync(workDir, { recursive: true, force: true });
}
