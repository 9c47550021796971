import type { GatewayEvent, LogEntry } from '../../core/events.js';
import { formatEta, formatSpeed, isoSeconds } from '../../core/format.js';
import type { GantryEvent } from '../schemas/events.js';

/** A log entry as GET /logs and `log_entry` show it: whole-second UTC timestamps. */
export function presentLogEntry(e: LogEntry) {
  return { timestamp: isoSeconds(e.at), level: e.level, source: e.source, message: e.message };
}

/** A bus event in the documented `/api/v1/ota/ws` shape ("12.5 MB/s", "00:30"). */
export function presentGatewayEvent(e: GatewayEvent): GantryEvent {
  switch (e.type) {
    case 'log_entry':
      return { type: 'log_entry', ...presentLogEntry(e) };
    case 'update_progress':
      return {
        type: 'update_progress',
        job_id: e.jobId,
        status: e.status,
        progress: e.progress,
        current_operation: e.currentOperation,
        speed: formatSpeed(e.bytesPerSecond),
        eta: formatEta(e.etaSeconds),
        ...(e.path ? { path: e.path } : {}),
        timestamp: isoSeconds(e.at),
      };
    case 'safety_update':
      return {
        type: 'safety_update',
        constraint: e.constraint,
        status: e.status,
        blocking: e.blocking,
        estimated_clear: e.estimatedClearSeconds === null ? null : formatEta(e.estimatedClearSeconds),
      };
  }
}
