import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { EventBus } from '../core/bus.js';
import { MachineEventLog } from '../core/machine-events.js';
import { TokenService } from '../core/auth.js';
import type { GantryConfig } from '../core/config.js';
import { writeFileAtomicSync } from '../core/fsutil.js';
import { openDatabase, type GantryDb } from '../drizzle/db.js';
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
import { createHealthCheck, createUpdatePorts, feedLocation } from './update-ports.js';
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
  zipOps: ZipOperationService;
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

export function createDeps(config: GantryConfig, opts: DepsOptions = {}): GantryDeps {
  const clock = opts.clock ?? Date.now;
  fs.mkdirSync(config.dataDir, { recursive: true });
  const db = openDatabase(path.join(config.dataDir, 'gantry.db'));
  const bus = new EventBus();
  const tokens = new TokenService(jwtSecret(config), config.tokenTtlSeconds);
  const gateways = new GatewayRegistry(db, config.dataDir, clock);
  gateways.load(config.gateways, config.device);
  const settings = new SettingsService(db, clock);
  const logs = new LogService(db, bus, clock);
  const safety = new SafetyService({
    db,
    bus,
    clock,
    gateways,
    logs,
    settings,
    defaultPin: config.safetyPin,
  });
  const provisioning = new ProvisioningService({ config, clock, gateways, settings, logs, safety });
  const zipOps = new ZipOperationService({ config, db, clock, gateways, logs }, provisioning);
  zipOps.recoverInterrupted();
  const jobs = new JobStore(db, clock);
  // Snapshots and bundles left half-made by a crash are settled before anything can list them.
  const snapshots = new SnapshotService({
    db,
    bus,
    clock,
    gateways,
    jobs,
    settings,
    logs,
    retention: config.snapshotRetention,
  });
  snapshots.recoverInterrupted();
  const debugBundles = new DebugBundleService({
    config,
    db,
    clock,
    startedAt: clock(),
    gateways,
    jobs,
    settings,
    logs,
  });
  debugBundles.recoverInterrupted();
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
    zipOps,
    jobs,
    snapshots,
    debugBundles,
  };
  const machineEvents = new MachineEventLog(clock);
  const partitions = new PartitionManager({
    machineEvents,
    db,
    gateways,
    settings: base.settings,
    logs: base.logs,
    clock,
    healthCheck: createHealthCheck(base),
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
  const updates = new UpdateService({
    machineEvents,
    db,
    bus,
    clock,
    gateways,
    settings: base.settings,
    logs: base.logs,
    jobs: base.jobs,
    catalog: new UpdateCatalog(db, clock),
    partitions,
    ports,
    policy: { ...DEFAULT_TRANSFER_POLICY, ...opts.transferPolicy },
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
    feedConfigured: (id) => feedLocation(base, id) !== null,
  });
  return { ...base, partitions, updates, recovery, scheduler, machineEvents };
}
