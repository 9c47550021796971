import { GantryError } from '../../core/errors.js';
import { roleAtLeast } from '../../core/auth.js';
import { activitySummary, inspectorActors, inspectorState } from '../../services/inspector.js';
import type { InspectorUpdate } from '../../web/client/inspector/graph-types.js';
import { createContextInner } from '../context.js';
import { accountAdminProcedure, router } from '../trpc.js';

/** The development inspector's live feed (/dev/inspector): admins only, every gateway they may see. */
export const inspectorRouter = router({
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
