import type { SettingsDocument } from '../core/settings-document.js';
import type { PartitionStatus, SlotId } from '../core/vocabulary.js';
import { otherSlot, type BootEnv, type SlotInfo } from '../device/types.js';
import type { GatewayRuntime } from './gateways.js';

/** A slot as the service knows it: sizes in bytes (api/presenters/system.ts writes "8GB"). */
export interface PartitionState {
  id: SlotId;
  version: string | null;
  status: PartitionStatus;
  capacityBytes: number;
  usedBytes: number;
  booted: boolean;
  nextBoot: boolean;
}

/** The gateway and its partitions, in numbers and epoch milliseconds. */
export interface GatewayStatus {
  gateway: {
    model: string;
    osVersion: string;
    kernel: string;
    uptimeSeconds: number;
    bootloader: string;
    lastOtaAt: number | null;
  };
  partitions: {
    active: PartitionState;
    inactive: PartitionState;
    autoRollback: boolean;
    rollbackRetries: number;
  };
}

/** How a slot looks to an operator, from its content record and the boot environment. */
export function partitionStatus(slot: SlotInfo, booted: SlotId, env: BootEnv): PartitionStatus {
  if (slot.state === 'empty') return 'empty';
  if (slot.state === 'invalid') return 'invalid';
  if (slot.id === booted) return env.upgradeAvailable && env.bootSlot === booted ? 'trial' : 'healthy';
  return 'ready';
}

export async function gatewayStatus(
  runtime: GatewayRuntime,
  settings: SettingsDocument,
): Promise<GatewayStatus> {
  const { device } = runtime;
  const [info, slots, booted, env] = await Promise.all([
    device.systemInfo(),
    device.slots(),
    device.bootedSlot(),
    device.readBootEnv(),
  ]);
  const view = (id: SlotId): PartitionState => ({
    id,
    version: slots[id].version,
    status: partitionStatus(slots[id], booted, env),
    capacityBytes: slots[id].capacityBytes,
    usedBytes: slots[id].imageBytes,
    booted: id === booted,
    nextBoot: env.bootSlot === id,
  });
  return {
    gateway: {
      model: info.model,
      osVersion: info.osVersion,
      kernel: info.kernel,
      uptimeSeconds: info.uptimeSeconds,
      bootloader: info.bootloader,
      lastOtaAt: runtime.row().lastOtaAt ?? null,
    },
    partitions: {
      active: view(booted),
      inactive: view(otherSlot(booted)),
      autoRollback: settings.auto_rollback,
      rollbackRetries: settings.rollback_retries,
    },
  };
}

/** Next periodic update check: the last one (or the gateway's registration) plus whole intervals. */
export function nextUpdateCheck(
  settings: SettingsDocument,
  lastCheckAt: number | null,
  since: number,
  now: number,
) {
  if (!settings.auto_check) return null;
  const interval = settings.check_interval_hours * 3_600_000;
  const base = lastCheckAt ?? since;
  const steps = Math.max(1, Math.ceil((now - base) / interval));
  return base + steps * interval;
}

/** What the gateway is doing and how loaded it is, at `at` (epoch ms). */
export interface SystemActivity {
  status: string;
  currentOperation: string;
  progress: number;
  cpuUsage: number;
  memoryUsage: number;
  at: number;
}

export async function systemActivity(runtime: GatewayRuntime, now: number): Promise<SystemActivity> {
  const op = runtime.currentOperation();
  const resources = await runtime.device.resources();
  return {
    status: op ? op.kind : 'idle',
    currentOperation: op ? op.currentOperation : 'none',
    progress: op ? op.progress : 0,
    cpuUsage: resources.cpuUsage,
    memoryUsage: resources.memoryUsage,
    at: now,
  };
}
