import type { KeyObject } from 'node:crypto';
import type { Readable } from 'node:stream';
import { and, asc, eq } from 'drizzle-orm';
import { fullKeyId } from '../../bundle/keys.js';
import { compareVersions, isVersion } from '../../bundle/manifest.js';
import { GantryError } from '../../core/errors.js';
import type { SignatureStatus } from '../../core/vocabulary.js';
import type { GantryDb } from '../../drizzle/db.js';
import { availableUpdates, type AvailableUpdateRow } from '../../drizzle/schema.js';
import type { GatewayRuntime } from '../gateways.js';

/** A bundle the feed offers, as its verified (TUF) metadata describes it. */
export interface FeedTarget {
  path: string;
  length: number;
  sha256: string;
  custom: Record<string, unknown>;
}

/** A listed update as a gateway sees it; api/presenters/updates.ts writes its documented form. */
export interface UpdateListing {
  id: string;
  version: string;
  type: string;
  severity: string;
  /** What this gateway would download (`downloadBytes`): a hop delta, the compressed bundle, a v1 image. */
  sizeBytes: number;
  released: string;
  description: string;
  changelog: string[];
  signature: SignatureStatus;
  compatible: boolean;
}

/** The feed a gateway uses, as operators see it. */
export interface FeedServer {
  /** Its base URL, or for the local demo feed `demo feed (local, http://127.0.0.1:PORT)`. */
  label: string;
  demo: boolean;
}

/** How the update pipeline reaches a gateway's feed (TUF metadata and target bytes). */
export interface FeedPort {
  /** The feed shown to operators, or null when the gateway has no feed configured. */
  server(gatewayId: string): FeedServer | null;
  refresh(gatewayId: string): Promise<FeedTarget[]>;
  /**
   * The target from byte `offset`. `validator` is shared by the requests of one download (see
   * TargetValidator in feed/fetch.ts): later requests carry If-Range with the first answer's ETag.
   */
  open(
    gatewayId: string,
    target: FeedTarget,
    offset: number,
    signal: AbortSignal,
    validator?: { value: string | null },
    /** Stop before this byte (exclusive): one single-range GET of a part of the target. */
    end?: number,
  ): Promise<Readable>;
}

const str = (v: unknown, fallback = ''): string => (typeof v === 'string' ? v : fallback);
const strings = (v: unknown): string[] =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];

export function publicUpdateId(seq: number): string {
  return `update-${String(seq).padStart(3, '0')}`;
}

function seqOf(updateId: string): number | null {
  const m = /^update-(\d+)$/.exec(updateId);
  return m ? Number(m[1]) : null;
}

/** The payload size the operator cares about: the installed image, else the whole bundle. */
export function imageBytes(row: Pick<AvailableUpdateRow, 'custom' | 'length'>): number {
  const c = row.custom as { installed_size?: unknown; payloads?: Array<{ kind?: string; size?: unknown }> };
  const rootfs = c.payloads?.find((p) => p.kind === 'rootfs')?.size;
  if (typeof rootfs === 'number' && rootfs > 0) return rootfs;
  return typeof c.installed_size === 'number' && c.installed_size > 0 ? c.installed_size : row.length;
}

/**
 * Whether a feed target's bundle may come by a delta path: a v2 bundle that publishes hop deltas or
 * dynamic chunks (`feed add` copies both from the signed manifest into the target's metadata). Other
 * bundles are fetched whole without reading their head first.
 */
export function deliversByDelta(custom: Record<string, unknown>): boolean {
  if (custom.format !== 'gantry-bundle-v2') return false;
  return (Array.isArray(custom.deltas) && custom.deltas.length > 0) || custom.dynamic !== undefined;
}

/**
 * What this gateway would download for a listed update: the hop delta from its active slot's image
 * when the bundle publishes one, else a v2 bundle's compressed size; a v1 bundle is its image (the
 * installed size, as before v2: the bundle is the image and a few KiB).
 */
export function downloadBytes(
  row: Pick<AvailableUpdateRow, 'custom' | 'length'>,
  activeSha256: string | null,
): number {
  const c = row.custom as { format?: unknown; deltas?: Array<{ source_sha256?: unknown; size?: unknown }> };
  if (c.format !== 'gantry-bundle-v2') return imageBytes(row);
  const hop = activeSha256 ? c.deltas?.find((d) => d.source_sha256 === activeSha256) : undefined;
  return typeof hop?.size === 'number' ? hop.size : row.length;
}

/** A bundle key id as manifests write it: a 16 to 64 hex-digit prefix of `fullKeyId`. */
const KEY_ID = /^[0-9a-f]{16,64}$/;

/**
 * What the gateway knows, before downloading, of who signed a listed bundle. Listed targets come
 * from TUF metadata that verified against the feed's trusted root, and `feed add` records there the
 * key id named by the bundle's signed manifest (`key_id`). `verified` means exactly that this key is
 * one the gateway trusts; `untrusted` that the metadata names a key it does not trust (or no usable
 * key id); `unknown` that the metadata names no key at all (a feed built by another tool). Whatever
 * the label, the bundle's own signature is checked again on download, before a byte is written.
 */
export function signatureStatus(keyId: unknown, trustedKeys: readonly KeyObject[]): SignatureStatus {
  if (keyId === undefined) return 'unknown';
  if (typeof keyId !== 'string' || !KEY_ID.test(keyId)) return 'untrusted';
  return trustedKeys.some((k) => fullKeyId(k).startsWith(keyId)) ? 'verified' : 'untrusted';
}

/**
 * The updates a gateway's feed offers, refreshed by "Check for Updates" and kept in the store so
 * /updates answers without the network. `compatible` and `signature` are computed per gateway.
 */
export class UpdateCatalog {
  constructor(
    private readonly db: GantryDb,
    private readonly clock: () => number,
  ) {}

  /** Records the feed's current targets: new ones get an id, vanished ones are unlisted. */
  record(gateway: Pick<GatewayRuntime, 'id' | 'recordUpdateCheck'>, targets: FeedTarget[]): void {
    const gatewayId = gateway.id;
    const now = this.clock();
    this.db.transaction((tx) => {
      tx.update(availableUpdates)
        .set({ listed: false })
        .where(eq(availableUpdates.gatewayId, gatewayId))
        .run();
      for (const t of targets) {
        const version = str(t.custom.version);
        if (!version) continue;
        const existing = tx
          .select()
          .from(availableUpdates)
          .where(and(eq(availableUpdates.gatewayId, gatewayId), eq(availableUpdates.target, t.path)))
          .get();
        const values = {
          version,
          length: t.length,
          sha256: t.sha256,
          custom: t.custom,
          listed: true,
          seenAt: now,
        };
        if (existing)
          tx.update(availableUpdates).set(values).where(eq(availableUpdates.seq, existing.seq)).run();
        else
          tx.insert(availableUpdates)
            .values({ gatewayId, target: t.path, ...values })
            .run();
      }
      gateway.recordUpdateCheck(now, tx);
    });
  }

  /**
   * Unlists everything (the gateway's feed changed: what the old one offered cannot be fetched
   * from the new one). The last check time stays: it is when a feed was last asked.
   */
  unlistAll(gatewayId: string): void {
    this.db
      .update(availableUpdates)
      .set({ listed: false })
      .where(eq(availableUpdates.gatewayId, gatewayId))
      .run();
  }

  listed(gatewayId: string): AvailableUpdateRow[] {
    return this.db
      .select()
      .from(availableUpdates)
      .where(and(eq(availableUpdates.gatewayId, gatewayId), eq(availableUpdates.listed, true)))
      .orderBy(asc(availableUpdates.seq))
      .all();
  }

  get(gatewayId: string, updateId: string): AvailableUpdateRow {
    const seq = seqOf(updateId);
    const row =
      seq === null
        ? undefined
        : this.db
            .select()
            .from(availableUpdates)
            .where(and(eq(availableUpdates.gatewayId, gatewayId), eq(availableUpdates.seq, seq)))
            .get();
    if (!row || !row.listed)
      throw new GantryError('NOT_FOUND', `Update ${updateId} not found; check for updates first`);
    return row;
  }

  view(
    row: AvailableUpdateRow,
    ctx: {
      model: string;
      versionFloor: string | null;
      trustedKeys: readonly KeyObject[];
      /** The active slot's image hash: a hop delta from it makes the download that small. */
      activeSha256?: string | null;
    },
  ): UpdateListing {
    const c = row.custom as Record<string, unknown>;
    const fitsModel = strings(c.compatible).includes(ctx.model);
    const notOlder =
      !ctx.versionFloor ||
      !isVersion(ctx.versionFloor) ||
      !isVersion(row.version) ||
      compareVersions(row.version, ctx.versionFloor) >= 0;
    return {
      id: publicUpdateId(row.seq),
      version: row.version,
      type: str(c.type, 'maintenance'),
      severity: str(c.severity, 'low'),
      sizeBytes: downloadBytes(row, ctx.activeSha256 ?? null),
      released: str(c.released),
      description: str(c.description),
      changelog: strings(c.changelog),
      signature: signatureStatus(c.key_id, ctx.trustedKeys),
      compatible: fitsModel && notOlder,
    };
  }
}
