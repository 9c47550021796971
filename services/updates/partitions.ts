import { createActor, type Actor, type SnapshotFrom } from 'xstate';
import { partitionMachine, partitionPersisted } from '../../machines/partition.js';
import { restoreOptions } from '../../machines/persist.js';
import { GantryError } from '../../core/errors.js';
import type { MachineEventLog } from '../../core/machine-events.js';
import type { GantryDb } from '../../drizzle/db.js';
import { otherSlot, type SlotId } from '../../device/types.js';
import type { ActorSnapshotStore } from '../actor-snapshots.js';
import type { GatewayRegistry, GatewayRuntime } from '../gateways.js';
import type { LogService } from '../logs.js';
import type { SettingsService } from '../settings.js';

type PartitionActor = Actor<typeof partitionMachine>;
export type PartitionSnapshot = SnapshotFrom<typeof partitionMachine>;
type PartitionEvent = Parameters<PartitionActor['send']>[0];

/** Bootloader effects the partition statechart asks for; performed here, in order, after each event. */
type BootEffect = { kind: 'arm'; slot: SlotId } | { kind: 'commit' } | { kind: 'rollback'; to: SlotId };

export interface HealthCheck {
  (gateway: GatewayRuntime, slot: SlotId): Promise<{ ok: boolean; reason: string | null }>;
}

export interface PartitionManagerDeps {
  db: GantryDb;
  /** Where the pair's statechart snapshot is kept. */
  actorSnapshots: ActorSnapshotStore;
  gateways: GatewayRegistry;
  settings: SettingsService;
  logs: LogService;
  clock: () => number;
  healthCheck: HealthCheck;
  /** Reboots through the safety interlock; resolves when the (simulated) boot has been handled. */
  reboot(gateway: GatewayRuntime, reason: string): Promise<void>;
  /** Events the partition statecharts receive, for the development inspector. */
  machineEvents?: MachineEventLog;
}

/**
 * One A/B partition statechart per gateway, kept in the store, reconciled with what the device
 * reports after every boot: trial boots are health-checked and committed (mark-good) or counted
 * towards auto-rollback, the way RAUC and Mender treat a new slot until it proves itself.
 */
export class PartitionManager {
  private readonly actors = new Map<string, PartitionActor>();
  private readonly effects = new Map<string, BootEffect[]>();
  private readonly unsubscribers: Array<() => void> = [];
  /** Serializes boot handling per gateway (a reboot may be reported while a check runs). */
  private readonly chains = new Map<string, Promise<void>>();
  private readonly listeners = new Set<(gw: GatewayRuntime) => void>();

  constructor(private readonly deps: PartitionManagerDeps) {}

  async start(): Promise<void> {
    for (const gw of this.deps.gateways.all()) {
      await this.load(gw);
      this.unsubscribers.push(
        gw.device.onEvent((event) => {
          if (event.type === 'booted') void this.afterBoot(gw);
        }),
      );
      await this.afterBoot(gw);
    }
  }

  stop(): void {
    this.unsubscribers.splice(0).forEach((fn) => fn());
    for (const actor of this.actors.values()) actor.stop();
    this.actors.clear();
  }

  private async load(gw: GatewayRuntime): Promise<void> {
    const stored = this.deps.actorSnapshots.load(partitionPersisted, gw.id);
    if (stored.status === 'refused') {
      // This state drives the bootloader: never guess from a snapshot that cannot be trusted.
      this.deps.logs.error(
        gw.id,
        'partition',
        `Stored A/B slot state refused (${stored.reason}); re-read from the device instead`,
      );
    }
    const settings = this.deps.settings.get(gw.id);
    const machine = partitionMachine.provide({
      actions: {
        armBootloader: (_, params) => this.queue(gw.id, { kind: 'arm', slot: params.slot }),
        commitBootloader: () => this.queue(gw.id, { kind: 'commit' }),
        rollbackBootloader: (_, params) => this.queue(gw.id, { kind: 'rollback', to: params.slot }),
      },
    });
    let actor: PartitionActor | undefined;
    const inspect = this.deps.machineEvents?.inspector(gw.id, 'partition', gw.id, (ref) => ref === actor);
    if (stored.status === 'found') {
      actor = createActor(machine, { ...restoreOptions(stored.snapshot), inspect });
    } else {
      const [slots, booted, env] = await Promise.all([
        gw.device.slots(),
        gw.device.bootedSlot(),
        gw.device.readBootEnv(),
      ]);
      const content = (id: SlotId) => (slots[id].state === 'bootable' ? 'bootable' : slots[id].state);
      actor = createActor(machine, {
        inspect,
        input: {
          booted,
          nextBoot: slots[env.bootSlot].state === 'bootable' ? env.bootSlot : booted,
          slots: {
            A: { content: content('A'), version: slots.A.version },
            B: { content: content('B'), version: slots.B.version },
          },
          committed: !env.upgradeAvailable,
          upgradeAvailable: env.upgradeAvailable,
          autoRollback: settings.auto_rollback,
          rollbackRetries: settings.rollback_retries,
          versionFloor: slots[booted].version,
        },
      });
    }
    actor.subscribe(() => this.persist(gw.id));
    actor.start();
    this.actors.set(gw.id, actor);
    this.persist(gw.id);
  }

  private queue(gatewayId: string, effect: BootEffect): void {
    const list = this.effects.get(gatewayId) ?? [];
    list.push(effect);
    this.effects.set(gatewayId, list);
  }

  private persist(gatewayId: string): void {
    const actor = this.actors.get(gatewayId);
    if (!actor) return;
    this.deps.actorSnapshots.save(partitionPersisted, gatewayId, gatewayId, actor.getPersistedSnapshot());
  }

  actor(gatewayId: string): PartitionActor {
    const actor = this.actors.get(gatewayId);
    if (!actor) throw new GantryError('GATEWAY_NOT_FOUND', `Gateway ${gatewayId} has no partition state`);
    return actor;
  }

  snapshot(gatewayId: string): PartitionSnapshot {
    return this.actor(gatewayId).getSnapshot();
  }

  /** The version below which bundles are refused (rises only when a new slot is committed). */
  versionFloor(gatewayId: string): string | null {
    return this.snapshot(gatewayId).context.versionFloor;
  }

  /**
   * Called after every event that reached the statechart, once its bootloader effects are written
   * and a commit is recorded as the gateway's last OTA: a listener reading the state then sees it
   * settled on the device too.
   */
  onChange(listener: (gw: GatewayRuntime) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notify(gw: GatewayRuntime): void {
    for (const listener of this.listeners) {
      try {
        listener(gw);
      } catch (err) {
        // A listener's failure must not leave the boot handling half done.
        this.deps.logs.error(gw.id, 'partition', `A partition listener failed: ${(err as Error).message}`);
      }
    }
  }

  /** Sends an event and performs the bootloader effects it asked for, in order. */
  async dispatch(gw: GatewayRuntime, event: PartitionEvent): Promise<PartitionSnapshot> {
    return (await this.dispatchWithReboot(gw, event)).snapshot;
  }

  private async dispatchWithReboot(
    gw: GatewayRuntime,
    event: PartitionEvent,
  ): Promise<{ snapshot: PartitionSnapshot; rebootRequested: boolean }> {
    const actor = this.actor(gw.id);
    let rebootRequested = false;
    let committed = false;
    const subs = [
      actor.on('reboot_requested', () => {
        rebootRequested = true;
      }),
      actor.on('commit', () => {
        committed = true;
      }),
    ];
    actor.send(event);
    subs.forEach((sub) => sub.unsubscribe());
    const effects = this.effects.get(gw.id) ?? [];
    this.effects.set(gw.id, []);
    for (const effect of effects) {
      const bootLimit = this.deps.settings.get(gw.id).rollback_retries;
      if (effect.kind === 'arm') {
        await gw.device.writeBootEnv({
          bootSlot: effect.slot,
          upgradeAvailable: true,
          bootCount: 0,
          bootLimit,
        });
      } else if (effect.kind === 'commit') {
        await gw.device.writeBootEnv({ upgradeAvailable: false, bootCount: 0 });
      } else {
        await gw.device.writeBootEnv({ bootSlot: effect.to, upgradeAvailable: false, bootCount: 0 });
      }
    }
    if (committed) {
      gw.recordOtaCommitted(this.deps.clock());
    }
    this.notify(gw);
    return { snapshot: actor.getSnapshot(), rebootRequested };
  }

  /** WRITE_STARTED, refused (and reported as such) when the machine does not accept it. */
  async startWrite(gw: GatewayRuntime, slot: SlotId, inPlace: boolean): Promise<void> {
    const before = this.snapshot(gw.id);
    // A retry or a resume continues the write already under way.
    if (before.context.slots[slot].content === 'writing') return;
    if (!before.can({ type: 'WRITE_STARTED', slot, inPlace })) {
      throw new GantryError(
        'OTA_INSTALL_FAILED',
        `Slot ${slot} cannot be written now (it is the booted slot)`,
      );
    }
    await this.dispatch(gw, { type: 'WRITE_STARTED', slot, inPlace });
  }

  settingsChanged(gw: GatewayRuntime): void {
    const s = this.deps.settings.get(gw.id);
    this.actor(gw.id).send({
      type: 'SETTINGS',
      autoRollback: s.auto_rollback,
      rollbackRetries: s.rollback_retries,
    });
  }

  /** After every boot (and at start-up): report it, health-check a trial slot, commit or roll back. */
  afterBoot(gw: GatewayRuntime): Promise<void> {
    const prev = this.chains.get(gw.id) ?? Promise.resolve();
    const next = prev
      .then(() => this.handleBoot(gw))
      .catch((err: Error) => {
        this.deps.logs.error(gw.id, 'partition', `Boot handling failed: ${err.message}`);
      });
    this.chains.set(gw.id, next);
    return next;
  }

  /**
   * A slot the gateway had to leave because it failed its trial (health check or bootloader) is
   * marked invalid once the gateway runs elsewhere: it must not look `ready`, and a manual rollback
   * to it must be refused. An operator's rollback leaves the slot alone (nothing was wrong with it),
   * and so does a newer image written there since.
   */
  private async retireFailedSlot(gw: GatewayRuntime, before: PartitionSnapshot): Promise<void> {
    const { lastRollback, booted } = this.snapshot(gw.id).context;
    if (!lastRollback || lastRollback.from === booted) return;
    // Failed its trial: the health check gave up on it, or the bootloader left it while it was
    // staged or on trial. A boot of the other slot for any other reason (an operator's rollback,
    // a boot_slot changed by hand) says nothing bad about the slot that was left.
    const failedTrial =
      lastRollback.initiatedBy === 'health_check' ||
      (lastRollback.initiatedBy === 'bootloader' &&
        lastRollback !== before.context.lastRollback &&
        (before.matches('staged') || before.matches('trial')));
    if (!failedTrial) return;
    const failed = lastRollback.from;
    const record = (await gw.device.slots())[failed];
    if (record.state !== 'bootable' || (record.installedAt ?? 0) > lastRollback.at) return;
    await gw.device.writeSlotRecord(failed, { ...record, state: 'invalid' });
    await this.dispatch(gw, { type: 'INVALIDATE', slot: failed });
    this.deps.logs.warn(
      gw.id,
      'partition',
      `Slot ${failed} (${record.version}) failed its trial and is marked invalid`,
    );
  }

  private async handleBoot(gw: GatewayRuntime): Promise<void> {
    const [slot, env] = await Promise.all([gw.device.bootedSlot(), gw.device.readBootEnv()]);
    const before = this.snapshot(gw.id);
    const after = await this.dispatch(gw, {
      type: 'BOOTED',
      slot,
      at: this.deps.clock(),
      bootCount: env.bootCount,
      upgradeAvailable: env.upgradeAvailable,
    });
    const rollback = after.context.lastRollback;
    if (rollback && rollback !== before.context.lastRollback) {
      this.deps.logs.error(
        gw.id,
        'partition',
        `Rolled back from slot ${rollback.from} to slot ${rollback.to}: ${rollback.reason}`,
      );
    }
    await this.retireFailedSlot(gw, before);
    if (!after.matches('trial')) return;
    this.deps.logs.info(gw.id, 'partition', `Booted slot ${slot} on trial; running health check`);
    const health = await this.deps.healthCheck(gw, slot);
    if (health.ok) {
      const committed = await this.dispatch(gw, { type: 'HEALTH_OK', at: this.deps.clock() });
      const version = committed.context.slots[slot].version;
      this.deps.logs.info(
        gw.id,
        'partition',
        `Slot ${slot} (${version}) passed its health check and is committed`,
      );
      return;
    }
    const { snapshot: failed, rebootRequested } = await this.dispatchWithReboot(gw, {
      type: 'HEALTH_FAILED',
      at: this.deps.clock(),
      reason: health.reason ?? 'health check failed',
    });
    this.deps.logs.error(gw.id, 'partition', `Health check failed on slot ${slot}: ${health.reason}`);
    const back = failed.context.lastRollback;
    const rolledBack = back !== after.context.lastRollback;
    if (rolledBack) {
      this.deps.logs.warn(gw.id, 'partition', `Auto-rollback to slot ${otherSlot(slot)}: rebooting`);
    }
    // Boot again: back to the old slot, or to retry the trial (the bootloader counts the tries).
    if (rebootRequested) await this.deps.reboot(gw, rolledBack ? 'auto-rollback' : 'retry trial boot');
  }
}
