import type { LogLevel, SafetyConstraint } from './vocabulary.js';

/**
 * What happened on a gateway, as services publish it on the event bus: numbers and epoch
 * milliseconds, no display strings. The OTA WebSocket and `monitor.events` present these in the
 * documented message shapes (api/presenters/events.ts); a program can use the numbers as they are.
 */

export interface LogEntry {
  /** Epoch ms. */
  at: number;
  level: LogLevel;
  source: string;
  message: string;
}

export interface LogEntryEvent extends LogEntry {
  type: 'log_entry';
}

export interface UpdateProgressEvent {
  type: 'update_progress';
  jobId: string;
  status: string;
  /** 0-100. */
  progress: number;
  currentOperation: string;
  bytesPerSecond: number;
  etaSeconds: number;
  /** How the update travels once chosen (hop delta, dynamic chunks, full bundle); absent before. */
  path?: 'hop' | 'dynamic' | 'full';
  /** Epoch ms. */
  at: number;
}

export interface SafetyUpdateEvent {
  type: 'safety_update';
  constraint: SafetyConstraint;
  status: string;
  blocking: boolean;
  /** Seconds until the constraint is expected to clear, where the device says. */
  estimatedClearSeconds: number | null;
}

export type GatewayEvent = LogEntryEvent | UpdateProgressEvent | SafetyUpdateEvent;
