import { randomBytes, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { buildBundle } from '../bundle/build.js';
import { generateKeyPair, loadPublicKey, parsePrivateKey } from '../bundle/keys.js';
import { isoSeconds } from '../core/format.js';
import { fsyncDirSync, readJsonFile, writeFileAtomicSync } from '../core/fsutil.js';
import { Metadata, MetadataKind } from '@tufjs/models';
import { addTarget, initRepository } from './repository.js';
import { serveStaticDir, type StaticFeedServer } from './static-server.js';

/**
 * The demo update feed of a fresh Gantry on the simulated gateway: signed releases a newcomer can
 * check, download, install and roll back with nothing configured. Generated once into
 * `<dataDir>/demo-feed/` with its own keys (a TUF key for every role, a bundle-signing key) and
 * reused on every later start; served read-only on loopback by the Gantry process itself.
 *
 *   demo-feed/demo-feed.json   what was generated (written last: a complete feed has it)
 *   demo-feed/repo/            the TUF repository that is served (root.json, …, targets/)
 *   demo-feed/keys/            tuf.key, vendor.key (0600), vendor.pub
 *   demo-feed/clients/<id>/    each gateway's verified copy of the metadata (TUF client cache)
 *
 * The client caches live here rather than in the gateway's own feed directory so that a
 * regenerated demo feed (new root) starts from its new root, and a real feed configured later
 * never meets the demo's cached root.
 */

export interface DemoRelease {
  version: string;
  type: 'security' | 'feature' | 'maintenance';
  severity: 'critical' | 'high' | 'medium' | 'low';
  description: string;
  changelog: string[];
}

/** The next patch and the next minor version of the simulator's factory image (v5.0.4). */
export const DEMO_RELEASES: readonly DemoRelease[] = [
  {
    version: 'v5.0.5',
    type: 'security',
    severity: 'critical',
    description: 'Demo release (generated on this machine): security patch for the simulated gateway',
    changelog: ['Demo: fixed CVE-2025-1234', 'Demo: fixed CVE-2025-5678'],
  },
  {
    version: 'v5.1.0',
    type: 'feature',
    severity: 'medium',
    description: 'Demo release (generated on this machine): next minor version of the simulated gateway',
    changelog: ['Demo: crane telemetry exporter', 'Demo: faster boot'],
  },
];

/** Small on purpose: generated at the first start, it must not make that start slow. */
export const DEMO_IMAGE_BYTES = 4 * 1024 * 1024;
/** Nobody re-signs a demo feed's metadata: it is signed for years, and regenerated before it runs out. */
const EXPIRES_DAYS = 5 * 365;
const RENEW_BEFORE_DAYS = 30;
const KERNEL = '6.1.40-LTS';
const FORMAT = 1;

const markerSchema = z.object({
  format: z.literal(FORMAT),
  generated_at: z.string(),
  expires_at: z.string(),
  models: z.array(z.string()),
  releases: z.array(z.string()),
});
type Marker = z.infer<typeof markerSchema>;

export interface DemoFeedFiles {
  dir: string;
  /** The served TUF repository. */
  repoDir: string;
  /** The trusted root a gateway starts from. */
  rootPath: string;
  /** Where gateway `id` keeps its verified copy of the metadata. */
  clientDir(gatewayId: string): string;
  /** The key the demo bundles are signed with (trusted while a gateway uses the demo feed). */
  signingKey: KeyObject;
  releases: string[];
}

export interface DemoFeedOptions {
  /** `<dataDir>/demo-feed`. */
  dir: string;
  /** Hardware models the releases are built for (every gateway hosted). */
  models: readonly string[];
  imageBytes?: number;
  now?: () => number;
}

function files(dir: string, marker: Marker): DemoFeedFiles {
  const repoDir = path.join(dir, 'repo');
  return {
    dir,
    repoDir,
    rootPath: path.join(repoDir, 'root.json'),
    clientDir: (gatewayId) => path.join(dir, 'clients', gatewayId),
    signingKey: loadPublicKey(path.join(dir, 'keys', 'vendor.pub')),
    releases: marker.releases,
  };
}

/** A complete demo feed that still covers `models` and does not run out soon; else null. */
function reusable(dir: string, models: readonly string[], now: number): Marker | null {
  try {
    const parsed = markerSchema.safeParse(readJsonFile<unknown>(path.join(dir, 'demo-feed.json')));
    if (!parsed.success) return null;
    const marker = parsed.data;
    if (!models.every((m) => marker.models.includes(m))) return null;
    if (Date.parse(marker.expires_at) - now < RENEW_BEFORE_DAYS * 86_400_000) return null;
    const root = JSON.parse(fs.readFileSync(path.join(dir, 'repo', 'root.json'), 'utf8')) as Parameters<
      typeof Metadata.fromJSON
    >[1];
    Metadata.fromJSON(MetadataKind.Root, root);
    loadPublicKey(path.join(dir, 'keys', 'vendor.pub'));
    return marker;
  } catch {
    // Damaged or from an older layout (the `npm run demo:feed` of before): generated afresh.
    return null;
  }
}

async function generate(staging: string, opts: DemoFeedOptions, now: Date): Promise<Marker> {
  const repoDir = path.join(staging, 'repo');
  const keysDir = path.join(staging, 'keys');
  const work = path.join(staging, 'work');
  fs.mkdirSync(keysDir, { recursive: true, mode: 0o700 });
  fs.mkdirSync(work, { recursive: true });
  const tuf = generateKeyPair();
  const vendor = generateKeyPair();
  fs.writeFileSync(path.join(keysDir, 'tuf.key'), tuf.privateKeyPem, { mode: 0o600 });
  fs.writeFileSync(path.join(keysDir, 'vendor.key'), vendor.privateKeyPem, { mode: 0o600 });
  fs.writeFileSync(path.join(keysDir, 'vendor.pub'), vendor.publicKeyPem, { mode: 0o644 });
  const tufKey = parsePrivateKey(tuf.privateKeyPem);
  const signing = { keys: tufKey, expiresDays: EXPIRES_DAYS, now };
  initRepository(repoDir, signing);
  for (const release of DEMO_RELEASES) {
    const image = path.join(work, `rootfs-${release.version}.img`);
    fs.writeFileSync(image, randomBytes(opts.imageBytes ?? DEMO_IMAGE_BYTES));
    const bundle = path.join(work, `gantry-${release.version}.bundle`);
    await buildBundle({
      manifestFields: {
        version: release.version,
        type: release.type,
        severity: release.severity,
        compatible: [...opts.models],
        kernel: KERNEL,
        released: isoSeconds(now.getTime()).slice(0, 10),
        description: release.description,
        changelog: release.changelog,
      },
      payloadFiles: [{ kind: 'rootfs', path: image, name: 'rootfs.img' }],
      privateKey: parsePrivateKey(vendor.privateKeyPem),
      out: bundle,
    });
    await addTarget(repoDir, bundle, signing);
  }
  fs.rmSync(work, { recursive: true, force: true });
  const marker: Marker = {
    format: FORMAT,
    generated_at: isoSeconds(now.getTime()),
    expires_at: isoSeconds(now.getTime() + EXPIRES_DAYS * 86_400_000),
    models: [...opts.models],
    releases: DEMO_RELEASES.map((r) => r.version),
  };
  writeFileAtomicSync(path.join(staging, 'demo-feed.json'), `${JSON.stringify(marker, null, 2)}\n`);
  return marker;
}

/**
 * The demo feed in `opts.dir`: reused when a complete one is there (same keys, same bundles),
 * else generated beside it and renamed into place, so an interrupted first start leaves no half
 * feed behind. `generated` says which happened.
 */
export async function ensureDemoFeed(opts: DemoFeedOptions): Promise<DemoFeedFiles & { generated: boolean }> {
  const now = opts.now?.() ?? Date.now();
  const existing = reusable(opts.dir, opts.models, now);
  if (existing) return { ...files(opts.dir, existing), generated: false };
  const staging = `${opts.dir}.partial`;
  fs.mkdirSync(path.dirname(opts.dir), { recursive: true });
  fs.rmSync(staging, { recursive: true, force: true });
  const marker = await generate(staging, opts, new Date(now));
  fs.rmSync(opts.dir, { recursive: true, force: true });
  fs.renameSync(staging, opts.dir);
  fsyncDirSync(path.dirname(opts.dir));
  return { ...files(opts.dir, marker), generated: true };
}

export interface RunningDemoFeed extends DemoFeedFiles {
  /** Where the repository is served (`http://127.0.0.1:PORT`). */
  url: string;
  /** How the feed is named wherever it shows: marked as a demo, with its address. */
  label: string;
  generated: boolean;
  close(): Promise<void>;
}

/** The demo feed, generated if needed, served on an ephemeral loopback port until `close()`. */
export async function startDemoFeed(
  opts: DemoFeedOptions & { host?: string; port?: number },
): Promise<RunningDemoFeed> {
  const feed = await ensureDemoFeed(opts);
  const server: StaticFeedServer = await serveStaticDir(feed.repoDir, { host: opts.host, port: opts.port });
  return { ...feed, url: server.url, label: `demo feed (local, ${server.url})`, close: () => server.close() };
}
