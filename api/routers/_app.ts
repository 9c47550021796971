import { createCallerFactory, router } from '../trpc.js';
import { authRouter } from './auth.js';
import { monitorRouter } from './monitor.js';
import { settingsRouter } from './settings.js';
import { systemRouter } from './system.js';
import { updatesRouter } from './updates.js';

export const appRouter = router({
  auth: authRouter,
  system: systemRouter,
  settings: settingsRouter,
  monitor: monitorRouter,
  updates: updatesRouter,
});

export type AppRouter = typeof appRouter;
export const createCaller = createCallerFactory(appRouter);
