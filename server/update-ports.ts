import type { KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { loadPublicKey } from '../bundle/keys.js';
import type { GatewayRuntime } from '../services/gateways.js';
import type { HealthCheck } from '../services/updates/partitions.js';
import { feedHttpClient, TufFeedPort, type FeedLocation } from '../services/updates/feed-port.js';
import type { UpdatePorts } from '../services/updates/job-types.js';
import type { GantryDeps } from './deps.js';

/** The parts of the safety and provisioning services the update pipeline relies on. */
interface SafetyPort {
  assertAllowed(gatewayId: string, action: string): void;
  blocking(gatewayId: string): string[];
  onChange(gatewayId: string, listener: (blocking: string[]) => void): () => void;
  operationCompleted(gatewayId: string, operationId: string): void;
}
interface HookResult {
  ok: boolean;
  failures: Array<{ plugin: string; exitCode: number | null; reason: string }>;
}
interface ProvisioningPort {
  trustedKeys(gatewayId: string): KeyObject[];
  feed(gatewayId: string): FeedLocation | null;
  runHooks(
    gatewayId: string,
    kind: 'post-install' | 'health-check',
    env: Record<string, string>,
  ): Promise<HookResult>;
}

interface ResettablePort {
  reset(gatewayId: string): void | Promise<void>;
}
interface SnapshotPort extends ResettablePort {
  createUnderLock(
    gw: GatewayRuntime,
    input: { name: string; description: string },
    username: string,
  ): Promise<string>;
}

/** What the ports read of the app, built before the update services themselves. */
type PortDeps = Pick<GantryDeps, 'config' | 'settings' | 'gateways'> & {
  safety?: SafetyPort;
  provisioning?: ProvisioningPort & ResettablePort;
  snapshots?: SnapshotPort;
};

/** `*.pem` public keys in `<dataDir>/trusted-keys/`: the development fallback for signing keys. */
function keysFromDir(dir: string): KeyObject[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.pem'))
    .map((f) => loadPublicKey(path.join(dir, f)));
}

function hookFailure(result: HookResult): string | null {
  return result.ok ? null : result.failures.map((f) => `${f.plugin}: ${f.reason}`).join('; ');
}

export function feedLocation(deps: PortDeps, gatewayId: string): FeedLocation | null {
  const provisioned = deps.provisioning?.feed(gatewayId);
  if (provisioned) return provisioned;
  const { feedUrl, feedTargetsUrl, feedRoot } = deps.config;
  if (!feedUrl || !feedRoot) return null;
  return {
    metadataUrl: feedUrl,
    targetsUrl: feedTargetsUrl ?? `${feedUrl.replace(/\/$/, '')}/targets`,
    trustedRootPath: feedRoot,
  };
}

export function createUpdatePorts(deps: PortDeps): UpdatePorts {
  const fallbackKeysDir = path.join(deps.config.dataDir, 'trusted-keys');
  return {
    feed: new TufFeedPort(
      (id) => feedLocation(deps, id),
      (id) => path.join(deps.gateways.gatewayDir(id), 'feed', 'metadata'),
      feedHttpClient(deps.config),
    ),
    trustedKeys: (id) => deps.provisioning?.trustedKeys(id) ?? keysFromDir(fallbackKeysDir),
    assertSafe: (id, action) => deps.safety?.assertAllowed(id, action),
    blocking: (id) => deps.safety?.blocking(id) ?? [],
    onSafetyChange: (id, listener) => deps.safety?.onChange(id, listener) ?? (() => undefined),
    operationCompleted: (id, op) => deps.safety?.operationCompleted(id, op),
    async snapshotBeforeInstall(gw: GatewayRuntime, jobId: string) {
      if (!deps.snapshots) throw new Error('snapshots are not available');
      return deps.snapshots.createUnderLock(
        gw,
        { name: `pre-install-${jobId}`, description: `Taken by Gantry before installing job ${jobId}` },
        'gantry',
      );
    },
    async factoryWipe(gw: GatewayRuntime) {
      deps.settings.reset(gw.id);
      await deps.snapshots?.reset(gw.id);
      await deps.provisioning?.reset(gw.id);
      fs.rmSync(path.join(deps.gateways.gatewayDir(gw.id), 'uploads'), { recursive: true, force: true });
    },
    async runPostInstallHooks(gw: GatewayRuntime, env) {
      if (!deps.provisioning) return { ok: true, reason: null };
      const result = await deps.provisioning.runHooks(gw.id, 'post-install', env);
      return { ok: result.ok, reason: hookFailure(result) };
    },
  };
}

/** After a trial boot: the platform's self-test, then every plugin's health-check hook. */
export function createHealthCheck(deps: PortDeps): HealthCheck {
  return async (gw, slot) => {
    const self = await gw.device.selfTest(slot);
    if (!self.ok) return self;
    if (!deps.provisioning) return { ok: true, reason: null };
    const hooks = await deps.provisioning.runHooks(gw.id, 'health-check', { GANTRY_SLOT: slot });
    return { ok: hooks.ok, reason: hookFailure(hooks) };
  };
}
