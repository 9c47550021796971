import type { SystemStatusEvent } from '../api/schemas/events.js';
import type { StatusOutput } from '../api/schemas/system.js';
import type { SettingsDocument } from '../api/schemas/settings.js';
import { formatBytes, formatUptime, isoSeconds } from '../core/format.js';
import { otherSlot, type BootEnv, type SlotId, type SlotInfo } from '../device/types.js';
import type { GatewayRuntime } from './gateways.js';

type PartitionView = StatusOutput['partitions']['active'];

/** How a slot looks to an operator, from its content record and the boot environment. */
export function partitionStatus(slot: SlotInfo, booted: SlotId, env: BootEnv): PartitionView['status'] {
  if (slot.state === 'empty') return 'empty';
  if (slot.state === 'invalid') return 'invalid';
  if (slot.id === booted) return env.upgradeAvailable && env.bootSlot === booted ? 'trial' : 'healthy';
  return 'ready';
}

export async function gatewayStatus(
  runtime: GatewayRuntime,
  settings: SettingsDocument,
): Promise<StatusOutput> {
  const { device } = runtime;
  const [info, slots, booted, env] = await Promise.all([
    device.systemInfo(),
    device.slots(),
    device.bootedSlot(),
    device.readBootEnv(),
  ]);
  const view = (id: SlotId): PartitionView => ({
    id,
    version: slots[id].version,
    status: partitionStatus(slots[id], booted, env),
    size: formatBytes(slots[id].capacityBytes, { compact: true }),
    used: formatBytes(slots[id].imageBytes, { compact: true }),
    booted: id === booted,
    next_boot: env.bootSlot === id,
  });
  const lastOta = runtime.row().lastOtaAt;
  return {
    gateway: {
      model: info.model,
      os_version: info.osVersion,
      kernel: info.kernel,
      uptime: formatUptime(info.uptimeSeconds),
      bootloader: info.bootloader,
      last_ota: lastOta ? isoSeconds(lastOta) : null,
    },
    partitions: {
      active: view(booted),
      inactive: view(otherSlot(booted)),
      auto_rollback: settings.auto_rollback,
      rollback_retries: settings.rollback_retries,
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

export async function systemStatusEvent(runtime: GatewayRuntime, now: number): Promise<SystemStatusEvent> {
  const op = runtime.currentOperation();
  const resources = await runtime.device.resources();
  return {
    type: 'system_status',
    status: op ? op.kind : 'idle',
    current_operation: op ? op.currentOperation : 'none',
    progress: op ? op.progress : 0,
    resources: { cpu_usage: resources.cpuUsage, memory_usage: resources.memoryUsage },
    timestamp: isoSeconds(now),
  };
}
