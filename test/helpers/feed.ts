import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { KeyObject } from 'node:crypto';
import { buildBundle, type BuildBundleOptions, type PayloadInput } from '../../bundle/build.js';
import { generateKeyPair, parsePrivateKey } from '../../bundle/keys.js';
import {
  BUNDLE_FORMAT_V2,
  type DeltaRef,
  type DynamicRef,
  type ManifestFields,
} from '../../bundle/manifest.js';
import { buildDynamicArtifacts } from '../../delta/dynamic/publish.js';
import { buildHopDelta } from '../../delta/hop/build.js';
import { addTarget, initRepository, refreshTimestamp } from '../../feed/repository.js';
import { serveDir, tempDir, type Override, type StaticServer } from '../feed/helpers.js';

export interface TestFeed {
  dir: string;
  server: StaticServer;
  /** Env for startTestGantry: feed URL and trusted root. */
  env: Record<string, string>;
  signingKey: KeyObject;
  publicKeyPem: string;
  /**
   * Builds a bundle of `image` signed with the vendor key (or `opts.signingKey`, one a gateway may not
   * trust) and publishes it; returns the bundle path.
   */
  publish(
    fields: Partial<ManifestFields> & { version: string },
    image: Buffer | string,
    opts?: PublishOptions,
  ): Promise<string>;
  /** Where bundles are built: artifacts a v2 manifest names are published from here. */
  workDir: string;
  /** Re-signs timestamp.json so that it expired yesterday (a frozen feed). */
  expireTimestamp(): void;
  /** URL path of a published bundle on the feed server. */
  targetUrlPath(bundlePath: string): string;
  /** Puts the vendor's public key where a Gantry data dir trusts it (dev fallback). */
  trustIn(dataDir: string): void;
  /** Stops the server and removes the feed and the bundles built for it. */
  close(): Promise<void>;
}

export interface PublishOptions {
  signingKey?: KeyObject;
  /** More payloads beside rootfs.img (multi-component bundles). */
  extraPayloads?: PayloadInput[];
  /** Bundle format options (v2, compression, hop deltas built into `workDir`). */
  build?: Pick<BuildBundleOptions, 'format' | 'compression' | 'deltas'>;
  /**
   * A v2 bundle (zstd) with the image also published as content-defined chunks (index and pack
   * feed targets beside the bundle, named `<bundle>.gcix` / `<bundle>.pack`).
   */
  dynamic?: boolean;
  /** A v2 bundle with hop deltas from these earlier images. */
  hopFrom?: { version: string; image: Buffer }[];
}

export function randomImage(bytes: number): Buffer {
  return randomBytes(bytes);
}

/** A TUF feed on 127.0.0.1 with a vendor signing key, as the publishing tool makes one. */
export async function startTestFeed(): Promise<TestFeed> {
  const dir = tempDir('gantry-feed-');
  const work = tempDir('gantry-bundles-');
  const tufKey = parsePrivateKey(generateKeyPair().privateKeyPem);
  const vendor = generateKeyPair();
  const signingKey = parsePrivateKey(vendor.privateKeyPem);
  initRepository(dir, { keys: tufKey, expiresDays: 30 });
  const server = await serveDir(dir);
  let n = 0;
  return {
    dir,
    server,
    signingKey,
    workDir: work,
    publicKeyPem: vendor.publicKeyPem,
    env: { GANTRY_FEED_URL: server.url, GANTRY_FEED_ROOT: path.join(dir, 'root.json') },
    async publish(fields, image, opts) {
      const imagePath = typeof image === 'string' ? image : path.join(work, `image-${++n}.img`);
      if (typeof image !== 'string') fs.writeFileSync(imagePath, image);
      const base = `gantry-${fields.version}-${n}`;
      const out = path.join(work, `${base}.bundle`);
      const v2 = opts?.dynamic === true || (opts?.hopFrom?.length ?? 0) > 0;
      let dynamic: Record<string, DynamicRef> | undefined;
      if (opts?.dynamic) {
        const built = await buildDynamicArtifacts(imagePath, {
          indexFile: path.join(work, `${base}.gcix`),
          packFile: path.join(work, `${base}.pack`),
        });
        dynamic = {
          'rootfs.img': {
            index: { target: `${base}.gcix`, size: built.index.size, sha256: built.index.sha256 },
            pack: { target: `${base}.pack`, size: built.pack.size, sha256: built.pack.sha256 },
          },
        };
      }
      const deltas: DeltaRef[] = [];
      for (const [k, from] of (opts?.hopFrom ?? []).entries()) {
        const source = path.join(work, `${base}.source-${k}.img`);
        fs.writeFileSync(source, from.image);
        const target = `${base}.from-${from.version}.hop`;
        const built = await buildHopDelta({ source, target: imagePath, out: path.join(work, target) });
        deltas.push({
          source_sha256: built.source.sha256,
          source_version: from.version,
          artifact: { target, size: built.size, sha256: built.sha256 },
        });
      }
      await buildBundle({
        manifestFields: {
          type: 'security',
          severity: 'critical',
          compatible: ['Univa-GW-Pro'],
          kernel: '6.1.40-LTS',
          released: '2025-03-15',
          description: `Gantry test update ${fields.version}`,
          changelog: ['Fixed CVE-2025-1234'],
          ...fields,
        },
        payloadFiles: [
          { kind: 'rootfs', path: imagePath, name: 'rootfs.img' },
          ...(opts?.extraPayloads ?? []),
        ],
        privateKey: opts?.signingKey ?? signingKey,
        out,
        ...(v2
          ? {
              format: BUNDLE_FORMAT_V2,
              dynamic,
              deltas: deltas.length ? { 'rootfs.img': deltas } : undefined,
            }
          : {}),
        ...opts?.build,
      });
      await addTarget(dir, out, { keys: tufKey, expiresDays: 30 });
      return out;
    },
    expireTimestamp() {
      refreshTimestamp(dir, { keys: tufKey, expiresDays: 1, now: new Date(Date.now() - 3 * 86_400_000) });
    },
    targetUrlPath(bundlePath) {
      return `/targets/${path.basename(bundlePath)}`;
    },
    trustIn(dataDir) {
      fs.mkdirSync(path.join(dataDir, 'trusted-keys'), { recursive: true });
      fs.writeFileSync(path.join(dataDir, 'trusted-keys', 'vendor.pem'), vendor.publicKeyPem);
    },
    async close() {
      await server.close();
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(work, { recursive: true, force: true });
    },
  };
}

/**
 * The bundle from a feed that trickles: a first burst, then `chunk` bytes per tick, never past
 * `capBytes` of the bundle, the connection then held open. So the download is always mid-way,
 * whatever the machine's speed, until `serveAll()` lets later connections through in one go.
 */
export function stallingFeed(
  data: Buffer,
  opts: { burst: number; chunk: number; tickMs: number; capBytes: number },
) {
  let stalling = true;
  const handler: Override = (req, res) => {
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    const body = data.subarray(start);
    res.writeHead(m ? 206 : 200, {
      'content-length': body.length,
      ...(m ? { 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
    });
    if (!stalling) {
      res.end(body);
      return;
    }
    const limit = Math.max(0, opts.capBytes - start);
    let sent = Math.min(opts.burst, limit);
    res.write(body.subarray(0, sent));
    const timer = setInterval(() => {
      const next = Math.min(sent + opts.chunk, limit);
      if (next > sent) res.write(body.subarray(sent, next));
      sent = next;
    }, opts.tickMs);
    res.on('close', () => clearInterval(timer));
  };
  return { handler, serveAll: () => (stalling = false) };
}
