import type { z } from 'zod';
import {
  autoUpdateInputSchema,
  autoUpdateOutputSchema,
  settingsOutputSchema,
  settingsUpdateInputSchema,
  settingsUpdateOutputSchema,
} from '../../api/schemas/settings.js';
import {
  logsInputSchema,
  logsOutputSchema,
  monitorOutputSchema,
  statusOutputSchema,
} from '../../api/schemas/system.js';
import { defineRoute } from '../route.js';

/** The documented /api/v1/ota routes, in the order of the spec's sections. */
export const otaRoutes = [
  // SECTION 1: System Information
  defineRoute({
    method: 'get',
    path: '/api/v1/ota/status',
    tag: 'System Information',
    summary: 'Gateway system information, partitions and auto-rollback status',
    role: 'viewer',
    output: statusOutputSchema,
    message: 'Gateway status retrieved successfully',
    call: (caller) => caller.system.status(),
  }),

  // SECTION 2: Available Updates
  defineRoute({
    method: 'post',
    path: '/api/v1/ota/auto-update',
    tag: 'Available Updates',
    summary: 'Toggle auto-update',
    role: 'operator',
    input: { from: 'body', schema: autoUpdateInputSchema },
    output: autoUpdateOutputSchema,
    message: (data: z.infer<typeof autoUpdateOutputSchema>) =>
      data.auto_update ? 'Auto-update enabled' : 'Auto-update disabled',
    call: (caller, input: z.infer<typeof autoUpdateInputSchema>) => caller.settings.setAutoUpdate(input),
  }),

  // SECTION 4: Update Settings
  defineRoute({
    method: 'get',
    path: '/api/v1/ota/settings',
    tag: 'Settings',
    summary: 'Current update settings and maintenance window',
    role: 'viewer',
    output: settingsOutputSchema,
    message: 'Update settings retrieved successfully',
    call: (caller) => caller.settings.get(),
  }),
  defineRoute({
    method: 'post',
    path: '/api/v1/ota/settings',
    tag: 'Settings',
    summary: 'Update settings (any subset; nested objects are merged)',
    role: 'admin',
    input: { from: 'body', schema: settingsUpdateInputSchema },
    output: settingsUpdateOutputSchema,
    message: 'Settings updated successfully',
    call: (caller, input: z.infer<typeof settingsUpdateInputSchema>) => caller.settings.update(input),
  }),

  // SECTION 7: Monitor
  defineRoute({
    method: 'get',
    path: '/api/v1/ota/logs',
    tag: 'Monitor',
    summary: 'Activity log, newest first',
    role: 'viewer',
    input: { from: 'query', schema: logsInputSchema },
    output: logsOutputSchema,
    message: 'System logs retrieved successfully',
    call: (caller, input: z.input<typeof logsInputSchema>) => caller.monitor.logs(input),
  }),
  defineRoute({
    method: 'get',
    path: '/api/v1/ota/monitor',
    tag: 'Monitor',
    summary: 'Real-time system monitoring status',
    role: 'viewer',
    output: monitorOutputSchema,
    message: 'Monitor status retrieved successfully',
    call: (caller) => caller.monitor.status(),
  }),
];
