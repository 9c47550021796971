import { createHash, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { GantryError } from '../core/errors.js';
import { readJsonFile, writeFileAtomicSync } from '../core/fsutil.js';
import { HostResourceSampler, hostLoadPerCpu } from './host-resources.js';
import { SlotWriter } from './slot-writer.js';
import { SimulatedComponentSlots } from './simulated-component-slots.js';
import { LendingFileReader, openFileReadAt, type FileReadAt } from '../core/lending.js';
import {
  otherSlot,
  SLOT_IDS,
  type BootEnv,
  type ComponentSlotPair,
  type DeviceEvent,
  type GatewayDevice,
  type ResourceUsage,
  type SafetyReadings,
  type SlotId,
  type SlotInfo,
  type SlotRecord,
  type StorageSpace,
  type SystemInfo,
} from './types.js';

/**
 * A gateway simulated on files under `<dataDir>/gateways/<id>/device/`: two slot image files
 * written with real bytes, the U-Boot environment as an atomically replaced JSON file, a slot
 * status file, sensor readings, and the boot record. It survives restarts, and tests and demos
 * drive it through `SimulatedDeviceControls` (move the crane, fail the next boots of a slot, …).
 */

interface SimulatedState {
  model: string;
  bootloader: string;
  bootedSlot: SlotId;
  bootedAt: number;
  /** New at every simulated boot (absent in state files written before it existed). */
  bootId?: string;
  /**
   * Reboot requests still to be accepted without the system going down (what a real board does when
   * its shutdown is refused or stalls): the caller's process keeps running on the same boot.
   */
  ignoredReboots?: number;
  /** Boots of a slot that will still fail (kernel panic / watchdog) before one succeeds. */
  pendingBootFailures: Record<SlotId, number>;
  /** Self-test outcome per slot, for health checks in the simulator ("the new image is broken"). */
  selfTestFails: Record<SlotId, boolean>;
  /** Overrides the real free space of the data dir (to exercise OTA_INSUFFICIENT_SPACE). */
  freeBytesOverride: number | null;
  slotCapacityBytes: number;
}

interface SensorOverrides {
  craneMotion: SafetyReadings['craneMotion'];
  acsCollision: SafetyReadings['acsCollision'];
  upsBatteryPercent: number;
  networkConnected: boolean;
  /**
   * The simulated gateway's load per CPU. null: the host's real load (a demo on a busy laptop would
   * then block updates for reasons that have nothing to do with the gateway, hence not the default).
   */
  systemLoad: number | null;
  craneEstimatedClearSeconds: number | null;
}

export interface SimulatedDeviceOptions {
  gatewayId: string;
  model: string;
  dir: string;
  /** Clock for uptime and records; tests pass a fake. */
  now?: () => number;
}

const FACTORY_VERSIONS: Record<SlotId, { version: string; kernel: string }> = {
  A: { version: 'v5.0.4', kernel: '6.1.33-LTS' },
  B: { version: 'v5.0.3', kernel: '6.1.30-LTS' },
};
const FACTORY_IMAGE_BYTES = 1024 * 1024;
const MAX_BOOT_ATTEMPTS = 16;

/**
 * A deterministic stand-in image so a fresh simulator's slots hold real, hashable bytes: SHAKE256
 * of the gateway and version, stretched to the image's size in one call. (A chain of 32,768 SHA-256
 * objects per slot left ~2 MiB of freed native allocations scattered through malloc's heap, resident
 * for good: bench/idle-breakdown.ts, first start.)
 */
function factoryImage(gatewayId: string, version: string): Buffer {
  return createHash('shake256', { outputLength: FACTORY_IMAGE_BYTES })
    .update(`${gatewayId}:${version}`)
    .digest();
}

export interface SimulatedDeviceControls {
  setSensors(patch: Partial<SensorOverrides>): Promise<SafetyReadings>;
  failNextBoots(slot: SlotId, count: number): Promise<void>;
  ignoreNextReboots(count: number): Promise<void>;
  setSelfTestFails(slot: SlotId, fails: boolean): Promise<void>;
  selfTest(slot: SlotId): Promise<{ ok: boolean; reason: string | null }>;
  setFreeBytes(bytes: number | null): Promise<void>;
  setSlotCapacity(bytes: number): Promise<void>;
  liveWrite(slot: SlotId, offset: number, data: Buffer): Promise<void>;
}

export class SimulatedDevice implements GatewayDevice, SimulatedDeviceControls {
  readonly gatewayId: string;
  private readonly dir: string;
  private readonly now: () => number;
  private readonly events = new EventEmitter();
  private readonly sampler = new HostResourceSampler();
  private state: SimulatedState;
  /**
   * The slot records and the boot environment as last read or written. This device is the only
   * writer of its files (nothing else in Gantry or the simulator's controls touches them), so what
   * it wrote is what the files hold: `GET /status` no longer reads and parses three JSON files per
   * request (~15% of its CPU under load). Each file is still read once, on first use.
   */
  private readonly slotRecords = new Map<SlotId, SlotRecord>();
  private bootEnv: BootEnv | null = null;

  constructor(opts: SimulatedDeviceOptions) {
    this.gatewayId = opts.gatewayId;
    this.dir = opts.dir;
    this.now = opts.now ?? Date.now;
    fs.mkdirSync(this.dir, { recursive: true });
    this.state = readJsonFile<SimulatedState>(this.file('device.json')) ?? this.provision(opts.model);
    // The configured model wins (GANTRY_GATEWAYS may change between starts), as for the store's row.
    if (this.state.model !== opts.model) this.saveState({ ...this.state, model: opts.model });
  }

  private file(name: string): string {
    return path.join(this.dir, name);
  }

  slotImagePath(slot: SlotId): string {
    return this.file(`slot-${slot}.img`);
  }

  /** First start: factory images on both slots, A booted and committed. */
  private provision(model: string): SimulatedState {
    for (const slot of SLOT_IDS) {
      const { version, kernel } = FACTORY_VERSIONS[slot];
      const image = factoryImage(this.gatewayId, version);
      fs.writeFileSync(this.slotImagePath(slot), image);
      this.saveSlotRecord(slot, {
        state: 'bootable',
        version,
        kernel,
        sha256: createHash('sha256').update(image).digest('hex'),
        imageBytes: image.length,
        installedAt: this.now(),
      });
    }
    writeFileAtomicSync(
      this.file('bootenv.json'),
      JSON.stringify({
        bootSlot: 'A',
        upgradeAvailable: false,
        bootCount: 0,
        bootLimit: 3,
      } satisfies BootEnv),
    );
    const state: SimulatedState = {
      model,
      bootloader: 'U-Boot 2024.01',
      bootedSlot: 'A',
      bootedAt: this.now(),
      bootId: randomUUID(),
      pendingBootFailures: { A: 0, B: 0 },
      selfTestFails: { A: false, B: false },
      freeBytesOverride: null,
      slotCapacityBytes: 8 * 1024 ** 3,
    };
    this.saveState(state);
    return state;
  }

  private saveState(state: SimulatedState): void {
    this.state = state;
    writeFileAtomicSync(this.file('device.json'), JSON.stringify(state, null, 2));
  }

  /** The record kept here (read from its file once): never handed out as it is. */
  private keptSlotRecord(slot: SlotId): SlotRecord {
    let record = this.slotRecords.get(slot);
    if (!record) {
      record = readJsonFile<SlotRecord>(this.file(`slot-${slot}.status.json`)) ?? {
        state: 'empty',
        version: null,
        kernel: null,
        sha256: null,
        imageBytes: 0,
        installedAt: null,
      };
      this.slotRecords.set(slot, record);
    }
    return record;
  }

  private saveSlotRecord(slot: SlotId, record: SlotRecord): void {
    // Forgotten first: if the write throws, the next read goes to the file again.
    this.slotRecords.delete(slot);
    writeFileAtomicSync(this.file(`slot-${slot}.status.json`), JSON.stringify(record, null, 2));
    this.slotRecords.set(slot, { ...record });
  }

  async systemInfo(): Promise<SystemInfo> {
    const booted = this.keptSlotRecord(this.state.bootedSlot);
    return {
      model: this.state.model,
      osVersion: booted.version ?? 'unknown',
      kernel: booted.kernel ?? 'unknown',
      bootloader: this.state.bootloader,
      uptimeSeconds: Math.max(0, (this.now() - this.state.bootedAt) / 1000),
    };
  }

  async bootedSlot(): Promise<SlotId> {
    return this.state.bootedSlot;
  }

  async slots(): Promise<Record<SlotId, SlotInfo>> {
    // Each field named rather than the record spread: one object shape, no copy in between
    // (`/status` builds these on every call). The id is this slot's, whatever the record holds.
    const info = (id: SlotId): SlotInfo => {
      const r = this.keptSlotRecord(id);
      return {
        state: r.state,
        version: r.version,
        kernel: r.kernel,
        sha256: r.sha256,
        imageBytes: r.imageBytes,
        installedAt: r.installedAt,
        id,
        capacityBytes: this.state.slotCapacityBytes,
      };
    };
    return { A: info('A'), B: info('B') };
  }

  async writeSlotRecord(slot: SlotId, record: SlotRecord): Promise<void> {
    this.saveSlotRecord(slot, record);
  }

  async openSlotWriter(slot: SlotId, opts: { offset: number; allowBooted?: boolean }): Promise<SlotWriter> {
    if (slot === this.state.bootedSlot && !opts.allowBooted) {
      throw new Error(`refusing to write slot ${slot}: it is the booted slot`);
    }
    return new SlotWriter(this.slotImagePath(slot), opts.offset, opts.offset === 0);
  }

  openSlotReader(slot: SlotId, range: { start?: number; end?: number } = {}): Readable {
    return new LendingFileReader(this.slotImagePath(slot), range);
  }

  openSlotReadAt(slot: SlotId): Promise<FileReadAt> {
    return openFileReadAt(this.slotImagePath(slot));
  }

  componentSlots(slotClass: string): ComponentSlotPair | null {
    if (slotClass === 'rootfs') return null;
    return new SimulatedComponentSlots(slotClass, this.dir, () => this.state.slotCapacityBytes);
  }

  async readBootEnv(): Promise<BootEnv> {
    if (!this.bootEnv) {
      const env = readJsonFile<BootEnv>(this.file('bootenv.json'));
      if (!env) throw new Error('simulated boot environment missing');
      this.bootEnv = env;
    }
    return { ...this.bootEnv };
  }

  async writeBootEnv(patch: Partial<BootEnv>): Promise<BootEnv> {
    const next = { ...(await this.readBootEnv()), ...patch };
    this.bootEnv = null;
    writeFileAtomicSync(this.file('bootenv.json'), JSON.stringify(next));
    this.bootEnv = { ...next };
    return next;
  }

  /**
   * What U-Boot's boot script does, then the kernel: with `upgrade_available` set, count the boot
   * and fall back to the other slot once `bootcount` passes `bootlimit`; a slot that does not hold
   * a bootable image, or is set to fail, does not come up and the watchdog reboots again.
   */
  async reboot(): Promise<void> {
    if ((this.state.ignoredReboots ?? 0) > 0) {
      this.saveState({ ...this.state, ignoredReboots: (this.state.ignoredReboots ?? 0) - 1 });
      return;
    }
    let env = await this.readBootEnv();
    const failures = { ...this.state.pendingBootFailures };
    for (let attempt = 0; attempt < MAX_BOOT_ATTEMPTS; attempt++) {
      if (env.upgradeAvailable) {
        env = { ...env, bootCount: env.bootCount + 1 };
        if (env.bootCount > env.bootLimit) {
          env = { ...env, bootSlot: otherSlot(env.bootSlot), upgradeAvailable: false, bootCount: 0 };
        }
      }
      await this.writeBootEnv(env);
      const slot = env.bootSlot;
      const bootable = this.keptSlotRecord(slot).state === 'bootable';
      if (bootable && failures[slot] === 0) {
        this.saveState({
          ...this.state,
          bootedSlot: slot,
          bootedAt: this.now(),
          bootId: randomUUID(),
          pendingBootFailures: failures,
        });
        this.events.emit('event', { type: 'booted', slot, bootEnv: env } satisfies DeviceEvent);
        return;
      }
      if (failures[slot] > 0) failures[slot]--;
      // A slot that cannot boot without upgrade_available set would loop forever on real hardware;
      // U-Boot's altbootcmd switches over, which is what the next iteration models.
      if (!env.upgradeAvailable) env = { ...env, bootSlot: otherSlot(slot) };
    }
    throw new Error('simulated gateway did not boot: no slot came up');
  }

  async storageSpace(): Promise<StorageSpace> {
    const stats = await fs.promises.statfs(this.dir);
    const total = stats.blocks * stats.bsize;
    const free = stats.bavail * stats.bsize;
    return { totalBytes: total, freeBytes: this.state.freeBytesOverride ?? free };
  }

  private readSensors(): SensorOverrides {
    return {
      craneMotion: 'idle',
      acsCollision: 'clear',
      upsBatteryPercent: 85,
      networkConnected: true,
      systemLoad: 0.2,
      craneEstimatedClearSeconds: null,
      ...readJsonFile<Partial<SensorOverrides>>(this.file('sensors.json')),
    };
  }

  async readSafety(): Promise<SafetyReadings> {
    const s = this.readSensors();
    return { ...s, systemLoad: s.systemLoad ?? hostLoadPerCpu() };
  }

  async resources(): Promise<ResourceUsage> {
    return this.sampler.sample();
  }

  onEvent(listener: (event: DeviceEvent) => void): () => void {
    this.events.on('event', listener);
    return () => this.events.off('event', listener);
  }

  async close(): Promise<void> {
    this.events.removeAllListeners();
  }

  // --- SimulatedDeviceControls -------------------------------------------------------------

  async setSensors(patch: Partial<SensorOverrides>): Promise<SafetyReadings> {
    writeFileAtomicSync(
      this.file('sensors.json'),
      JSON.stringify({ ...this.readSensors(), ...patch }, null, 2),
    );
    const readings = await this.readSafety();
    this.events.emit('event', { type: 'safety', readings } satisfies DeviceEvent);
    return readings;
  }

  async bootId(): Promise<string> {
    return this.state.bootId ?? `boot-${this.state.bootedAt}`;
  }

  async ignoreNextReboots(count: number): Promise<void> {
    this.saveState({ ...this.state, ignoredReboots: count });
  }

  async failNextBoots(slot: SlotId, count: number): Promise<void> {
    this.saveState({
      ...this.state,
      pendingBootFailures: { ...this.state.pendingBootFailures, [slot]: count },
    });
  }

  async setSelfTestFails(slot: SlotId, fails: boolean): Promise<void> {
    this.saveState({ ...this.state, selfTestFails: { ...this.state.selfTestFails, [slot]: fails } });
  }

  async selfTest(slot: SlotId): Promise<{ ok: boolean; reason: string | null }> {
    return this.state.selfTestFails[slot]
      ? { ok: false, reason: `simulated self-test failure on slot ${slot}` }
      : { ok: true, reason: null };
  }

  async setSlotCapacity(bytes: number): Promise<void> {
    this.saveState({ ...this.state, slotCapacityBytes: bytes });
  }

  /**
   * What a running system writes to the root it mounted (the superblock and journal on mount,
   * /etc and /var as it runs): the slot's bytes change, its record (version, SHA-256) does not.
   * Only within the image the record names.
   */
  async liveWrite(slot: SlotId, offset: number, data: Buffer): Promise<void> {
    const record = (await this.slots())[slot];
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + data.length > record.imageBytes) {
      throw new GantryError(
        'VALIDATION_ERROR',
        `a write of ${data.length} bytes at ${offset} is outside slot ${slot}'s ${record.imageBytes}-byte image`,
      );
    }
    const fd = fs.openSync(this.slotImagePath(slot), 'r+');
    try {
      fs.writeSync(fd, data, 0, data.length, offset);
    } finally {
      fs.closeSync(fd);
    }
  }

  async setFreeBytes(bytes: number | null): Promise<void> {
    this.saveState({ ...this.state, freeBytesOverride: bytes });
  }
}
