import type { AnyStateMachine } from 'xstate';
import { toDirectedGraph, type AnyStateNode, type DirectedGraphNode } from 'xstate/graph';
import { partitionMachine } from '../machines/partition.js';
import { safetyInterlockMachine } from '../machines/safety-interlock.js';
import { updateJobMachine } from '../machines/update-job.js';
import { zipOperationMachine } from '../machines/zip-operation.js';
import { componentSequenceMachine } from '../machines/component-sequence.js';
import type { GraphEdge, GraphNode, MachineGraph } from './client/inspector/graph-types.js';

/**
 * The inspector's drawing model, read from the machines through XState's own graph walk
 * (`toDirectedGraph` from `xstate/graph`), so the drawing cannot drift from the code. Loaded on
 * the first request for /dev/inspector, not at start-up.
 */

/** `xstate.done.actor.verifyImage` → `done: verifyImage`; ids XState generates are dropped. */
export function eventLabel(eventType: string): string {
  const actor = eventType.match(/^xstate\.(done|error)\.actor\.(.+)$/);
  if (actor) {
    const name = actor[2]!;
    return /^\d+\./.test(name) ? actor[1]! : `${actor[1]}: ${name}`;
  }
  const after = eventType.match(/^xstate\.after\.([^.]+)\./);
  if (after) return `after ${after[1]}`;
  const doneState = eventType.match(/^xstate\.done\.state\./);
  if (doneState) return 'done';
  return eventType;
}

function guardLabel(guard: unknown): string | null {
  if (!guard) return null;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'function') return guard.name && guard.name !== 'guard' ? guard.name : 'guard';
  const type = (guard as { type?: unknown }).type;
  return typeof type === 'string' ? type : 'guard';
}

/** One transition as XState defines it, from the graph walk or a state's `always` list. */
export interface TransitionOf {
  source: string;
  /** Empty for a targetless transition. */
  targets: string[];
  eventType: string;
  guard: unknown;
}

export function transitionLabel(t: Pick<TransitionOf, 'eventType' | 'guard'>): string {
  const guard = guardLabel(t.guard);
  const event = eventLabel(t.eventType);
  return guard ? `${event} [${guard}]` : event;
}

/**
 * Every transition of every state. `toDirectedGraph` gives a state's edges (a targetless one
 * pointing back at its source); eventless `always` transitions are not among them, so they are
 * read from the same state node.
 */
export function transitionsOf(directed: DirectedGraphNode): TransitionOf[] {
  const out: TransitionOf[] = [];
  const seen = new Set<unknown>();
  for (const edge of directed.edges) {
    // One DirectedGraphEdge per target: a transition with several targets is listed once.
    if (seen.has(edge.transition)) continue;
    seen.add(edge.transition);
    out.push({
      source: directed.id,
      targets: (edge.transition.target ?? []).map((t: AnyStateNode) => t.id),
      eventType: edge.transition.eventType,
      guard: edge.transition.guard,
    });
  }
  for (const t of directed.stateNode.always ?? []) {
    out.push({
      source: directed.id,
      targets: (t.target ?? []).map((n: AnyStateNode) => n.id),
      eventType: 'always',
      guard: t.guard,
    });
  }
  return out;
}

function walk(directed: DirectedGraphNode, visit: (n: DirectedGraphNode) => void): void {
  visit(directed);
  for (const child of directed.children) walk(child, visit);
}

/** Every transition of a machine, states in document order. */
export function machineTransitions(machine: AnyStateMachine): TransitionOf[] {
  const out: TransitionOf[] = [];
  walk(toDirectedGraph(machine), (n) => out.push(...transitionsOf(n)));
  return out;
}

export function machineGraph(machine: AnyStateMachine, title: string): MachineGraph {
  const directed = toDirectedGraph(machine);
  const internal = new Map<string, string[]>();
  const edges = new Map<string, GraphEdge>();
  const addUnique = (list: string[], label: string) => {
    if (!list.includes(label)) list.push(label);
  };
  walk(directed, (n) => {
    for (const t of transitionsOf(n)) {
      const label = transitionLabel(t);
      const outward = t.targets.filter((id) => id !== t.source);
      if (outward.length < t.targets.length || t.targets.length === 0) {
        addUnique(internal.get(t.source) ?? internal.set(t.source, []).get(t.source)!, label);
      }
      for (const target of outward) {
        const id = `${t.source}→${target}`;
        const edge = edges.get(id) ?? { id, source: t.source, target, labels: [] };
        addUnique(edge.labels, label);
        edges.set(id, edge);
      }
    }
  });
  const toNode = (n: DirectedGraphNode): GraphNode => ({
    id: n.id,
    key: n.stateNode.key,
    type: n.stateNode.type,
    initial: n.stateNode.initial?.target[0]?.key ?? null,
    internal: internal.get(n.id) ?? [],
    children: n.children.map(toNode),
  });
  return { id: directed.id, title, root: toNode(directed), edges: [...edges.values()] };
}

export function inspectorMachines(): MachineGraph[] {
  return [
    machineGraph(updateJobMachine, 'Update job (download, deploy, restore, factory reset)'),
    machineGraph(partitionMachine, 'A/B partitions (one per gateway)'),
    machineGraph(safetyInterlockMachine, 'Safety interlock (one per gateway)'),
    machineGraph(zipOperationMachine, 'ZIP operation (configuration, plugin)'),
    machineGraph(
      componentSequenceMachine,
      'Component sequence (the install of a multi-component bundle: rolling, seamless, in-place)',
    ),
  ];
}
