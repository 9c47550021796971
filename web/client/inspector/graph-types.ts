/** A statechart as the inspector draws it: built on the server from the machine's own definition. */

export interface GraphNode {
  /** Full state id, e.g. `updateJob.installing.rebooting`. */
  id: string;
  /** Name within its parent, e.g. `rebooting`. */
  key: string;
  type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  /** Key of the initial child of a compound state. */
  initial: string | null;
  children: GraphNode[];
}

export interface GraphEdge {
  source: string;
  target: string;
  /** Short label: the event type, `after <delay>`, `done: <actor>`, `error: <actor>` or `always`. */
  event: string;
  guard: string | null;
}

export interface MachineGraph {
  /** The machine id (`updateJob`, `partition`, `safetyInterlock`, `zipOp`). */
  id: string;
  title: string;
  root: GraphNode;
  /** Transitions to another state (targetless and self transitions are left out of the drawing). */
  edges: GraphEdge[];
}

/** What GET /dev/inspector/state answers: the live actors' states. */
export interface InspectorState {
  now: string;
  gateways: Array<{
    id: string;
    partition: string | null;
    safety: string | null;
  }>;
  jobs: InspectorJob[];
  /** The last events the statecharts received, with their payloads, newest first. */
  events: InspectorEvent[];
}

export interface InspectorEvent {
  /** ISO time with milliseconds (events come in bursts). */
  at: string;
  gateway_id: string;
  machine: string;
  actor: string;
  type: string;
  payload: Record<string, unknown>;
}

export interface InspectorJob {
  id: string;
  gateway_id: string;
  kind: string;
  /** The machine the job runs on, or null for jobs without a statechart (snapshots, bundles). */
  machine: string | null;
  state: string;
  finished: boolean;
  created_at: string;
  updated_at: string;
}

export interface InspectorTransition {
  at: string;
  from: string | null;
  to: string;
  event: string;
}
