import { z } from 'zod';

/**
 * Messages on the gateway event bus, in the exact shapes the spec documents for
 * `/api/v1/ota/ws`. The bus carries these objects as they are sent, so there is no translation
 * layer between what services publish and what clients receive.
 */

export const logEntryEventSchema = z.lazy(() =>
  z.object({
    type: z.literal('log_entry'),
    timestamp: z.string(),
    level: z.enum(['debug', 'info', 'warn', 'error']),
    source: z.string(),
    message: z.string(),
  }),
);

export const systemStatusEventSchema = z.lazy(() =>
  z.object({
    type: z.literal('system_status'),
    status: z.string(),
    current_operation: z.string(),
    progress: z.number(),
    resources: z.object({ cpu_usage: z.number(), memory_usage: z.number() }),
    timestamp: z.string(),
  }),
);

export const updateProgressEventSchema = z.lazy(() =>
  z.object({
    type: z.literal('update_progress'),
    job_id: z.string(),
    status: z.string(),
    progress: z.number(),
    current_operation: z.string(),
    speed: z.string(),
    eta: z.string(),
    /** The delivery path once chosen (`hop`, `dynamic`, `full`); absent before. */
    path: z.enum(['hop', 'dynamic', 'full']).optional(),
    timestamp: z.string(),
  }),
);

export const safetyUpdateEventSchema = z.lazy(() =>
  z.object({
    type: z.literal('safety_update'),
    constraint: z.string(),
    status: z.string(),
    blocking: z.boolean(),
    estimated_clear: z.string().nullable(),
  }),
);

export const gantryEventSchema = z.lazy(() =>
  z.discriminatedUnion('type', [
    logEntryEventSchema,
    systemStatusEventSchema,
    updateProgressEventSchema,
    safetyUpdateEventSchema,
  ]),
);

export type LogEntryEvent = z.infer<typeof logEntryEventSchema>;
export type SystemStatusEvent = z.infer<typeof systemStatusEventSchema>;
export type UpdateProgressEvent = z.infer<typeof updateProgressEventSchema>;
export type SafetyUpdateEvent = z.infer<typeof safetyUpdateEventSchema>;
export type GantryEvent = z.infer<typeof gantryEventSchema>;
