/**
 * What the inspector draws and follows. Kept free of imports so the browser bundle pulls in no
 * server code; the server builds these from XState's `xstate/graph` (web/inspector-graph.ts) and
 * the live actors (api/inspector-view.ts).
 */

export interface GraphNode {
  /** Full state id, e.g. `updateJob.installing.rebooting`. */
  id: string;
  /** Name within its parent, e.g. `rebooting`. */
  key: string;
  type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  /** Key of the initial child of a compound state. */
  initial: string | null;
  /**
   * Transitions that stay in this state: targetless ones (actions only, e.g. PROGRESS) and those
   * re-entering it (RESUME). Listed in the state's box rather than drawn as loops.
   */
  internal: string[];
  children: GraphNode[];
}

/** All transitions from one state to another, drawn as one arrow with one label per transition. */
export interface GraphEdge {
  /** `<source>→<target>`: unique within a machine. */
  id: string;
  source: string;
  target: string;
  /** `EVENT`, `EVENT [guard]`, `after <delay>`, `done: <actor>`, `error: <actor>` or `always`. */
  labels: string[];
}

export interface MachineGraph {
  /** The machine id (`updateJob`, `partition`, `safetyInterlock`, `zipOp`). */
  id: string;
  title: string;
  root: GraphNode;
  edges: GraphEdge[];
}

/** The live actors' states: embedded in the page, then kept current by the `inspector.live` stream. */
export interface InspectorState {
  now: string;
  gateways: InspectorGateway[];
  jobs: InspectorJob[];
  /** The last events the statecharts received, with their payloads, newest first. */
  events: InspectorEvent[];
}

export interface InspectorGateway {
  id: string;
  partition: string | null;
  safety: string | null;
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

/**
 * What the tRPC subscription `inspector.live` (over the `/api/trpc` WebSocket) sends: the whole
 * state first (again after a reconnect), then what changed as it happens.
 */
export type InspectorUpdate =
  | { type: 'state'; state: InspectorState }
  /** After a statechart changed state: the actors' states, read back from the store. */
  | { type: 'actors'; now: string; gateways: InspectorGateway[]; jobs: InspectorJob[] }
  /** Events the statecharts received since the last message, newest first. */
  | { type: 'events'; events: InspectorEvent[] };
