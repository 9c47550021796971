import { describe, expect, it } from 'vitest';
import type { AnyStateMachine } from 'xstate';
import { getStateNodes } from 'xstate/graph';
import { partitionMachine } from '../../machines/partition.js';
import { safetyInterlockMachine } from '../../machines/safety-interlock.js';
import { JOB_STATE_NAMES, updateJobMachine } from '../../machines/update-job.js';
import { zipOperationMachine } from '../../machines/zip-operation.js';
import { machineOfJobKind } from '../../api/inspector-view.js';
import type { GraphNode, MachineGraph } from '../../web/client/inspector/graph-types.js';
import {
  elkGraph,
  estimateText,
  layoutMachine,
  stateIds,
  type PlacedLabel,
} from '../../web/client/inspector/layout.js';
import {
  eventLabel,
  inspectorMachines,
  machineGraph,
  machineTransitions,
  transitionLabel,
} from '../../web/inspector-graph.js';
import { componentSequenceMachine } from '../../machines/component-sequence.js';

/** The inspector's drawing model (from `xstate/graph`) and its ELK layout. */

const MACHINES: Array<[string, AnyStateMachine]> = [
  ['updateJob', updateJobMachine],
  ['partition', partitionMachine],
  ['safetyInterlock', safetyInterlockMachine],
  ['zipOp', zipOperationMachine],
  ['componentSequence', componentSequenceMachine],
];
const graphs = inspectorMachines();
const byId = new Map(graphs.map((g) => [g.id, g]));

function allNodes(n: GraphNode): GraphNode[] {
  return [n, ...n.children.flatMap(allNodes)];
}

function overlap(a: { x: number; y: number; w: number; h: number }, b: typeof a): boolean {
  return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

describe('drawing model from xstate/graph', () => {
  it.each(MACHINES)('should have every state of %s, with its type', (_id, machine) => {
    const g = machineGraph(machine, 't');
    const nodes = new Map(allNodes(g.root).map((n) => [n.id, n]));
    const states = getStateNodes(machine);
    expect(states.length).toBeGreaterThan(1);
    for (const s of states) expect(nodes.get(s.id)?.type, s.id).toBe(s.type);
    // Nothing but the machine's states (and its root).
    expect(nodes.size).toBe(states.length + 1);
  });

  it.each(MACHINES)('should show every transition of %s exactly once, no edge twice', (_id, machine) => {
    const g = machineGraph(machine, 't');
    const nodes = new Map(allNodes(g.root).map((n) => [n.id, n]));
    const drawn = new Set<string>();
    for (const e of g.edges) {
      expect(e.id).toBe(`${e.source}→${e.target}`);
      expect(e.source).not.toBe(e.target);
      expect(nodes.has(e.source) && nodes.has(e.target), e.id).toBe(true);
      expect(new Set(e.labels).size, e.id).toBe(e.labels.length);
      for (const l of e.labels) drawn.add(`${e.source}→${e.target}: ${l}`);
    }
    for (const n of nodes.values()) {
      expect(new Set(n.internal).size, n.id).toBe(n.internal.length);
      for (const l of n.internal) drawn.add(`${n.id}↻ ${l}`);
    }
    // One arrow per pair of states, whatever the number of transitions between them.
    expect(new Set(g.edges.map((e) => e.id)).size).toBe(g.edges.length);

    const expected = new Set<string>();
    for (const t of machineTransitions(machine)) {
      const label = transitionLabel(t);
      const outward = t.targets.filter((id) => id !== t.source);
      for (const target of outward) expected.add(`${t.source}→${target}: ${label}`);
      if (outward.length < t.targets.length || t.targets.length === 0) expected.add(`${t.source}↻ ${label}`);
    }
    expect([...drawn].sort()).toEqual([...expected].sort());
  });

  it('should read the update job as documented, with its eventless and re-entering transitions', () => {
    const g = byId.get('updateJob')!;
    const ids = allNodes(g.root).map((n) => n.id);
    for (const name of JOB_STATE_NAMES) {
      expect(
        ids.some((id) => id.endsWith(`.${name}`)),
        name,
      ).toBe(true);
    }
    expect(g.root.initial).toBe('pending');
    const labels = (source: string, target: string) =>
      g.edges.find((e) => e.id === `updateJob.${source}→updateJob.${target}`)?.labels ?? [];
    expect(labels('pending', 'downloading')).toEqual(['START']);
    expect(labels('verifying', 'downloaded')).toEqual(['done: verifyImage']);
    expect(labels('downloading', 'error')).toEqual(['TRANSFER_FAILED', 'FAIL', 'error: transferImage']);
    expect(labels('downloaded', 'installing')).toEqual(['INSTALL [installAllowed]']);
    // `always` is not among toDirectedGraph's edges: read from the state node.
    expect(labels('installing.awaiting_reboot', 'installing.rebooting')).toEqual(['always [rebootClear]']);
    const downloading = allNodes(g.root).find((n) => n.id === 'updateJob.downloading')!;
    expect(downloading.internal).toEqual(['SAFETY_CHANGED', 'PROGRESS', 'RESUME']);
    const downloaded = allNodes(g.root).find((n) => n.id === 'updateJob.downloaded')!;
    expect(downloaded.internal).toContain('INSTALL');
  });

  it('should make generated event names readable', () => {
    const safety = byId.get('safetyInterlock')!;
    expect(
      safety.edges.find((e) => e.id === 'safetyInterlock.overridden→safetyInterlock.normal')!.labels,
    ).toContain('after overrideExpiry');
    expect(eventLabel('xstate.done.actor.0.zipOp.in_progress.extracting')).toBe('done');
    expect(eventLabel('xstate.error.actor.rebootGateway')).toBe('error: rebootGateway');
    expect(eventLabel('xstate.after.overrideExpiry.safetyInterlock.overridden')).toBe('after overrideExpiry');
    expect(eventLabel('xstate.done.state.zipOp.in_progress')).toBe('done');
    expect(machineOfJobKind('download')).toBe('updateJob');
    expect(machineOfJobKind('plugin')).toBe('zipOp');
    expect(machineOfJobKind('snapshot')).toBeNull();
  });

  it('should survive JSON (it is embedded in the inspector page)', () => {
    expect(graphs.map((g) => g.id)).toEqual([
      'updateJob',
      'partition',
      'safetyInterlock',
      'zipOp',
      'componentSequence',
    ]);
    expect(JSON.parse(JSON.stringify(graphs))).toEqual(graphs);
  });
});

describe('ELK layout of the statecharts', () => {
  const layouts = Promise.all(graphs.map(async (g) => [g, await layoutMachine(g, estimateText)] as const));

  it('should size every label from the measured text', () => {
    const g = byId.get('safetyInterlock')!;
    const elk = elkGraph(g, (text) => ({ width: text.length * 10, height: 12 }));
    const edge = elk.edges!.find((e) => e.id === 'safetyInterlock.overridden→safetyInterlock.normal')!;
    expect(edge.labels!.map((l) => [l.text, l.width])).toContainEqual(['OVERRIDE_DISABLE', 168]);
  });

  it('should keep states apart and children inside their parent', async () => {
    for (const [g, { nodes }] of await layouts) {
      expect(nodes.size).toBe(allNodes(g.root).length);
      for (const parent of allNodes(g.root)) {
        const p = nodes.get(parent.id)!;
        const kids = parent.children.map((c) => nodes.get(c.id)!);
        for (const k of kids) {
          expect(
            k.x >= p.x && k.y >= p.y && k.x + k.w <= p.x + p.w && k.y + k.h <= p.y + p.h,
            k.node.id,
          ).toBe(true);
        }
        for (const [i, a] of kids.entries()) {
          for (const b of kids.slice(i + 1)) expect(overlap(a, b), `${a.node.id} / ${b.node.id}`).toBe(false);
        }
      }
    }
  });

  it('should give every transition label its own room, off the states', async () => {
    for (const [g, { nodes, edges }] of await layouts) {
      const labels: Array<PlacedLabel & { edge: string }> = edges.flatMap((e) =>
        e.labels.map((l) => ({ ...l, edge: e.edge.id })),
      );
      expect(labels.map((l) => l.text).sort()).toEqual(g.edges.flatMap((e) => e.labels).sort());
      for (const [i, a] of labels.entries()) {
        for (const b of labels.slice(i + 1)) {
          expect(overlap(a, b), `${g.id}: "${a.text}" (${a.edge}) / "${b.text}" (${b.edge})`).toBe(false);
        }
        for (const n of nodes.values()) {
          if (n.node.children.length > 0) continue;
          expect(overlap(a, n), `${g.id}: "${a.text}" on ${n.node.id}`).toBe(false);
        }
      }
    }
  });

  it('should route every edge from its source to its target', async () => {
    for (const [g, { nodes, edges }] of await layouts) {
      const transitions = edges.filter((e) => !e.initial);
      expect(transitions.map((e) => e.edge.id).sort()).toEqual(g.edges.map((e) => e.id).sort());
      for (const { edge, points } of transitions) {
        expect(points.length, edge.id).toBeGreaterThanOrEqual(2);
        const near = (pt: { x: number; y: number }, id: string) => {
          const n = nodes.get(id)!;
          return pt.x >= n.x - 1 && pt.x <= n.x + n.w + 1 && pt.y >= n.y - 1 && pt.y <= n.y + n.h + 1;
        };
        expect(near(points[0]!, edge.source), `${edge.id} starts at its source`).toBe(true);
        expect(near(points[points.length - 1]!, edge.target), `${edge.id} ends at its target`).toBe(true);
      }
    }
  });

  it('should read the path from the initial state top down', async () => {
    const [, job] = (await layouts)[0]!;
    const y = (key: string) => job.nodes.get(`updateJob.${key}`)!.y;
    expect(y('pending')).toBeLessThan(y('downloading'));
    expect(y('downloading')).toBeLessThan(y('verifying'));
    expect(y('verifying')).toBeLessThan(y('downloaded'));
    expect(y('downloaded')).toBeLessThan(y('installing'));
    expect(y('installing.preparing')).toBeLessThan(y('installing.rebooting'));
    // A cycle (normal ⇄ overridden) is broken against the initial state, not at random.
    const safety = (await layouts)[2]![1];
    expect(safety.nodes.get('safetyInterlock.normal')!.y).toBeLessThan(
      safety.nodes.get('safetyInterlock.overridden')!.y,
    );
    // The dot of each compound state's initial state, with its arrow.
    expect(job.markers.map((m) => m.id).sort()).toEqual([
      'updateJob#initial',
      'updateJob.installing#initial',
    ]);
    expect(
      job.edges
        .filter((e) => e.initial)
        .map((e) => e.edge.target)
        .sort(),
    ).toEqual(['updateJob.installing.preparing', 'updateJob.pending']);
  });
});

describe('live state values on the chart', () => {
  it('should find the node of a live state value', () => {
    const job: MachineGraph = byId.get('updateJob')!;
    expect(stateIds(job, 'installing')).toEqual(['updateJob.installing']);
    expect(stateIds(job, 'awaiting_reboot')).toEqual([
      'updateJob.installing.awaiting_reboot',
      'updateJob.installing',
    ]);
    expect(stateIds(job, JSON.stringify({ installing: 'rebooting' }))).toEqual([
      'updateJob.installing.rebooting',
      'updateJob.installing',
    ]);
    expect(stateIds(byId.get('zipOp')!, 'in_progress.extracting')).toEqual([
      'zipOp.in_progress.extracting',
      'zipOp.in_progress',
    ]);
    expect(stateIds(job, 'no-such-state')).toEqual([]);
    expect(stateIds(job, null)).toEqual([]);
  });
});
