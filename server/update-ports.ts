import type { KeyObject } from 'node:crypto';
import path from 'node:path';
import { removeTreeSync } from '../core/fsutil.js';
import type { RunningDemoFeed } from '../feed/demo-feed.js';
import type { GatewayRegistry, GatewayRuntime } from '../services/gateways.js';
import type { SettingsService } from '../services/settings.js';
import type { HealthCheck } from '../services/updates/partitions.js';
import { feedHttpClient, TufFeedPort, type FeedLocation } from '../services/updates/feed-port.js';
import type { UpdatePorts } from '../services/updates/job-types.js';
import type { FeedSources } from './feed-sources.js';

/** The parts of the safety service the update pipeline relies on: the interlock of every install. */
export interface SafetyPort {
  assertAllowed(gatewayId: string, action: string): void;
  blocking(gatewayId: string): string[];
  onChange(gatewayId: string, listener: (blocking: string[]) => void): () => void;
  operationCompleted(gatewayId: string, operationId: string): void;
}
interface HookResult {
  ok: boolean;
  failures: Array<{ plugin: string; exitCode: number | null; reason: string }>;
}
interface ResettablePort {
  reset(gatewayId: string): void | Promise<void>;
}
/** Trusted signing keys (configuration ZIP and `<dataDir>/trusted-keys/`), feed and plugin hooks. */
export interface ProvisioningPort extends ResettablePort {
  trustedKeys(gatewayId: string): KeyObject[];
  feed(gatewayId: string): FeedLocation | null;
  runHooks(
    gatewayId: string,
    kind: 'post-install' | 'health-check',
    env: Record<string, string>,
  ): Promise<HookResult>;
}
export interface SnapshotPort extends ResettablePort {
  createUnderLock(
    gw: GatewayRuntime,
    input: { name: string; description: string },
    username: string,
  ): Promise<string>;
}

/**
 * What the ports read of the app, built before the update services themselves. Every port is
 * required (issue 12.5): a missing safety port must not be able to mean "every install allowed".
 * Declared here rather than picked from GantryDeps, so server/deps.ts and this file do not import
 * each other.
 */
export interface PortDeps {
  config: Parameters<typeof feedHttpClient>[0];
  settings: Pick<SettingsService, 'reset'>;
  gateways: Pick<GatewayRegistry, 'gatewayDir'>;
  feeds: Pick<FeedSources, 'resolve'>;
  demoFeed: Pick<RunningDemoFeed, 'signingKey'> | null;
  safety: SafetyPort;
  provisioning: ProvisioningPort;
  snapshots: SnapshotPort;
}

function hookFailure(result: HookResult): string | null {
  return result.ok ? null : result.failures.map((f) => `${f.plugin}: ${f.reason}`).join('; ');
}

export function createUpdatePorts(deps: PortDeps): UpdatePorts {
  return {
    feed: new TufFeedPort(
      (id) => deps.feeds.resolve(id),
      (id) => path.join(deps.gateways.gatewayDir(id), 'feed', 'metadata'),
      feedHttpClient(deps.config),
    ),
    trustedKeys: (id) => {
      const keys = deps.provisioning.trustedKeys(id);
      // The demo key signs only the demo releases: trusted while the gateway uses the demo feed, never after.
      const demoKey = deps.demoFeed?.signingKey;
      return demoKey && deps.feeds.resolve(id)?.origin === 'demo' ? [...keys, demoKey] : keys;
    },
    assertSafe: (id, action) => deps.safety.assertAllowed(id, action),
    blocking: (id) => deps.safety.blocking(id),
    onSafetyChange: (id, listener) => deps.safety.onChange(id, listener),
    operationCompleted: (id, op) => deps.safety.operationCompleted(id, op),
    async snapshotBeforeInstall(gw: GatewayRuntime, jobId: string) {
      return deps.snapshots.createUnderLock(
        gw,
        { name: `pre-install-${jobId}`, description: `Taken by Gantry before installing job ${jobId}` },
        'gantry',
      );
    },
    async factoryWipe(gw: GatewayRuntime) {
      deps.settings.reset(gw.id);
      await deps.snapshots.reset(gw.id);
      await deps.provisioning.reset(gw.id);
      removeTreeSync(path.join(deps.gateways.gatewayDir(gw.id), 'uploads'));
    },
    async runPostInstallHooks(gw: GatewayRuntime, env) {
      const result = await deps.provisioning.runHooks(gw.id, 'post-install', env);
      return { ok: result.ok, reason: hookFailure(result) };
    },
  };
}

/** After a trial boot: the platform's self-test, then every plugin's health-check hook. */
export function createHealthCheck(deps: Pick<PortDeps, 'provisioning'>): HealthCheck {
  return async (gw, slot) => {
    const self = await gw.device.selfTest(slot);
    if (!self.ok) return self;
    const hooks = await deps.provisioning.runHooks(gw.id, 'health-check', { GANTRY_SLOT: slot });
    return { ok: hooks.ok, reason: hookFailure(hooks) };
  };
}
