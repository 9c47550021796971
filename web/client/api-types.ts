/**
 * The shapes the page reads: the `data` of the documented routes and the WebSocket messages. Kept
 * free of imports so the browser bundle pulls in no server code; test/unit/web-api-types.test.ts
 * checks at compile time that the server's zod schemas still produce these shapes.
 */

export type Role = 'viewer' | 'operator' | 'admin';
export type SlotId = 'A' | 'B';

export interface Partition {
  id: SlotId;
  version: string | null;
  status: string;
  size: string;
  used: string;
  booted: boolean;
  next_boot: boolean;
}

export interface SystemStatus {
  gateway: {
    model: string;
    os_version: string;
    kernel: string;
    uptime: string;
    bootloader: string;
    last_ota: string | null;
  };
  partitions: {
    active: Partition;
    inactive: Partition;
    auto_rollback: boolean;
    rollback_retries: number;
  };
  /** Gantry's addition: installed components (multi-component bundles), rootfs first. */
  components?: Array<{
    name: string;
    version: string | null;
    handler: string;
    target: string;
    slot: string | null;
    floor: string | null;
    pending_version: string | null;
  }>;
}

export interface AvailableUpdate {
  id: string;
  version: string;
  type: string;
  severity: string;
  size: string;
  released: string;
  description: string;
  changelog: string[];
  signature: string;
  compatible: boolean;
}

export interface UpdatesList {
  updates: AvailableUpdate[];
  total_available: number;
  server: string | null;
  demo_feed: boolean;
}

/** Section 2's feed line: where checks go, and whether that is the local demo feed. */
export interface FeedView {
  server: string | null;
  demo: boolean;
}

export type Weekday = 'sunday' | 'monday' | 'tuesday' | 'wednesday' | 'thursday' | 'friday' | 'saturday';
export type UpdateStrategy = 'seamless' | 'in-place' | 'rolling';

export interface Settings {
  auto_update: { enabled: boolean; auto_download: boolean; auto_security: boolean; auto_reboot: boolean };
  maintenance_window: {
    enabled: boolean;
    schedule: 'daily' | 'weekly';
    time: string;
    day: Weekday;
    duration_minutes: number;
    timezone: string;
  };
  update_strategy: UpdateStrategy;
  auto_rollback: boolean;
  rollback_retries: number;
  auto_check: boolean;
  check_interval_hours: number;
}

export type ConstraintName = 'crane_motion' | 'acs_collision' | 'ups_battery' | 'network' | 'system_load';

export interface ConstraintView {
  enabled: boolean;
  status: string;
  blocking: boolean;
  overridden: boolean;
  estimated_clear?: string | null;
  level?: number | null;
  load?: number | null;
}

export interface SafetyStatus {
  constraints: Record<ConstraintName, ConstraintView>;
  force_override: boolean;
  update_allowed: boolean;
  override: { constraints: ConstraintName[]; expires_at: string; reason: string; enabled_by: string } | null;
  thresholds: { ups_min_battery_percent: number; max_system_load: number };
}

export interface LogEntry {
  timestamp: string;
  level: string;
  source: string;
  message: string;
}

export interface MonitorStatus {
  system_status: string;
  current_operation: string;
  last_update_check: string | null;
  next_check: string | null;
  resources: { cpu_usage: number; memory_usage: string };
}

export interface SnapshotItem {
  id: string;
  name: string;
  version: string;
  source_partition: SlotId;
  size: string;
  created_at: string;
}

export interface JobProgress {
  status: string;
  job_id: string;
  progress: {
    percentage: number;
    current_operation: string;
    speed: string;
    downloaded: string;
    total: string;
    eta: string;
  };
  update: { id: string | null; version: string };
  elapsed_time: string;
  target_partition: SlotId;
  error: { code: string; message: string } | null;
  blocked_by: string[];
  /** How the image travels: hop delta, dynamic chunks or the full bundle; bytes on the wire. */
  delivery?: {
    path: 'hop' | 'dynamic' | 'full';
    planned: string;
    planned_bytes: number;
    wire: string;
    wire_bytes: number;
  } | null;
}

export interface RecoveryImageView {
  filename: string;
  version: string;
  size: string;
  uploaded_at: string;
}

/** Who is looking and at which gateway: rendered by the server beside the data. */
export interface PageSessionView {
  username: string;
  role: Role;
  gateway: string;
  gateways: string[];
  /** Server clock at render (ms), so countdowns do not depend on the browser's clock being right. */
  server_now: number;
}

// ---- WebSocket /api/v1/ota/ws --------------------------------------------------------------

export interface UpdateProgressMessage {
  type: 'update_progress';
  job_id: string;
  status: string;
  progress: number;
  current_operation: string;
  speed: string;
  eta: string;
  path?: 'hop' | 'dynamic' | 'full';
  timestamp: string;
}

export interface SystemStatusMessage {
  type: 'system_status';
  status: string;
  current_operation: string;
  progress: number;
  resources: { cpu_usage: number; memory_usage: number };
  timestamp: string;
}

export interface LogEntryMessage extends LogEntry {
  type: 'log_entry';
}

export interface SafetyUpdateMessage {
  type: 'safety_update';
  constraint: string;
  status: string;
  blocking: boolean;
  estimated_clear: string | null;
}

export type LiveMessage = UpdateProgressMessage | SystemStatusMessage | LogEntryMessage | SafetyUpdateMessage;
