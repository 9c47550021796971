import { expectTypeOf, it } from 'vitest';
import type { z } from 'zod';
import type { gantryEventSchema } from '../../api/schemas/events.js';
import type { safetyStatusOutputSchema } from '../../api/schemas/safety.js';
import type { settingsOutputSchema } from '../../api/schemas/settings.js';
import type { snapshotListOutputSchema } from '../../api/schemas/system-ops.js';
import type { logsOutputSchema, monitorOutputSchema, statusOutputSchema } from '../../api/schemas/system.js';
import type { progressOutputSchema, updatesOutputSchema } from '../../api/schemas/updates.js';
import type {
  JobProgress,
  LiveMessage,
  LogEntry,
  MonitorStatus,
  SafetyStatus,
  Settings,
  SnapshotItem,
  SystemStatus,
  UpdatesList,
} from '../../web/client/api-types.js';

/**
 * The browser bundle keeps its own copy of the API shapes (it must not pull in server code); the
 * type checker (npm run typecheck) fails here if a schema changes under the page.
 */
it("should keep the page's API types assignable from the server's schemas", () => {
  expectTypeOf<z.output<typeof statusOutputSchema>>().toExtend<SystemStatus>();
  expectTypeOf<z.output<typeof updatesOutputSchema>>().toExtend<UpdatesList>();
  expectTypeOf<z.output<typeof settingsOutputSchema>>().toExtend<Settings>();
  expectTypeOf<z.output<typeof safetyStatusOutputSchema>>().toExtend<SafetyStatus>();
  expectTypeOf<z.output<typeof logsOutputSchema>['logs'][number]>().toExtend<LogEntry>();
  expectTypeOf<z.output<typeof monitorOutputSchema>>().toExtend<MonitorStatus>();
  expectTypeOf<z.output<typeof snapshotListOutputSchema>['snapshots'][number]>().toExtend<SnapshotItem>();
  expectTypeOf<z.output<typeof progressOutputSchema>>().toExtend<JobProgress>();
  expectTypeOf<z.output<typeof gantryEventSchema>>().toExtend<LiveMessage>();
});
