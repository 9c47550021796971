import { describe, expect, it } from 'vitest';
import { presentGatewayEvent } from '../../api/presenters/events.js';
import { formatSpeed } from '../../core/format.js';
import { formatPercent, presentStatus, presentSystemStatusEvent } from '../../api/presenters/system.js';
import { statusOutputSchema } from '../../api/schemas/system.js';
import { systemStatusEventSchema } from '../../api/schemas/events.js';
import type { GatewayStatus, PartitionState } from '../../services/system.js';
import { presentUpdate, presentUpdateList } from '../../api/presenters/updates.js';
import { progressOutputSchema, updatesOutputSchema } from '../../api/schemas/updates.js';
import { presentProgress } from '../../api/presenters/progress.js';
import { presentOverrideResult, presentSafetyStatus } from '../../api/presenters/safety.js';
import { safetyOverrideOutputSchema, safetyStatusOutputSchema } from '../../api/schemas/safety.js';
import type { SafetyStatus } from '../../services/safety.js';
import { presentSnapshotList } from '../../api/presenters/snapshots.js';
import { snapshotListOutputSchema } from '../../api/schemas/system-ops.js';
import type { SnapshotEntry } from '../../services/snapshots.js';
import type { JobProgress } from '../../services/updates/job-types.js';
import type { UpdateListing } from '../../services/updates/catalog.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

const partition = (over: Partial<PartitionState>): PartitionState => ({
  id: 'A',
  version: '2.4.1',
  status: 'healthy',
  capacityBytes: 8 * GiB,
  usedBytes: 452 * MiB,
  booted: true,
  nextBoot: true,
  ...over,
});

const status = (over: Partial<GatewayStatus['gateway']> = {}): GatewayStatus => ({
  gateway: {
    model: 'IGW-2000',
    osVersion: '5.2.0',
    kernel: '6.1.0',
    uptimeSeconds: 19 * 86_400 + 3 * 3600 + 12 * 60 + 59,
    bootloader: 'U-Boot 2023.10',
    lastOtaAt: Date.UTC(2025, 2, 15, 10, 25, 30, 999),
    ...over,
  },
  partitions: {
    active: partition({}),
    inactive: partition({
      id: 'B',
      version: null,
      status: 'empty',
      usedBytes: 0,
      booted: false,
      nextBoot: false,
    }),
    autoRollback: true,
    rollbackRetries: 3,
  },
});

describe('api/presenters/system: the documented strings from the service numbers', () => {
  it('writes /status as documented: compact sizes, uptime in d/h/m, whole-second UTC', () => {
    const out = presentStatus(status());
    expect(statusOutputSchema.parse(out)).toEqual(out);
    expect(out.gateway.uptime).toBe('19d 3h 12m');
    expect(out.gateway.last_ota).toBe('2025-03-15T10:25:30Z');
    expect(out.partitions.active).toEqual({
      id: 'A',
      version: '2.4.1',
      status: 'healthy',
      size: '8GB',
      used: '452MB',
      booted: true,
      next_boot: true,
    });
    expect(out.partitions.inactive.used).toBe('0B');
    expect(out.partitions.inactive.next_boot).toBe(false);
    expect(out.partitions).toMatchObject({ auto_rollback: true, rollback_retries: 3 });
  });

  it('never installed: last_ota is null; a fresh boot has 0d 0h 0m', () => {
    const out = presentStatus(status({ lastOtaAt: null, uptimeSeconds: 0 }));
    expect(out.gateway.last_ota).toBeNull();
    expect(out.gateway.uptime).toBe('0d 0h 0m');
  });

  it('writes the system_status event with numbers kept and the timestamp as a string', () => {
    const event = presentSystemStatusEvent({
      status: 'download',
      currentOperation: 'Downloading 2.5.0',
      progress: 42,
      cpuUsage: 12.5,
      memoryUsage: 61.25,
      at: Date.UTC(2025, 0, 1, 0, 0, 0, 500),
    });
    expect(systemStatusEventSchema.parse(event)).toEqual(event);
    expect(event).toEqual({
      type: 'system_status',
      status: 'download',
      current_operation: 'Downloading 2.5.0',
      progress: 42,
      resources: { cpu_usage: 12.5, memory_usage: 61.25 },
      timestamp: '2025-01-01T00:00:00Z',
    });
  });

  it('writes the monitor memory reading with one decimal', () => {
    expect(formatPercent(0)).toBe('0.0%');
    expect(formatPercent(61.25)).toBe('61.3%');
    expect(formatPercent(100)).toBe('100.0%');
  });
});

describe('api/presenters/updates: a listed update as documented', () => {
  const listing: UpdateListing = {
    id: 'upd-1',
    version: '2.5.0',
    type: 'security',
    severity: 'critical',
    sizeBytes: 452 * MiB,
    released: '2025-03-10',
    description: 'Security fixes',
    changelog: ['CVE fix'],
    signature: 'verified',
    compatible: true,
  };

  it('writes the size with a space and counts what is listed', () => {
    const out = presentUpdateList({
      updates: [listing],
      feed: { label: 'https://feed.example', demo: false },
    });
    expect(updatesOutputSchema.parse(out)).toEqual(out);
    expect(out).toEqual({
      updates: [{ ...omitSize(listing), size: '452 MB' }],
      total_available: 1,
      server: 'https://feed.example',
      demo_feed: false,
    });
  });

  it('sizes at unit edges: 0 B, 1023 B, 1 KB, 1.5 GB', () => {
    const size = (sizeBytes: number) => presentUpdate({ ...listing, sizeBytes }).size;
    expect(size(0)).toBe('0 B');
    expect(size(1023)).toBe('1023 B');
    expect(size(1024)).toBe('1 KB');
    expect(size(1.5 * GiB)).toBe('1.5 GB');
  });

  it('no feed configured: server null, not the demo feed, nothing listed', () => {
    expect(presentUpdateList({ updates: [], feed: null })).toEqual({
      updates: [],
      total_available: 0,
      server: null,
      demo_feed: false,
    });
  });
});

function omitSize({ sizeBytes: _sizeBytes, ...rest }: UpdateListing) {
  return rest;
}

describe('api/presenters/progress: GET /progress as documented', () => {
  const progress: JobProgress = {
    status: 'downloading',
    jobId: 'job-1',
    percentage: 45.2,
    currentOperation: 'downloading',
    speedBps: 8.2 * MiB,
    bytesDone: 204 * MiB,
    totalBytes: 452 * MiB,
    etaSeconds: 30,
    update: { id: 'upd-1', version: '2.5.0' },
    elapsedMs: 65_400,
    targetSlot: 'B',
    error: null,
    blockedBy: [],
  };

  it('writes speed, sizes, a short ETA and the elapsed time', () => {
    const out = presentProgress(progress);
    expect(progressOutputSchema.parse(out)).toEqual(out);
    expect(out).toEqual({
      status: 'downloading',
      job_id: 'job-1',
      progress: {
        percentage: 45.2,
        current_operation: 'downloading',
        speed: '8.2 MB/s',
        downloaded: '204 MB',
        total: '452 MB',
        eta: '00:30',
      },
      update: { id: 'upd-1', version: '2.5.0' },
      elapsed_time: '00:01:05',
      target_partition: 'B',
      error: null,
      blocked_by: [],
      delivery: null,
    });
  });

  it('writes the delivery path and its bytes on the wire once chosen', () => {
    const out = presentProgress({
      ...progress,
      delivery: { path: 'hop', plannedBytes: 2_600_000, wireBytes: 1_300_000 },
    });
    expect(progressOutputSchema.parse(out)).toEqual(out);
    expect(out.delivery).toEqual({
      path: 'hop',
      planned: '2.5 MB',
      planned_bytes: 2_600_000,
      wire: '1.2 MB',
      wire_bytes: 1_300_000,
    });
  });

  it('an ETA of an hour or more gets hours; an idle job reads 0 B/s, 00:00', () => {
    expect(presentProgress({ ...progress, etaSeconds: 3600 }).progress.eta).toBe('01:00:00');
    const idle = presentProgress({ ...progress, speedBps: 0, etaSeconds: 0, elapsedMs: 0 });
    expect(idle.progress).toMatchObject({ speed: '0 B/s', eta: '00:00' });
    expect(idle.elapsed_time).toBe('00:00:00');
  });

  it('carries the error and what blocks the job as they are', () => {
    const out = presentProgress({
      ...progress,
      status: 'error',
      error: { code: 'OTA_DOWNLOAD_FAILED', message: 'feed unreachable' },
      blockedBy: ['crane_motion'],
    });
    expect(out.error).toEqual({ code: 'OTA_DOWNLOAD_FAILED', message: 'feed unreachable' });
    expect(out.blocked_by).toEqual(['crane_motion']);
  });
});

describe('api/presenters/safety: GET /safety and the override answer as documented', () => {
  const constraint = { enabled: true, blocking: false, overridden: false };
  const safety: SafetyStatus = {
    constraints: {
      crane_motion: { ...constraint, status: 'moving', blocking: true, estimatedClearSeconds: 95 },
      acs_collision: { ...constraint, status: 'clear' },
      ups_battery: { ...constraint, status: 'ok', level: 87 },
      network: { ...constraint, status: 'connected' },
      system_load: { ...constraint, status: 'normal', load: 0.42 },
    },
    forceOverride: true,
    updateAllowed: false,
    override: {
      constraints: ['acs_collision'],
      expiresAt: Date.UTC(2025, 2, 15, 10, 40, 30, 250),
      reason: 'maintenance',
      enabledBy: 'admin',
    },
    thresholds: { upsMinBatteryPercent: 30, maxSystemLoad: 0.9 },
  };

  it('writes the crane ETA as MM:SS and the override expiry in ISO seconds', () => {
    const out = presentSafetyStatus(safety);
    expect(safetyStatusOutputSchema.parse(out)).toEqual(out);
    expect(out.constraints.crane_motion).toEqual({
      enabled: true,
      status: 'moving',
      blocking: true,
      overridden: false,
      estimated_clear: '01:35',
    });
    expect(out.constraints.system_load.load).toBe(0.42);
    expect(out.override).toEqual({
      constraints: ['acs_collision'],
      expires_at: '2025-03-15T10:40:30Z',
      reason: 'maintenance',
      enabled_by: 'admin',
    });
    expect(out).toMatchObject({
      force_override: true,
      update_allowed: false,
      thresholds: { ups_min_battery_percent: 30, max_system_load: 0.9 },
    });
  });

  it('a crane with no estimate and no override: nulls', () => {
    const out = presentSafetyStatus({
      ...safety,
      constraints: {
        ...safety.constraints,
        crane_motion: { ...safety.constraints.crane_motion, estimatedClearSeconds: null },
      },
      override: null,
    });
    expect(out.constraints.crane_motion.estimated_clear).toBeNull();
    expect(out.override).toBeNull();
  });

  it('the override answer: expiry in ISO seconds, or null once disabled', () => {
    const on = presentOverrideResult({
      overrideEnabled: true,
      expiresAt: Date.UTC(2025, 2, 15, 10, 40, 30),
      overriddenConstraints: ['crane_motion'],
      updateAllowed: true,
    });
    expect(safetyOverrideOutputSchema.parse(on)).toEqual(on);
    expect(on).toEqual({
      override_enabled: true,
      expires_at: '2025-03-15T10:40:30Z',
      overridden_constraints: ['crane_motion'],
      update_allowed: true,
    });
    expect(
      presentOverrideResult({
        overrideEnabled: false,
        expiresAt: null,
        overriddenConstraints: [],
        updateAllowed: false,
      }).expires_at,
    ).toBeNull();
  });
});

describe('api/presenters/snapshots: GET /snapshots as documented', () => {
  it('gives each size in both forms, the prefixed checksum and ISO-second times', () => {
    const entry: SnapshotEntry = {
      id: 'snap-1',
      name: 'before 2.5.0',
      description: '',
      version: '2.4.1',
      kernel: null,
      sourceSlot: 'A',
      size: 452 * MiB,
      sha256: 'ab'.repeat(32),
      createdAt: Date.UTC(2025, 2, 15, 10, 25, 30, 700),
      imagePath: '/data/snap-1/image.img',
      configPath: '/data/snap-1/config.json',
    };
    const out = presentSnapshotList([entry], 5);
    expect(snapshotListOutputSchema.parse(out)).toEqual(out);
    expect(out).toEqual({
      snapshots: [
        {
          id: 'snap-1',
          name: 'before 2.5.0',
          description: '',
          version: '2.4.1',
          kernel: null,
          source_partition: 'A',
          size: '452 MB',
          size_bytes: 452 * MiB,
          checksum: `sha256:${'ab'.repeat(32)}`,
          created_at: '2025-03-15T10:25:30Z',
        },
      ],
      total: 1,
      retention: 5,
    });
    expect(presentSnapshotList([], 3)).toEqual({ snapshots: [], total: 0, retention: 3 });
  });
});

describe('presentGatewayEvent (the bus carries numbers; the WS shows the documented strings)', () => {
  const at = Date.UTC(2026, 11, 4, 10, 30, 0, 250);

  it('should write speed, eta and timestamp of an update_progress event', () => {
    expect(
      presentGatewayEvent({
        type: 'update_progress',
        jobId: 'OTA-1',
        status: 'downloading',
        progress: 42,
        currentOperation: 'downloading_image',
        bytesPerSecond: 8.2 * 1000 * 1000,
        etaSeconds: 65,
        at,
      }),
    ).toEqual({
      type: 'update_progress',
      job_id: 'OTA-1',
      status: 'downloading',
      progress: 42,
      current_operation: 'downloading_image',
      speed: formatSpeed(8.2 * 1000 * 1000),
      eta: '01:05',
      timestamp: '2026-12-04T10:30:00Z',
    });
  });

  it('should write estimated_clear as mm:ss, or null when the device gives no estimate', () => {
    const base = {
      type: 'safety_update',
      constraint: 'crane_motion',
      status: 'moving',
      blocking: true,
    } as const;
    expect(presentGatewayEvent({ ...base, estimatedClearSeconds: 90 })).toMatchObject({
      estimated_clear: '01:30',
    });
    expect(presentGatewayEvent({ ...base, estimatedClearSeconds: null })).toMatchObject({
      estimated_clear: null,
    });
  });

  it('should write a log entry with a whole-second timestamp', () => {
    expect(
      presentGatewayEvent({ type: 'log_entry', at, level: 'warn', source: 'ota', message: 'm' }),
    ).toEqual({
      type: 'log_entry',
      timestamp: '2026-12-04T10:30:00Z',
      level: 'warn',
      source: 'ota',
      message: 'm',
    });
  });
});
