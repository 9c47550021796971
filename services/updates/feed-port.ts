import fs from 'node:fs';
import path from 'node:path';
import type { GantryConfig } from '../../core/config.js';
import { FeedClient } from '../../feed/client.js';
import { fetchTarget, type TargetValidator } from '../../feed/fetch.js';
import { FeedHttpClient } from '../../feed/http/client.js';
import type { ProxySettings } from '../../feed/http/proxy.js';
import type { FeedPort, FeedServer, FeedTarget } from './catalog.js';

export interface FeedLocation {
  metadataUrl: string;
  targetsUrl: string;
  trustedRootPath: string;
  /** How the feed is shown to operators; the metadata URL's origin by default. */
  label?: string;
  /** The local demo feed (marked as such wherever it shows). */
  demo?: boolean;
  /** Where the verified metadata is kept; the gateway's own feed directory by default. */
  metadataDir?: string;
  /** The configuration ZIP's proxy fields; they win over the environment's, field by field. */
  proxy?: ProxySettings;
}

/** The feed's HTTP client as the server configuration sets it up (client, proxies, extra CAs). */
export function feedHttpClient(
  config: Pick<GantryConfig, 'feedHttpClient' | 'feedCaFile' | 'httpsProxy' | 'httpProxy' | 'noProxy'>,
): FeedHttpClient {
  let extraCa: string[] | undefined;
  if (config.feedCaFile) {
    try {
      extraCa = [fs.readFileSync(config.feedCaFile, 'utf8')];
    } catch (err) {
      throw new Error(`GANTRY_FEED_CA_FILE: cannot read ${config.feedCaFile}: ${(err as Error).message}`);
    }
  }
  return new FeedHttpClient({
    implementation: config.feedHttpClient,
    proxy: { httpsProxy: config.httpsProxy, httpProxy: config.httpProxy, noProxy: config.noProxy },
    extraCa,
  });
}

/**
 * The gateway's TUF feed: metadata refreshed (and verified) with tuf-js into the gateway's own
 * metadata dir, target bytes streamed by Gantry's pipeline, bounded by the signed length. One HTTP
 * client (one connection pool) serves every gateway's feed.
 */
export class TufFeedPort implements FeedPort {
  constructor(
    private readonly location: (gatewayId: string) => FeedLocation | null,
    private readonly metadataDir: (gatewayId: string) => string,
    private readonly http: FeedHttpClient = new FeedHttpClient(),
  ) {}

  server(gatewayId: string): FeedServer | null {
    const loc = this.location(gatewayId);
    return loc ? { label: loc.label ?? new URL(loc.metadataUrl).origin, demo: loc.demo === true } : null;
  }

  private client(gatewayId: string): { client: FeedClient; loc: FeedLocation } {
    const loc = this.location(gatewayId);
    if (!loc) throw new Error(`gateway ${gatewayId} has no update feed`);
    const client = new FeedClient({
      metadataDir: loc.metadataDir ?? this.metadataDir(gatewayId),
      metadataBaseUrl: loc.metadataUrl,
      targetBaseUrl: loc.targetsUrl,
      trustedRoot: fs.readFileSync(path.resolve(loc.trustedRootPath)),
      http: this.http,
      proxy: loc.proxy,
    });
    return { client, loc };
  }

  async refresh(gatewayId: string): Promise<FeedTarget[]> {
    const targets = await this.client(gatewayId).client.refresh();
    return targets.map((t) => ({
      path: t.path,
      length: t.length,
      sha256: t.sha256,
      custom: (t.custom ?? {}) as Record<string, unknown>,
    }));
  }

  async open(
    gatewayId: string,
    target: FeedTarget,
    offset: number,
    signal: AbortSignal,
    validator?: TargetValidator,
    end?: number,
  ) {
    const loc = this.location(gatewayId);
    if (!loc) throw new Error(`gateway ${gatewayId} has no update feed`);
    return fetchTarget(loc.targetsUrl, target, {
      offset,
      end,
      signal,
      validator,
      http: this.http,
      proxy: loc.proxy,
    });
  }
}
