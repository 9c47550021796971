import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { EventBus } from '../core/bus.js';
import { MachineEventLog } from '../core/machine-events.js';
import { TokenService } from '../core/auth.js';
import type { GantryConfig } from '../core/config.js';
import { writeFileAtomicSync } from '../core/fsutil.js';
import { createDynamicProvider } from '../delta/dynamic/provider.js';
import { openDatabase, type GantryDb } from '../drizzle/db.js';
import { ActorSnapshotStore } from '../services/actor-snapshots.js';
import { AuditService } from '../services/audit.js';
import { DebugBundleService } from '../services/debug-bundle.js';
import { GatewayRegistry } from '../services/gateways.js';
import { ProvisioningService } from '../services/provisioning.js';
import { ZipOperationService } from '../services/zip-operations.js';
import { JobStore } from '../services/jobs.js';
import { UpdateCatalog } from '../services/updates/catalog.js';
import { PartitionManager } from '../services/updates/partitions.js';
import { DEFAULT_TRANSFER_POLICY, type TransferPolicy } from '../services/updates/transfer.js';
import { UpdateService } from '../services/updates/update-service.js';
import { ComponentService } from '../services/components/component-service.js';
import { createHealthCheck, createUpdatePorts } from './update-ports.js';
import { FeedSources, feedStateFile, type ResolvedFeed } from './feed-sources.js';
import type { RunningDemoFeed } from '../feed/demo-feed.js';
import { LogService } from '../services/logs.js';
import { SafetyService } from '../services/safety.js';
import { SettingsService } from '../services/settings.js';
import { SnapshotService } from '../services/snapshots.js';
import { RecoveryService } from '../services/recovery.js';
import { MaintenanceScheduler } from '../services/scheduler.js';
import { UserService } from '../services/users.js';

/** Everything a request handler may reach, built once per running server (no module singletons). */
export interface GantryDeps {
  config: GantryConfig;
  db: GantryDb;
  bus: EventBus;
  clock: () => number;
  startedAt: number;
  gateways: GatewayRegistry;
  tokens: TokenService;
  users: UserService;
  settings: SettingsService;
  logs: LogService;
  audit: AuditService;
  safety: SafetyService;
  jobs: JobStore;
  /** Every statechart's persisted snapshot (jobs, partition pairs, safety interlocks). */
  actorSnapshots: ActorSnapshotStore;
  partitions: PartitionManager;
  updates: UpdateService;
  /** System snapshots (copy of the booted slot + configuration) and debug bundles (SECTION 1). */
  snapshots: SnapshotService;
  debugBundles: DebugBundleService;
  recovery: RecoveryService;
  scheduler: MaintenanceScheduler;
  machineEvents: MachineEventLog;
  /** Configuration and plugins installed by the ZIP operations; keys, feed and hooks for updates. */
  provisioning: ProvisioningService;
  /** Which feed each gateway uses (configuration ZIP, environment, demo feed). */
  feeds: FeedSources;
  /** The local demo feed this server runs (simulated gateways with no feed configured), or null. */
  demoFeed: RunningDemoFeed | null;
  zipOps: ZipOperationService;
  /** Multi-component bundles: what is installed of each component, and their install sequences. */
  components: ComponentService;
}

/** GANTRY_JWT_SECRET, else a random secret generated once and kept (0600) in the data dir. */
function jwtSecret(config: GantryConfig): string {
  if (config.jwtSecret) return config.jwtSecret;
  const file = path.join(config.dataDir, 'secrets', 'jwt-secret');
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    const secret = randomBytes(48).toString('base64url');
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    writeFileAtomicSync(file, secret, 0o600);
    return secret;
  }
}

export interface DepsOptions {
  clock?: () => number;
  /** Started by startGantry when demoFeedWanted(config). */
  demoFeed?: RunningDemoFeed | null;
  transferPolicy?: Partial<TransferPolicy>;
}

/** Resolves once no un-overridden safety constraint blocks the gateway. */
function untilSafe(safety: SafetyService, gatewayId: string, onWait: () => void): Promise<void> {
  if (safety.blocking(gatewayId).length === 0) return Promise.resolve();
  onWait();
  return new Promise((resolve) => {
    const stop = safety.onChange(gatewayId, (blocking) => {
      if (blocking.length === 0) {
        stop();
        resolve();
      }
    });
  });
}

function feedChangeMessage(from: { origin: string; label: string } | null, to: ResolvedFeed | null): string {
  const source = { configuration: 'the configuration ZIP', environment: 'GANTRY_FEED_URL', demo: '' };
  if (from?.origin === 'demo') {
    return to
      ? `The demo feed is no longer used: updates now come from ${to.label} (${source[to.origin]})`
      : 'The demo feed is no longer used; no update feed is configured';
  }
  if (to?.origin === 'demo') return `No update feed is configured any more: using the ${to.label} again`;
  if (!to) return 'No update feed is configured any more';
  return `Update feed is now ${to.label} (${source[to.origin]})`;
}

export function createDeps(config: GantryConfig, opts: DepsOptions = {}): GantryDeps {
  const clock = opts.clock ?? Date.now;
  fs.mkdirSync(config.dataDir, { recursive: true });
  const db = openDatabase(path.join(config.dataDir, 'gantry.db'));
  const bus = new EventBus();
  const machineEvents = new MachineEventLog(clock, bus);
  const tokens = new TokenService(jwtSecret(config), config.tokenTtlSeconds);
  const gateways = new GatewayRegistry(db, config.dataDir, clock);
  gateways.load(config.gateways, config.device);
  const settings = new SettingsService(db, clock);
  const logs = new LogService(db, bus, clock);
  const jobs = new JobStore(db, clock);
  const actorSnapshots = new ActorSnapshotStore(db, clock);
  const safety = new SafetyService({
    db,
    actorSnapshots,
    bus,
    clock,
    gateways,
    logs,
    settings,
    defaultPin: config.safetyPin,
    machineEvents,
  });
  const catalog = new UpdateCatalog(db, clock);
  const demoFeed = opts.demoFeed ?? null;
  const feeds = new FeedSources({
    config,
    provisioned: (id) => provisioning.feed(id),
    demo: demoFeed,
    stateFile: (id) => feedStateFile(gateways.gatewayDir(id)),
    onChange: (id, from, to) => {
      // What the old feed listed cannot be fetched from the new one.
      catalog.unlistAll(id);
      logs.info(id, 'ota', feedChangeMessage(from, to));
    },
  });
  const provisioning = new ProvisioningService({
    config,
    clock,
    gateways,
    settings,
    logs,
    safety,
    // Resolving at once tells a feed change the moment a configuration is applied or reset.
    onConfigurationChanged: (id) => void feeds.resolve(id),
  });
  const zipOps = new ZipOperationService(
    { config, jobs, actorSnapshots, clock, gateways, logs, machineEvents },
    provisioning,
  );
  // Jobs a crash interrupted are settled by startGantry (services/job-restart.ts), before the sweep.
  const snapshots = new SnapshotService({
    bus,
    clock,
    gateways,
    jobs,
    settings,
    logs,
    retention: config.snapshotRetention,
  });
  const debugBundles = new DebugBundleService({
    config,
    db,
    clock,
    startedAt: clock(),
    gateways,
    jobs,
    actorSnapshots,
    settings,
    logs,
  });
  const base = {
    config,
    db,
    bus,
    clock,
    startedAt: clock(),
    gateways,
    tokens,
    users: new UserService(db, tokens, clock, config.loginAttemptsPerMinute),
    settings,
    logs,
    audit: new AuditService(db, clock),
    safety,
    provisioning,
    feeds,
    demoFeed,
    zipOps,
    jobs,
    actorSnapshots,
    snapshots,
    debugBundles,
  };
  // Built after the partition manager (it follows its boots); its seamless checks join the boot
  // health check, which the partition manager is built with: bound late.
  let components: ComponentService | null = null;
  const healthCheck = createHealthCheck(base);
  const partitions = new PartitionManager({
    machineEvents,
    db,
    actorSnapshots,
    gateways,
    settings: base.settings,
    logs: base.logs,
    clock,
    healthCheck: async (gw, slot) => {
      const result = await healthCheck(gw, slot);
      if (!result.ok || !components) return result;
      const failure = await components.bootHealthCheck(gw);
      return failure ? { ok: false, reason: failure } : result;
    },
    reboot: async (gw, reason) => {
      // Every reboot goes through the interlock: an auto-rollback waits for a moving crane to stop.
      await untilSafe(safety, gw.id, () =>
        base.logs.warn(gw.id, 'partition', `Reboot (${reason}) waits: ${safety.blocking(gw.id).join(', ')}`),
      );
      base.logs.info(gw.id, 'partition', `Rebooting: ${reason}`);
      await gw.device.reboot();
    },
  });
  const ports = createUpdatePorts(base);
  components = new ComponentService({
    clock,
    logs: base.logs,
    gatewayDir: (id) => gateways.gatewayDir(id),
    partitions,
    actorSnapshots,
    plugins: provisioning,
    blocking: (id) => safety.blocking(id),
    onSafetyChange: (id, listener) => safety.onChange(id, listener),
    machineEvents,
    rebootTimeoutMs: config.rebootTimeoutSeconds * 1000,
  });
  const updates = new UpdateService({
    machineEvents,
    bus,
    clock,
    gateways,
    settings: base.settings,
    logs: base.logs,
    jobs: base.jobs,
    actorSnapshots,
    catalog,
    partitions,
    ports,
    components,
    dynamic: createDynamicProvider(),
    policy: {
      ...DEFAULT_TRANSFER_POLICY,
      maxTransferMs: config.downloadTimeoutMinutes * 60_000,
      dynamicThreshold: config.dynamicDeltaMaxPercent / 100,
      ...opts.transferPolicy,
    },
  });
  updates.registerProgress('snapshot', (gw, row) => snapshots.progress(gw, row));
  const recovery = new RecoveryService({
    gateways,
    partitions,
    updates,
    safety,
    snapshots,
    jobs,
    logs,
    clock,
    trustedKeys: (id) => ports.trustedKeys(id),
  });
  const scheduler = new MaintenanceScheduler({
    db,
    clock,
    gateways,
    settings,
    logs,
    updates,
    feedConfigured: (id) => feeds.resolve(id) !== null,
  });
  return { ...base, partitions, updates, recovery, scheduler, machineEvents, components };
}
