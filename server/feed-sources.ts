import path from 'node:path';
import type { GantryConfig } from '../core/config.js';
import { readJsonFile, writeFileAtomicSync } from '../core/fsutil.js';
import type { DemoFeedFiles } from '../feed/demo-feed.js';
import type { FeedLocation } from '../services/updates/feed-port.js';

/** Where a gateway's feed comes from, in the order it is looked for. */
export type FeedOrigin = 'configuration' | 'environment' | 'demo';

export interface ResolvedFeed extends FeedLocation {
  origin: FeedOrigin;
  label: string;
}

type DemoDecisionConfig = Pick<GantryConfig, 'device' | 'demoFeed' | 'feedUrl' | 'feedRoot'>;

/**
 * Whether this server runs the local demo feed: only on the embedded default, a simulated device
 * with no feed given by environment, and not turned off. The Linux device never gets it: a real
 * board must only ever trust what its operator configured.
 */
export function demoFeedWanted(config: DemoDecisionConfig): boolean {
  return (
    config.device === 'simulated' &&
    config.demoFeed !== 'off' &&
    config.feedUrl === undefined &&
    config.feedRoot === undefined
  );
}

export interface FeedSourcesDeps {
  config: Pick<GantryConfig, 'feedUrl' | 'feedTargetsUrl' | 'feedRoot'>;
  /** The feed of the gateway's configuration ZIP, if it has one. */
  provisioned(gatewayId: string): FeedLocation | null;
  /** The running demo feed (null when demoFeedWanted said no). */
  demo: (DemoFeedFiles & { url: string; label: string }) | null;
  /** Where the gateway's last feed is remembered (so a change is noticed across restarts too). */
  stateFile(gatewayId: string): string;
  /** A gateway's feed changed source (e.g. a configuration ZIP replaced the demo feed). */
  onChange(
    gatewayId: string,
    from: { origin: FeedOrigin; label: string } | null,
    to: ResolvedFeed | null,
  ): void;
}

interface Remembered {
  origin: FeedOrigin;
  label: string;
  metadataUrl: string;
}

/**
 * Which feed each gateway uses: its configuration ZIP's, else the environment's
 * (GANTRY_FEED_URL + GANTRY_FEED_ROOT), else the demo feed when the server runs one, else none.
 * Every resolution is compared with the last one, so the switch away from the demo feed is told
 * (logged, the old listing dropped) when it happens, not discovered later by a failing download.
 */
export class FeedSources {
  private readonly last = new Map<string, Remembered | null>();

  constructor(private readonly deps: FeedSourcesDeps) {}

  private compute(gatewayId: string): ResolvedFeed | null {
    const provisioned = this.deps.provisioned(gatewayId);
    if (provisioned) {
      return { ...provisioned, origin: 'configuration', label: new URL(provisioned.metadataUrl).origin };
    }
    const { feedUrl, feedTargetsUrl, feedRoot } = this.deps.config;
    if (feedUrl && feedRoot) {
      return {
        metadataUrl: feedUrl,
        targetsUrl: feedTargetsUrl ?? `${feedUrl.replace(/\/$/, '')}/targets`,
        trustedRootPath: feedRoot,
        origin: 'environment',
        label: new URL(feedUrl).origin,
      };
    }
    const demo = this.deps.demo;
    if (!demo) return null;
    return {
      metadataUrl: demo.url,
      targetsUrl: `${demo.url}/targets`,
      trustedRootPath: demo.rootPath,
      metadataDir: demo.clientDir(gatewayId),
      origin: 'demo',
      demo: true,
      label: demo.label,
    };
  }

  private remembered(gatewayId: string): Remembered | null | undefined {
    if (this.last.has(gatewayId)) return this.last.get(gatewayId);
    try {
      return readJsonFile<Remembered | null>(this.deps.stateFile(gatewayId));
    } catch {
      return undefined; // unreadable: as if never seen
    }
  }

  /** The gateway's feed now (null: none configured). */
  resolve(gatewayId: string): ResolvedFeed | null {
    const feed = this.compute(gatewayId);
    const now: Remembered | null = feed
      ? { origin: feed.origin, label: feed.label, metadataUrl: feed.metadataUrl }
      : null;
    const before = this.remembered(gatewayId);
    this.last.set(gatewayId, now);
    // The demo feed's port changes on every start: a demo feed is the same source on any port.
    const key = (r: Remembered | null) =>
      r ? `${r.origin} ${r.origin === 'demo' ? '' : r.metadataUrl}` : '';
    if (before === undefined || key(before) !== key(now)) {
      writeFileAtomicSync(this.deps.stateFile(gatewayId), JSON.stringify(now));
      if (before !== undefined) this.deps.onChange(gatewayId, before, feed);
    }
    return feed;
  }
}

/** `<gatewayDir>/feed/source.json`. */
export function feedStateFile(gatewayDir: string): string {
  return path.join(gatewayDir, 'feed', 'source.json');
}
