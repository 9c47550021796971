import { describe, expect, it } from 'vitest';
import { JOB_STATE_NAMES, updateJobMachine } from '../../machines/update-job.js';
import {
  columnsOf,
  layoutMachine,
  routeEdge,
  stateIds,
  type PlacedNode,
} from '../../web/client/inspector/layout.js';
import type { GraphNode } from '../../web/client/inspector/graph-types.js';
import { eventLabel, inspectorMachines, machineGraph, machineOfJobKind } from '../../web/inspector.js';

/** The inspector's statechart graphs (read from the machines) and its own layered layout. */

const graphs = inspectorMachines();
const byId = new Map(graphs.map((g) => [g.id, g]));

function allNodes(n: GraphNode): GraphNode[] {
  return [n, ...n.children.flatMap(allNodes)];
}

describe('statechart graphs from the machine definitions', () => {
  it('should read every state and the documented transitions of the update job', () => {
    const g = machineGraph(updateJobMachine, 'job');
    const ids = allNodes(g.root).map((n) => n.id);
    for (const name of JOB_STATE_NAMES) {
      expect(
        ids.some((id) => id.endsWith(`.${name}`)),
        name,
      ).toBe(true);
    }
    expect(g.root.initial).toBe('pending');
    const edge = (source: string, target: string) =>
      g.edges
        .filter((e) => e.source === `updateJob.${source}` && e.target === `updateJob.${target}`)
        .map((e) => e.event);
    expect(edge('pending', 'downloading')).toContain('START');
    expect(edge('verifying', 'downloaded')).toContain('done: verifyImage');
    expect(edge('downloading', 'error')).toContain('error: transferImage');
    // Targetless and self transitions (PROGRESS, RESUME re-entry) are not drawn.
    expect(g.edges.some((e) => e.source === e.target)).toBe(false);
  });

  it('should cover the four machines, delayed and generated event names made readable', () => {
    expect(graphs.map((g) => g.id)).toEqual(['updateJob', 'partition', 'safetyInterlock', 'zipOp']);
    const safety = byId.get('safetyInterlock')!;
    expect(safety.edges.some((e) => e.event === 'after overrideExpiry')).toBe(true);
    expect(eventLabel('xstate.done.actor.0.zipOp.in_progress.extracting')).toBe('done');
    expect(eventLabel('xstate.error.actor.rebootGateway')).toBe('error: rebootGateway');
    expect(eventLabel('xstate.after.overrideExpiry.safetyInterlock.overridden')).toBe('after overrideExpiry');
    expect(machineOfJobKind('download')).toBe('updateJob');
    expect(machineOfJobKind('plugin')).toBe('zipOp');
    expect(machineOfJobKind('snapshot')).toBeNull();
  });

  it('should survive JSON (it is embedded in the inspector page)', () => {
    expect(JSON.parse(JSON.stringify(graphs))).toEqual(graphs);
  });
});

describe('inspector layout', () => {
  it('should keep sibling states apart and children inside their parent', () => {
    for (const g of graphs) {
      const { nodes } = layoutMachine(g);
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
          for (const b of kids.slice(i + 1)) {
            const apart = a.x + a.w <= b.x || b.x + b.w <= a.x || a.y + a.h <= b.y || b.y + b.h <= a.y;
            expect(apart, `${a.node.id} / ${b.node.id}`).toBe(true);
          }
        }
      }
    }
  });

  it('should order the main path left to right with the final states last', () => {
    const g = byId.get('updateJob')!;
    const cols = columnsOf(g.root, g.edges).map((c) => c.map((n) => n.key));
    expect(cols.slice(0, 5)).toEqual([
      ['pending'],
      ['downloading'],
      ['verifying'],
      ['downloaded'],
      ['installing'],
    ]);
    expect(cols[cols.length - 1]!.sort()).toEqual(['cancelled', 'complete', 'error']);
    // Back edges (rolling_back → stable) do not push a state right of its successor.
    const p = byId.get('partition')!;
    const pcols = columnsOf(p.root, p.edges).map((c) => c.map((n) => n.key));
    expect(pcols[0]).toEqual(['init']);
    expect(pcols.flat().sort()).toEqual(['init', 'rolling_back', 'stable', 'staged', 'trial']);
  });

  it('should route an edge straight between neighbours and around states in the way', () => {
    const box = (id: string, x: number): PlacedNode => ({
      node: { id, key: id, type: 'atomic', initial: null, children: [] },
      x,
      y: 0,
      w: 80,
      h: 30,
      depth: 1,
    });
    const [a, b, c] = [box('m.a', 0), box('m.b', 150), box('m.c', 300)];
    expect(routeEdge(a, b, [a, b, c]).d).toMatch(/^M [\d.]+ [\d.]+ L /);
    const around = routeEdge(a, c, [a, b, c]);
    expect(around.d).toContain(' C ');
    expect(around.labelY).toBeGreaterThan(30);
  });

  it('should find the node of a live state value', () => {
    const job = byId.get('updateJob')!;
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
