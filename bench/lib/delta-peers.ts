import fs from 'node:fs';
import path from 'node:path';
import { runMeasured, type MeasuredResult } from './command.js';

/**
 * The delta peers of bench/delta.ts, all Debian tools run on the same image pair: each is made on
 * the "publisher" side (timed, RSS), served by the bench's counting static server, then fetched
 * and applied on the "gateway" side into a fresh output file that is hashed and synced (timed,
 * RSS, CPU; bytes and requests counted by the server).
 */

export interface PeerTool {
  /** Row name in the results (`xdelta3`, `zstd.patch_from`, …). */
  name: string;
  /** The Debian package and binary it needs. */
  pkg: string;
  bin: string;
  /** What the row measures, for the table. */
  describe: string;
}

export const PEERS: PeerTool[] = [
  {
    name: 'zstd19.full',
    pkg: 'zstd',
    bin: 'zstd',
    describe: 'whole v2 as `zstd -19`, streamed and decompressed',
  },
  { name: 'xdelta3', pkg: 'xdelta3', bin: 'xdelta3', describe: '`xdelta3 -e -9 -s v1 v2`, applied to v1' },
  {
    name: 'zstd.patch_from',
    pkg: 'zstd',
    bin: 'zstd',
    describe: '`zstd -19 --long=30 --patch-from=v1 v2`, applied to v1',
  },
  {
    name: 'casync',
    pkg: 'casync',
    bin: 'casync',
    describe: 'casync 16 KiB chunks, store of v2, `casync extract --seed=v1` over HTTP',
  },
];

/** Which peers' binaries are on PATH. */
export function missingPeerPackages(): string[] {
  const found = (bin: string) =>
    (process.env.PATH ?? '/usr/bin:/bin').split(':').some((dir) => dir && fs.existsSync(path.join(dir, bin)));
  return [...new Set(PEERS.filter((p) => !found(p.bin)).map((p) => p.pkg))];
}

export interface PeerMake {
  /** What the gateway fetches (URL paths below the served dir) and their total size. */
  artifactBytes: number;
  seconds: number;
  peakRssMiB: number | null;
  cpuSeconds: number | null;
}

export interface PeerApply {
  seconds: number;
  peakRssMiB: number | null;
  cpuSeconds: number | null;
  /** SHA-256 of what landed in the output file. */
  sha256: string | null;
}

function check(what: string, r: MeasuredResult): MeasuredResult {
  if (r.code !== 0) {
    const tail = r.stderr.trim().split('\n').slice(-4).join(' | ');
    throw new Error(`${what} failed (exit ${r.code}): ${tail}`);
  }
  return r;
}

const TIMEOUT_MS = 60 * 60_000;

/** Size of a file, or of all files below a directory. */
function bytesOf(p: string): number {
  const st = fs.statSync(p);
  if (!st.isDirectory()) return st.size;
  return fs.readdirSync(p).reduce((n, e) => n + bytesOf(path.join(p, e)), 0);
}

/**
 * Makes the peer's artifact from v1 → v2 into `outDir` (served as `<url>/<basename(outDir)>/…`).
 * Returns its size and the cost of making it.
 */
export async function makePeer(name: string, v1: string, v2: string, outDir: string): Promise<PeerMake> {
  fs.mkdirSync(outDir, { recursive: true });
  let r: MeasuredResult;
  let artifact: string;
  switch (name) {
    case 'zstd19.full':
      artifact = path.join(outDir, 'v2.img.zst');
      r = await runMeasured('zstd -q -f -19 "$1" -o "$2"', [v2, artifact], { timeoutMs: TIMEOUT_MS });
      break;
    case 'xdelta3':
      artifact = path.join(outDir, 'v2.xd3');
      r = await runMeasured('xdelta3 -e -9 -f -s "$1" "$2" "$3"', [v1, v2, artifact], {
        timeoutMs: TIMEOUT_MS,
      });
      break;
    case 'zstd.patch_from':
      artifact = path.join(outDir, 'v2.patch.zst');
      r = await runMeasured('zstd -q -f -19 --long=30 --patch-from="$1" "$2" -o "$3"', [v1, v2, artifact], {
        timeoutMs: TIMEOUT_MS,
      });
      break;
    case 'casync':
      artifact = outDir;
      r = await runMeasured(
        'casync make --chunk-size=16384 --store="$1/store" "$1/v2.caibx" "$2"',
        [outDir, v2],
        { timeoutMs: TIMEOUT_MS },
      );
      break;
    default:
      throw new Error(`unknown peer ${name}`);
  }
  check(`${name} make`, r);
  return {
    artifactBytes: bytesOf(artifact),
    seconds: r.seconds,
    peakRssMiB: r.peakRssMiB,
    cpuSeconds: r.cpuSeconds,
  };
}

/**
 * Fetches the peer's artifact from `baseUrl` (the URL of `outDir`) and applies it with v1 as the
 * source into `slot`: request → written, hashed and synced, as a gateway's install would be.
 */
export async function applyPeer(name: string, v1: string, baseUrl: string, slot: string): Promise<PeerApply> {
  fs.rmSync(slot, { force: true });
  // Every script ends with the slot's SHA-256 on stdout and the slot synced.
  const hashAndSync = 'openssl dgst -sha256 -r "$3" | cut -d" " -f1; sync "$3"';
  let script: string;
  switch (name) {
    case 'zstd19.full':
      script = `curl -sSf "$2/v2.img.zst" | zstd -q -d -c > "$3"; ${hashAndSync}`;
      break;
    case 'xdelta3':
      script = `curl -sSf "$2/v2.xd3" | xdelta3 -d -c -s "$1" > "$3"; ${hashAndSync}`;
      break;
    case 'zstd.patch_from':
      script = `curl -sSf "$2/v2.patch.zst" | zstd -q -d -c --long=30 --patch-from="$1" > "$3"; ${hashAndSync}`;
      break;
    case 'casync':
      script = `casync extract --seed="$1" --seed-output=no --store="$2/store" "$2/v2.caibx" "$3"; ${hashAndSync}`;
      break;
    default:
      throw new Error(`unknown peer ${name}`);
  }
  try {
    const r = check(
      `${name} apply`,
      await runMeasured(script, [v1, baseUrl, slot], { timeoutMs: TIMEOUT_MS }),
    );
    const sha256 = /^[0-9a-f]{64}$/m.exec(r.stdout)?.[0] ?? null;
    return { seconds: r.seconds, peakRssMiB: r.peakRssMiB, cpuSeconds: r.cpuSeconds, sha256 };
  } finally {
    fs.rmSync(slot, { force: true });
  }
}
