import type { AuthUser } from './context.js';
import { mayAccessGateway } from '../core/auth.js';
import { isoSeconds } from '../core/format.js';
import { isFinalJobState, JOB_MACHINE, type JobKind } from '../core/job-kinds.js';
import type { MachineActivity, MachineEventEntry } from '../core/machine-events.js';
import { safetyInterlockPersisted } from '../machines/safety-interlock.js';
import type { GantryDeps } from '../server/deps.js';
// The browser bundle reads the same shapes: one import-free definition for both sides.
import type {
  InspectorEvent,
  InspectorGateway,
  InspectorJob,
  InspectorState,
  InspectorTransition,
} from '../web/client/inspector/graph-types.js';

/**
 * What the development inspector shows of the live actors (admins only; see web/inspector.ts): a
 * presenter of the API layer, served by the inspector router (the page's first state, a job's
 * history, the live stream).
 */

/** Which statechart runs a job of this kind (snapshots and debug bundles have none). */
export function machineOfJobKind(kind: JobKind): string | null {
  return JOB_MACHINE[kind];
}

type InspectorDeps = Pick<
  GantryDeps,
  'actorSnapshots' | 'gateways' | 'partitions' | 'jobs' | 'machineEvents' | 'clock'
>;

/** The interlock's state as last persisted (checked like any load; unreadable shows as none). */
function safetyValue(deps: InspectorDeps, gatewayId: string): string | null {
  const stored = deps.actorSnapshots.load(safetyInterlockPersisted, gatewayId);
  return stored.status === 'found' ? stored.snapshot.value : null;
}

function visibleGateways(deps: InspectorDeps, user: AuthUser): string[] {
  return deps.gateways.ids().filter((id) => mayAccessGateway(user.gateways, id));
}

/**
 * Each gateway's partition actor (in memory), its safety interlock (persisted on every change of
 * state, read back from the store) and its recent jobs with their current state.
 */
export function inspectorActors(
  deps: InspectorDeps,
  user: AuthUser,
): { now: string; gateways: InspectorGateway[]; jobs: InspectorJob[] } {
  const jobs: InspectorJob[] = [];
  const gateways = visibleGateways(deps, user).map((id) => {
    let partition: string | null = null;
    try {
      const value = deps.partitions.snapshot(id).value;
      partition = typeof value === 'string' ? value : JSON.stringify(value);
    } catch {
      partition = null;
    }
    for (const row of deps.jobs.recent(id, 15)) {
      jobs.push({
        id: row.id,
        gateway_id: id,
        kind: row.kind,
        machine: machineOfJobKind(row.kind),
        state: row.state,
        finished: isFinalJobState(row.state),
        created_at: isoSeconds(row.createdAt),
        updated_at: isoSeconds(row.updatedAt),
      });
    }
    return { id, partition, safety: safetyValue(deps, id) };
  });
  jobs.sort((a, b) => b.created_at.localeCompare(a.created_at) || b.id.localeCompare(a.id));
  return { now: isoSeconds(deps.clock()), gateways, jobs };
}

function inspectorEvent(e: MachineEventEntry): InspectorEvent {
  return {
    at: new Date(e.at).toISOString(),
    gateway_id: e.gatewayId,
    machine: e.machine,
    actor: e.actor,
    type: e.type,
    payload: e.payload,
  };
}

export function inspectorState(deps: InspectorDeps, user: AuthUser): InspectorState {
  const actors = inspectorActors(deps, user);
  const ids = actors.gateways.map((g) => g.id);
  const events = deps.machineEvents.recent(ids, 100).map(inspectorEvent);
  return { ...actors, events };
}

/**
 * The events in a batch of machine activity that `user` may see, newest first (as the page lists
 * them), and whether any actor changed state.
 */
export function activitySummary(
  batch: readonly MachineActivity[],
  user: AuthUser,
): { events: InspectorEvent[]; stateChanged: boolean } {
  const visible = batch.filter((a) => mayAccessGateway(user.gateways, a.gatewayId));
  const events = visible
    .filter((a) => a.kind === 'event')
    .map((a) => inspectorEvent(a))
    .reverse();
  return { events, stateChanged: visible.some((a) => a.kind === 'state') };
}

/** A job's persisted transition history, or null when it does not exist or is not the user's to see. */
export function inspectorTransitions(
  deps: Pick<GantryDeps, 'jobs'>,
  user: AuthUser,
  jobId: string,
): InspectorTransition[] | null {
  const job = deps.jobs.summary(jobId);
  if (!job || !mayAccessGateway(user.gateways, job.gatewayId)) return null;
  return deps.jobs.transitions(jobId).map((t) => ({
    at: isoSeconds(t.at),
    from: t.fromState,
    to: t.toState,
    event: t.event,
  }));
}
