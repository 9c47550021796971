import { createCallerFactory, router } from '../trpc.js';
import { authRouter } from './auth.js';
import { monitorRouter } from './monitor.js';
import { settingsRouter } from './settings.js';
import { systemRouter } from './system.js';

export const appRouter = router({
  auth: authRouter,
  system: systemRouter,
  settings: settingsRouter,
  monitor: monitorRouter,
});

export type AppRouter = typeof appRouter;
export const createCaller = createCallerFactory(appRouter);
