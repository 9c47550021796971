import type { Readable } from 'node:stream';
import type { FileReadAt } from '../core/lending.js';
import type { SlotWriter } from './slot-writer.js';

/**
 * Everything Gantry asks of a gateway's hardware and OS, behind one interface. Two
 * implementations: `SimulatedDevice` (files under the data dir; the default, runs anywhere) and
 * the Linux one (U-Boot env tools, block devices, /proc). Services never reach the OS otherwise.
 */

import type { SlotId } from '../core/vocabulary.js';
export { SLOT_IDS, type SlotId } from '../core/vocabulary.js';

export function otherSlot(slot: SlotId): SlotId {
  return slot === 'A' ? 'B' : 'A';
}

export interface SystemInfo {
  model: string;
  osVersion: string;
  kernel: string;
  bootloader: string;
  uptimeSeconds: number;
}

/**
 * What is known about a slot's content, kept beside the slots like RAUC's status file.
 * `invalid` is written *before* the first byte of a new image and replaced by `bootable` only after
 * every hash matched, so a torn or tampered write can never look bootable.
 */
export type SlotContentState = 'empty' | 'invalid' | 'bootable';

export interface SlotRecord {
  state: SlotContentState;
  version: string | null;
  kernel: string | null;
  /** SHA-256 (hex) of the image bytes on the slot, when bootable. */
  sha256: string | null;
  /** Bytes of image on the slot (the "used" of /status). */
  imageBytes: number;
  installedAt: number | null;
}

export interface SlotInfo extends SlotRecord {
  id: SlotId;
  capacityBytes: number;
}

/**
 * The bootloader environment, as U-Boot keeps it for A/B (Mender's layout): the slot to boot,
 * whether that slot is on trial (`upgrade_available`), how many times it was tried (`bootcount`)
 * and after how many tries U-Boot falls back to the other slot (`bootlimit`).
 */
export interface BootEnv {
  bootSlot: SlotId;
  upgradeAvailable: boolean;
  bootCount: number;
  bootLimit: number;
}

export type CraneMotion = 'idle' | 'moving';
export type AcsStatus = 'clear' | 'warning' | 'collision_risk';

export interface SafetyReadings {
  craneMotion: CraneMotion;
  acsCollision: AcsStatus;
  upsBatteryPercent: number;
  networkConnected: boolean;
  /** 1-minute load average divided by the number of CPUs (1.0 = fully busy). */
  systemLoad: number;
  /** Seconds until a moving crane is expected to stop, where the crane controller says. */
  craneEstimatedClearSeconds: number | null;
}

export interface ResourceUsage {
  /** Percent of all CPUs busy since the previous sample. */
  cpuUsage: number;
  /** Percent of memory in use. */
  memoryUsage: number;
}

export interface StorageSpace {
  freeBytes: number;
  totalBytes: number;
}

/**
 * The A/B pair of a component slot class other than the root filesystem (an application
 * partition, …): what the `ab-slot` component handler writes and switches. The root filesystem's
 * pair is the device's own slots (its class is `rootfs`).
 */
export interface ComponentSlotPair {
  readonly slotClass: string;
  /** The slot of this class the system uses now. */
  activeSlot(): Promise<SlotId>;
  /** Makes `slot` the one in use, atomically (one bootloader variable, one rename). */
  setActiveSlot(slot: SlotId): Promise<void>;
  capacityBytes(slot: SlotId): Promise<number>;
  /** Refuses the active slot unless `allowActive` (the in-place strategy). */
  openWriter(slot: SlotId, opts: { offset: number; allowActive?: boolean }): Promise<SlotWriter>;
  openReader(slot: SlotId, range?: { start?: number; end?: number }): Readable;
}

export type DeviceEvent =
  { type: 'booted'; slot: SlotId; bootEnv: BootEnv } | { type: 'safety'; readings: SafetyReadings };

/**
 * No `kind`: services never ask which implementation they hold (issue 12.4). What differs between
 * devices is answered by the methods themselves; the simulator's extra controls are reached only
 * through the simulator API (api/routers/simulator.ts).
 */
export interface GatewayDevice {
  readonly gatewayId: string;

  systemInfo(): Promise<SystemInfo>;
  /** The slot the running system booted from, as the OS reports it (not Gantry's memory). */
  bootedSlot(): Promise<SlotId>;
  slots(): Promise<Record<SlotId, SlotInfo>>;
  writeSlotRecord(slot: SlotId, record: SlotRecord): Promise<void>;
  /**
   * A writer onto the slot starting at `offset` (resume: bytes past it are dropped), fsynced before
   * 'finish' and on `checkpoint()`. Refuses the booted slot unless `allowBooted` (in-place strategy).
   */
  openSlotWriter(slot: SlotId, opts: { offset: number; allowBooted?: boolean }): Promise<SlotWriter>;
  openSlotReader(slot: SlotId, range?: { start?: number; end?: number }): Readable;
  /** Positional reads of the slot through one descriptor, for many small reads (a hop delta's sources). */
  openSlotReadAt(slot: SlotId): Promise<FileReadAt>;

  /** The A/B pair of another slot class (`app`, …); null when this device has none of that class. */
  componentSlots(slotClass: string): ComponentSlotPair | null;

  readBootEnv(): Promise<BootEnv>;
  writeBootEnv(patch: Partial<BootEnv>): Promise<BootEnv>;
  /**
   * Asks for a reboot. The simulator boots again in-process and reports it with a 'booted' event;
   * a real device's command returns once the OS accepted it and this process ends soon after.
   */
  reboot(): Promise<void>;
  /**
   * Changes with every boot of the system, never with a restart of Gantry (Linux: the kernel's
   * `boot_id`): how a resumed step tells whether the reboot it asked for has happened.
   */
  bootId(): Promise<string>;

  /** The platform's own check of the running system (services up, watchdog fed) after a boot. */
  selfTest(slot: SlotId): Promise<{ ok: boolean; reason: string | null }>;

  storageSpace(): Promise<StorageSpace>;
  readSafety(): Promise<SafetyReadings>;
  resources(): Promise<ResourceUsage>;
  onEvent(listener: (event: DeviceEvent) => void): () => void;
  close(): Promise<void>;
}
