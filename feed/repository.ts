import { createHash, KeyObject, sign } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { canonicalize } from '@tufjs/canonical-json';
import {
  Key,
  Metadata,
  MetadataKind,
  MetaFile,
  Root,
  Signature,
  Snapshot,
  TargetFile,
  Targets,
  Timestamp,
} from '@tufjs/models';
import { hashFile } from '../bundle/compression.js';
import type { ArtifactRef } from '../bundle/manifest.js';
import { targetFrame } from '../bundle/frame.js';
import { inspectBundle, verifyBundle } from '../bundle/stream.js';
import { rawPublicKey } from '../bundle/keys.js';
import { GantryError } from '../core/errors.js';
import { writeFileAtomicSync } from '../core/fsutil.js';
import { TOP_LEVEL_ROLES, type RoleName, type TargetCustom } from './types.js';

/**
 * Repository tooling for Gantry's TUF feed: plain files that any static web server can host.
 *
 *   <dir>/root.json, 1.root.json   trust anchor (clients fetch N.root.json for rotations)
 *   <dir>/targets.json             every bundle with its length, sha256 and release metadata
 *   <dir>/snapshot.json            version of targets.json
 *   <dir>/timestamp.json           version of snapshot.json; re-sign it before it expires
 *   <dir>/targets/<bundle>         the bundles
 *
 * Consistent snapshots are off: a client refreshing during `addTarget` may see a mismatch and
 * simply retries later, which suits a feed updated a few times a month.
 */

/** One ed25519 private key for every role, or one per role. */
export type RepositoryKeys = KeyObject | Record<RoleName, KeyObject>;

export interface SigningOptions {
  keys: RepositoryKeys;
  /** Lifetime of the metadata this call (re)signs. */
  expiresDays?: number;
  /** The clock: expiry dates are computed from it (tests sign already-expired metadata). */
  now?: Date;
}

export const DEFAULT_EXPIRES_DAYS = 365;
export const TARGETS_SUBDIR = 'targets';
const SPEC_VERSION = '1.0.31';

function roleKey(keys: RepositoryKeys, role: RoleName): KeyObject {
  return keys instanceof KeyObject ? keys : keys[role];
}

/** The TUF form of an ed25519 key: raw 32-byte public key as hex, id = SHA-256 of canonical JSON. */
export function tufKey(key: KeyObject): Key {
  const keyVal = { public: rawPublicKey(key).toString('hex') };
  const body = { keytype: 'ed25519', scheme: 'ed25519', keyval: keyVal };
  const keyID = createHash('sha256').update(canonicalize(body)).digest('hex');
  return new Key({ keyID, keyType: 'ed25519', scheme: 'ed25519', keyVal });
}

/** TUF readers choke on fractional seconds in some implementations: `YYYY-MM-DDTHH:MM:SSZ`. */
export function expiresIn(days: number, now: Date = new Date()): string {
  return new Date(now.getTime() + days * 86_400_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

type AnySigned = Root | Targets | Snapshot | Timestamp;

function signWith(md: Metadata<AnySigned>, key: KeyObject): void {
  const tk = tufKey(key);
  md.sign((bytes) => new Signature({ keyID: tk.keyID, sig: sign(null, bytes, key).toString('hex') }), false);
}

function writeMetadata(dir: string, name: string, md: Metadata<AnySigned>): void {
  writeFileAtomicSync(path.join(dir, name), `${JSON.stringify(md.toJSON(), null, 2)}\n`);
}

function readJson(dir: string, name: string): Record<string, unknown> {
  const file = path.join(dir, name);
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new GantryError('VALIDATION_ERROR', `cannot read ${file}: ${(err as Error).message}`);
  }
}

function load(dir: string, kind: MetadataKind.Root): Metadata<Root>;
function load(dir: string, kind: MetadataKind.Targets): Metadata<Targets>;
function load(dir: string, kind: MetadataKind.Snapshot): Metadata<Snapshot>;
function load(dir: string, kind: MetadataKind.Timestamp): Metadata<Timestamp>;
function load(dir: string, kind: MetadataKind): Metadata<AnySigned> {
  const data = readJson(dir, `${kind}.json`);
  // The overloads of fromJSON are per literal kind; dispatching on a union needs the cast.
  return Metadata.fromJSON(kind as MetadataKind.Root, data as Parameters<typeof Metadata.fromJSON>[1]);
}

/** Refuses to sign with a key the repository's root does not authorise for the role. */
function assertRoleKey(root: Root, role: RoleName, key: KeyObject): void {
  const id = tufKey(key).keyID;
  if (!root.roles[role]?.keyIDs.includes(id)) {
    throw new GantryError(
      'VALIDATION_ERROR',
      `the given key (${id.slice(0, 16)}…) is not the ${role} key of this feed`,
    );
  }
}

/** Creates an empty repository in `dir` (created if missing; refuses an existing one). */
export function initRepository(dir: string, opts: SigningOptions): { rootKeyIds: string[] } {
  if (fs.existsSync(path.join(dir, 'root.json'))) {
    throw new GantryError('VALIDATION_ERROR', `${dir} already holds a feed (root.json exists)`);
  }
  fs.mkdirSync(path.join(dir, TARGETS_SUBDIR), { recursive: true });
  const expires = expiresIn(opts.expiresDays ?? DEFAULT_EXPIRES_DAYS, opts.now);

  const root = new Root({ version: 1, specVersion: SPEC_VERSION, expires, consistentSnapshot: false });
  for (const role of TOP_LEVEL_ROLES) root.addKey(tufKey(roleKey(opts.keys, role)), role);
  const targets = new Targets({ version: 1, specVersion: SPEC_VERSION, expires });
  const snapshot = new Snapshot({
    version: 1,
    specVersion: SPEC_VERSION,
    expires,
    meta: { 'targets.json': new MetaFile({ version: 1 }) },
  });
  const timestamp = new Timestamp({
    version: 1,
    specVersion: SPEC_VERSION,
    expires,
    snapshotMeta: new MetaFile({ version: 1 }),
  });

  const rootMd = new Metadata(root);
  signWith(rootMd, roleKey(opts.keys, 'root'));
  const targetsMd = new Metadata(targets);
  signWith(targetsMd, roleKey(opts.keys, 'targets'));
  const snapshotMd = new Metadata(snapshot);
  signWith(snapshotMd, roleKey(opts.keys, 'snapshot'));
  const timestampMd = new Metadata(timestamp);
  signWith(timestampMd, roleKey(opts.keys, 'timestamp'));

  writeMetadata(dir, '1.root.json', rootMd);
  writeMetadata(dir, 'targets.json', targetsMd);
  writeMetadata(dir, 'snapshot.json', snapshotMd);
  writeMetadata(dir, 'timestamp.json', timestampMd);
  // root.json last: its presence marks a complete repository.
  writeMetadata(dir, 'root.json', rootMd);
  return { rootKeyIds: root.roles.root!.keyIDs };
}

export interface AddTargetOptions extends SigningOptions {
  /** Extra `custom` fields, merged over those taken from the bundle's manifest. */
  custom?: Record<string, unknown>;
  /** Target path (file name under targets/); the bundle's base name by default. */
  targetName?: string;
  /** When given, the bundle's own signature must verify with one of these keys. */
  bundleKeys?: readonly KeyObject[];
}

export interface AddedTarget {
  path: string;
  length: number;
  sha256: string;
  custom: TargetCustom & Record<string, unknown>;
  targetsVersion: number;
}

/**
 * Adds a bundle to the feed: checks the bundle (structure and every payload hash; its signature
 * too when `bundleKeys` is given), copies it to `targets/`, records it in targets.json with its
 * length, SHA-256 and release metadata, then bumps and re-signs targets, snapshot and timestamp.
 * Re-adding the same bytes is a no-op re-sign; different bytes under an existing name are refused.
 */
export async function addTarget(
  dir: string,
  bundlePath: string,
  opts: AddTargetOptions,
): Promise<AddedTarget> {
  const rootMd = load(dir, MetadataKind.Root);
  for (const role of ['targets', 'snapshot', 'timestamp'] as const) {
    assertRoleKey(rootMd.signed, role, roleKey(opts.keys, role));
  }
  const name = opts.targetName ?? path.basename(bundlePath);
  if (!/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(name)) {
    throw new GantryError(
      'VALIDATION_ERROR',
      `target name ${JSON.stringify(name)} must be a plain file name`,
    );
  }

  const checked = opts.bundleKeys
    ? await verifyBundle(fs.createReadStream(bundlePath), { trustedKeys: opts.bundleKeys })
    : await inspectBundle(fs.createReadStream(bundlePath));
  const m = checked.manifest;

  const targetsDir = path.join(dir, TARGETS_SUBDIR);
  fs.mkdirSync(targetsDir, { recursive: true });
  const dest = path.join(targetsDir, name);
  const partial = `${dest}.partial`;
  const hash = createHash('sha256');
  let length = 0;
  try {
    await pipeline(
      fs.createReadStream(bundlePath),
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          hash.update(chunk);
          length += chunk.length;
          yield chunk;
        }
      },
      fs.createWriteStream(partial),
    );
  } catch (err) {
    fs.rmSync(partial, { force: true });
    throw err;
  }
  const sha256 = hash.digest('hex');

  const targetsMd = load(dir, MetadataKind.Targets);
  // The artifacts the manifest names (hop deltas, chunk index and pack) are published with it, in
  // the same targets.json version: a gateway never sees a bundle whose deltas are not there yet.
  let artifacts: ArtifactFile[];
  try {
    artifacts = await stageArtifacts(
      m.payloads.flatMap((p) => [
        ...(p.deltas ?? []).map((d) => d.artifact),
        ...(p.dynamic ? [p.dynamic.index, p.dynamic.pack] : []),
      ]),
      path.dirname(bundlePath),
      targetsDir,
      targetsMd.signed,
    );
  } catch (err) {
    fs.rmSync(partial, { force: true });
    throw err;
  }
  const existing = targetsMd.signed.targets[name];
  if (existing && existing.hashes.sha256 !== sha256) {
    fs.rmSync(partial, { force: true });
    throw new GantryError(
      'VALIDATION_ERROR',
      `the feed already has a different ${name}; give the bundle another name`,
    );
  }
  fs.renameSync(partial, dest);

  const v2 = m.format !== 'gantry-bundle-v1';
  const custom = {
    ...(v2
      ? {
          format: m.format,
          deltas: m.payloads.flatMap((p) =>
            (p.deltas ?? []).map((d) => ({ source_sha256: d.source_sha256, size: d.artifact.size })),
          ),
          ...(m.payloads.some((p) => p.dynamic)
            ? {
                dynamic: m.payloads
                  .filter((p) => p.dynamic)
                  .map((p) => ({ index_size: p.dynamic!.index.size, pack_size: p.dynamic!.pack.size })),
              }
            : {}),
        }
      : {}),
    version: m.version,
    type: m.type,
    severity: m.severity,
    size: length,
    installed_size: m.payloads.reduce((n, p) => n + p.size, 0),
    released: m.released,
    description: m.description,
    changelog: m.changelog,
    compatible: m.compatible,
    kernel: m.kernel,
    payloads: m.payloads.map((p) => ({ name: p.name, kind: p.kind, size: p.size })),
    ...opts.custom,
    // After the extra fields: what the feed says about the signer must be what the manifest says,
    // so a gateway can tell before downloading whether it trusts the key (GET /updates `signature`).
    key_id: m.key_id,
    // What lets a gateway hash each byte once (bundle/frame.ts): the frame read from the same file.
    frame: targetFrame(checked.frame, length),
  };
  const expires = expiresIn(opts.expiresDays ?? DEFAULT_EXPIRES_DAYS, opts.now);
  const old = targetsMd.signed;
  const targets = new Targets({
    version: old.version + 1,
    specVersion: old.specVersion,
    expires,
    targets: {
      ...old.targets,
      ...Object.fromEntries(
        artifacts.map((a) => [
          a.name,
          new TargetFile({
            path: a.name,
            length: a.length,
            hashes: { sha256: a.sha256 },
            unrecognizedFields: { custom: { artifact_of: name } as unknown as Record<string, string> },
          }),
        ]),
      ),
      [name]: new TargetFile({
        path: name,
        length,
        hashes: { sha256 },
        unrecognizedFields: { custom: JSON.parse(JSON.stringify(custom)) as Record<string, string> },
      }),
    },
    unrecognizedFields: old.unrecognizedFields,
  });
  const newTargetsMd = new Metadata(targets);
  signWith(newTargetsMd, roleKey(opts.keys, 'targets'));
  writeMetadata(dir, 'targets.json', newTargetsMd);
  writeSnapshotAndTimestamp(dir, targets.version, opts);
  return { path: name, length, sha256, custom, targetsVersion: targets.version };
}

interface ArtifactFile {
  name: string;
  length: number;
  sha256: string;
}

/**
 * Copies each artifact a manifest names from beside the bundle into targets/, checked against the
 * signed length and SHA-256. One the feed already holds with the same hash needs no file.
 */
async function stageArtifacts(
  refs: readonly ArtifactRef[],
  fromDir: string,
  targetsDir: string,
  current: Targets,
): Promise<ArtifactFile[]> {
  const staged: ArtifactFile[] = [];
  for (const ref of refs) {
    const have = current.targets[ref.target];
    const src = path.join(fromDir, ref.target);
    if (!fs.existsSync(src)) {
      if (have && have.hashes.sha256 === ref.sha256 && have.length === ref.size) continue;
      throw new GantryError(
        'VALIDATION_ERROR',
        `the bundle names ${ref.target}, which is neither beside it (${src}) nor in the feed`,
      );
    }
    const got = await hashFile(src);
    if (got.size !== ref.size || got.sha256 !== ref.sha256) {
      throw new GantryError(
        'VALIDATION_ERROR',
        `${src} does not match the length and SHA-256 the bundle signed`,
      );
    }
    if (have && have.hashes.sha256 !== ref.sha256) {
      throw new GantryError('VALIDATION_ERROR', `the feed already has a different ${ref.target}`);
    }
    const dest = path.join(targetsDir, ref.target);
    if (path.resolve(src) !== path.resolve(dest)) {
      fs.copyFileSync(src, `${dest}.partial`);
      fs.renameSync(`${dest}.partial`, dest);
    }
    staged.push({ name: ref.target, length: got.size, sha256: got.sha256 });
  }
  return staged;
}

function writeSnapshotAndTimestamp(dir: string, targetsVersion: number, opts: SigningOptions): void {
  const expires = expiresIn(opts.expiresDays ?? DEFAULT_EXPIRES_DAYS, opts.now);
  const oldSnapshot = load(dir, MetadataKind.Snapshot).signed;
  const snapshot = new Snapshot({
    version: oldSnapshot.version + 1,
    specVersion: oldSnapshot.specVersion,
    expires,
    meta: { ...oldSnapshot.meta, 'targets.json': new MetaFile({ version: targetsVersion }) },
  });
  const snapshotMd = new Metadata(snapshot);
  signWith(snapshotMd, roleKey(opts.keys, 'snapshot'));
  writeMetadata(dir, 'snapshot.json', snapshotMd);
  writeTimestamp(dir, snapshot.version, opts);
}

function writeTimestamp(dir: string, snapshotVersion: number, opts: SigningOptions): number {
  const old = load(dir, MetadataKind.Timestamp).signed;
  const timestamp = new Timestamp({
    version: old.version + 1,
    specVersion: old.specVersion,
    expires: expiresIn(opts.expiresDays ?? DEFAULT_EXPIRES_DAYS, opts.now),
    snapshotMeta: new MetaFile({ version: snapshotVersion }),
  });
  const md = new Metadata(timestamp);
  signWith(md, roleKey(opts.keys, 'timestamp'));
  writeMetadata(dir, 'timestamp.json', md);
  return timestamp.version;
}

/**
 * Re-signs timestamp.json with a fresh expiry and a bumped version (what a cron job runs so a
 * quiet feed does not look frozen to its clients). Returns the new timestamp version.
 */
export function refreshTimestamp(dir: string, opts: SigningOptions): number {
  const root = load(dir, MetadataKind.Root).signed;
  assertRoleKey(root, 'timestamp', roleKey(opts.keys, 'timestamp'));
  const snapshotVersion = load(dir, MetadataKind.Snapshot).signed.version;
  return writeTimestamp(dir, snapshotVersion, opts);
}

/** The targets the repository currently lists (no signature check: it is the publisher's copy). */
export function listRepositoryTargets(
  dir: string,
): { path: string; length: number; sha256: string; custom: unknown }[] {
  const targets = load(dir, MetadataKind.Targets).signed.targets;
  return Object.values(targets).map((t) => ({
    path: t.path,
    length: t.length,
    sha256: t.hashes.sha256 ?? '',
    custom: t.custom,
  }));
}
