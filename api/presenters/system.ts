import { formatBytes, formatUptime, isoSeconds } from '../../core/format.js';
import type { GatewayStatus, PartitionState, SystemActivity } from '../../services/system.js';
import type { SystemStatusEvent } from '../schemas/events.js';
import type { StatusOutput } from '../schemas/system.js';

/**
 * The documented shapes of /status and the `system_status` event, from the service's numbers:
 * the partition cards print sizes without a space ("8GB"), timestamps are whole-second UTC.
 */

function presentPartition(p: PartitionState): StatusOutput['partitions']['active'] {
  return {
    id: p.id,
    version: p.version,
    status: p.status,
    size: formatBytes(p.capacityBytes, { compact: true }),
    used: formatBytes(p.usedBytes, { compact: true }),
    booted: p.booted,
    next_boot: p.nextBoot,
  };
}

export function presentStatus(s: GatewayStatus): StatusOutput {
  return {
    gateway: {
      model: s.gateway.model,
      os_version: s.gateway.osVersion,
      kernel: s.gateway.kernel,
      uptime: formatUptime(s.gateway.uptimeSeconds),
      bootloader: s.gateway.bootloader,
      last_ota: s.gateway.lastOtaAt === null ? null : isoSeconds(s.gateway.lastOtaAt),
    },
    partitions: {
      active: presentPartition(s.partitions.active),
      inactive: presentPartition(s.partitions.inactive),
      auto_rollback: s.partitions.autoRollback,
      rollback_retries: s.partitions.rollbackRetries,
    },
  };
}

export function presentSystemStatusEvent(a: SystemActivity): SystemStatusEvent {
  return {
    type: 'system_status',
    status: a.status,
    current_operation: a.currentOperation,
    progress: a.progress,
    resources: { cpu_usage: a.cpuUsage, memory_usage: a.memoryUsage },
    timestamp: isoSeconds(a.at),
  };
}

/** The monitor's memory reading: "42.0%". */
export function formatPercent(value: number): string {
  return `${value.toFixed(1)}%`;
}
