import { and, eq } from 'drizzle-orm';
import type { AnyStateMachine } from 'xstate';
import type { AuthUser } from '../api/context.js';
import { mayAccessGateway } from '../core/auth.js';
import { isoSeconds } from '../core/format.js';
import { machineSnapshots } from '../drizzle/schema.js';
import { partitionMachine } from '../machines/partition.js';
import { safetyInterlockMachine } from '../machines/safety-interlock.js';
import { updateJobMachine } from '../machines/update-job.js';
import { zipOperationMachine } from '../machines/zip-operation.js';
import type { GantryDeps } from '../server/deps.js';
import { FINAL_JOB_STATES } from '../services/jobs.js';
import type {
  GraphEdge,
  GraphNode,
  InspectorJob,
  InspectorState,
  InspectorTransition,
  MachineGraph,
} from './client/inspector/graph-types.js';
import { html, jsonAttr, type SafeHtml } from './html.js';
import { documentShell } from './layout.js';

export const INSPECTOR_PATH = '/dev/inspector';

/** The parts of an XState v5 state node the drawing needs (its public, documented fields). */
interface StateNodeLike {
  id: string;
  key: string;
  type: GraphNode['type'];
  states: Record<string, StateNodeLike>;
  transitions: Map<string, TransitionLike[]>;
  always?: TransitionLike[];
  initial?: { target: readonly StateNodeLike[] };
}
interface TransitionLike {
  target?: readonly StateNodeLike[];
  guard?: unknown;
}

/** `xstate.done.actor.verifyImage` → `done: verifyImage`; ids XState generates are dropped. */
export function eventLabel(eventType: string): string {
  const actor = eventType.match(/^xstate\.(done|error)\.actor\.(.+)$/);
  if (actor) {
    const name = actor[2]!;
    return /^\d+\./.test(name) ? actor[1]! : `${actor[1]}: ${name}`;
  }
  const after = eventType.match(/^xstate\.after\.([^.]+)\./);
  if (after) return `after ${after[1]}`;
  return eventType;
}

function guardLabel(guard: unknown): string | null {
  if (!guard) return null;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'function') return guard.name && guard.name !== 'guard' ? guard.name : 'guard';
  const type = (guard as { type?: unknown }).type;
  return typeof type === 'string' ? type : 'guard';
}

/** States and transitions read from the machine itself, so the drawing cannot drift from the code. */
export function machineGraph(machine: AnyStateMachine, title: string): MachineGraph {
  const edges: GraphEdge[] = [];
  const visit = (node: StateNodeLike): GraphNode => {
    const add = (event: string, t: TransitionLike) => {
      for (const target of t.target ?? []) {
        if (target.id === node.id) continue;
        edges.push({ source: node.id, target: target.id, event, guard: guardLabel(t.guard) });
      }
    };
    for (const [eventType, transitions] of node.transitions) {
      for (const t of transitions) add(eventLabel(eventType), t);
    }
    for (const t of node.always ?? []) add('always', t);
    return {
      id: node.id,
      key: node.key,
      type: node.type,
      initial: node.initial?.target[0]?.key ?? null,
      children: Object.values(node.states).map(visit),
    };
  };
  const root = visit(machine.root as unknown as StateNodeLike);
  return { id: root.id, title, root, edges };
}

export function inspectorMachines(): MachineGraph[] {
  return [
    machineGraph(updateJobMachine, 'Update job (download, deploy, restore, factory reset)'),
    machineGraph(partitionMachine, 'A/B partitions (one per gateway)'),
    machineGraph(safetyInterlockMachine, 'Safety interlock (one per gateway)'),
    machineGraph(zipOperationMachine, 'ZIP operation (configuration, plugin)'),
  ];
}

/** Which statechart runs a job of this kind (snapshots and debug bundles have none). */
export function machineOfJobKind(kind: string): string | null {
  if (['download', 'deploy', 'restore', 'factory'].includes(kind)) return updateJobMachine.id;
  if (kind === 'configure' || kind === 'plugin') return zipOperationMachine.id;
  return null;
}

function persistedValue(deps: GantryDeps, gatewayId: string, machine: string): string | null {
  const row = deps.db
    .select()
    .from(machineSnapshots)
    .where(and(eq(machineSnapshots.gatewayId, gatewayId), eq(machineSnapshots.machine, machine)))
    .get();
  const value = (row?.snapshot as { value?: unknown } | undefined)?.value;
  return typeof value === 'string' ? value : value ? JSON.stringify(value) : null;
}

/**
 * The live actors: each gateway's partition actor (in memory), its safety interlock (persisted on
 * every change of state, read back from the store) and its recent jobs with their current state.
 */
export function inspectorState(deps: GantryDeps, user: AuthUser): InspectorState {
  const ids = deps.gateways.ids().filter((id) => mayAccessGateway(user.gateways, id));
  const jobs: InspectorJob[] = [];
  const gateways = ids.map((id) => {
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
        finished: (FINAL_JOB_STATES as readonly string[]).includes(row.state),
        created_at: isoSeconds(row.createdAt),
        updated_at: isoSeconds(row.updatedAt),
      });
    }
    return { id, partition, safety: persistedValue(deps, id, 'safety') };
  });
  jobs.sort((a, b) => b.created_at.localeCompare(a.created_at) || b.id.localeCompare(a.id));
  const events = deps.machineEvents.recent(ids, 100).map((e) => ({
    at: new Date(e.at).toISOString(),
    gateway_id: e.gatewayId,
    machine: e.machine,
    actor: e.actor,
    type: e.type,
    payload: e.payload,
  }));
  return { now: isoSeconds(deps.clock()), gateways, jobs, events };
}

/** A job's persisted transition history, or null when it does not exist or is not the user's to see. */
export function inspectorTransitions(
  deps: GantryDeps,
  user: AuthUser,
  jobId: string,
): InspectorTransition[] | null {
  const job = deps.jobs.get(jobId);
  if (!job || !mayAccessGateway(user.gateways, job.gatewayId)) return null;
  return deps.jobs.transitions(jobId).map((t) => ({
    at: isoSeconds(t.at),
    from: t.fromState,
    to: t.toState,
    event: t.event,
  }));
}

export function renderInspectorPage(machines: MachineGraph[], state: InspectorState): SafeHtml {
  return documentShell({
    title: 'Statechart inspector - Univa Gateway',
    scripts: ['inspector.js'],
    body: html`<a class="skip-link" href="#main">Skip to the statecharts</a>
      <header class="topbar">
        <div class="topbar-title">
          <h1>Statechart inspector</h1>
          <p class="topbar-sub">
            Live states of the partition, safety and job actors. Development tool (admins only).
            <a href="/ota-system-updates">Back to the OTA page</a>
          </p>
        </div>
      </header>
      <main id="main">
        <div id="inspector" data-machines="${jsonAttr(machines)}" data-state="${jsonAttr(state)}">
          <noscript><p class="banner banner-error">The inspector needs JavaScript.</p></noscript>
        </div>
      </main>`,
  });
}
