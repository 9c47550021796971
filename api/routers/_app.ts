import { createCallerFactory, router } from '../trpc.js';
import { authRouter } from './auth.js';
import { inspectorRouter } from './inspector.js';
import { maintenanceRouter } from './maintenance.js';
import { monitorRouter } from './monitor.js';
import { recoveryRouter } from './recovery.js';
import { safetyRouter } from './safety.js';
import { settingsRouter } from './settings.js';
import { simulatorRouter } from './simulator.js';
import { systemRouter } from './system.js';
import { updatesRouter } from './updates.js';
import { zipOpsRouter } from './zipOps.js';

export const appRouter = router({
  auth: authRouter,
  system: systemRouter,
  settings: settingsRouter,
  monitor: monitorRouter,
  safety: safetyRouter,
  simulator: simulatorRouter,
  updates: updatesRouter,
  maintenance: maintenanceRouter,
  recovery: recoveryRouter,
  zipOps: zipOpsRouter,
  inspector: inspectorRouter,
});

export type AppRouter = typeof appRouter;
export const createCaller = createCallerFactory(appRouter);
/** The server-side caller the REST and web edges drive procedures with. */
export type AppCaller = ReturnType<typeof createCaller>;
