import { GantryError } from '../../core/errors.js';
import { roleAtLeast } from '../../core/auth.js';
import { z } from 'zod';
import { activitySummary, inspectorActors, inspectorState, inspectorTransitions } from '../inspector-view.js';
import type {
  InspectorState,
  InspectorTransition,
  InspectorUpdate,
} from '../../web/client/inspector/graph-types.js';
import { createContextInner } from '../context.js';
import { accountAdminProcedure, router } from '../trpc.js';

/** The development inspector's live feed (/dev/inspector): admins only, every gateway they may see. */
export const inspectorRouter = router({
  /** Everything the page draws at first: every visible gateway's actors, recent jobs and events. */
  state: accountAdminProcedure.query(({ ctx }): InspectorState => inspectorState(ctx.deps, ctx.user)),

  /** A job's persisted transition history, to step through; NOT_FOUND when it is not the user's to see. */
  transitions: accountAdminProcedure
    .input(z.strictObject({ jobId: z.string().min(1).max(200) }))
    .query(({ ctx, input }): InspectorTransition[] => {
      const transitions = inspectorTransitions(ctx.deps, ctx.user, input.jobId);
      if (!transitions) throw new GantryError('NOT_FOUND', `Job ${input.jobId} not found`);
      return transitions;
    }),

  /**
   * The actors' states and the events the statecharts receive, pushed as they happen over the
   * tRPC WebSocket: the whole state first, then each batch of events and, after a change of
   * state, the actors read back from the store.
   */
  live: accountAdminProcedure.subscription(async function* ({
    ctx,
    signal,
  }): AsyncGenerator<InspectorUpdate> {
    const { deps } = ctx;
    // Listen before the catch-up read, so nothing between the two is lost.
    const activity = deps.bus.machineActivity(signal ?? new AbortController().signal);
    yield { type: 'state', state: inspectorState(deps, ctx.user) };
    for await (const batch of activity) {
      // The session was checked when the stream opened; a logout, expiry or demotion since ends
      // it before anything more is delivered.
      const now = createContextInner(deps, ctx.meta);
      if (!now.user) throw now.authError ?? new GantryError('AUTH_INVALID_TOKEN', 'Session ended');
      if (!roleAtLeast(now.user.role, 'admin')) {
        throw new GantryError('FORBIDDEN', 'This stream needs the admin role');
      }
      const { events, stateChanged } = activitySummary(batch, now.user);
      if (events.length > 0) yield { type: 'events', events };
      if (stateChanged) yield { type: 'actors', ...inspectorActors(deps, now.user) };
    }
  }),
});
