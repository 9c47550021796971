import elkBundled from 'elkjs/lib/elk.bundled.js';
import type { ELK, ElkExtendedEdge, ElkLabel, ElkNode, LayoutOptions } from 'elkjs/lib/elk-api.js';
import type { GraphEdge, GraphNode, MachineGraph } from './graph-types.js';

/**
 * Lays a statechart out with ELK's layered algorithm (elkjs, bundled into inspector.js): states
 * in layers top down (the charts then fit the page's width), compound states as boxes around their own layout, orthogonal edges
 * routed around states, and every transition label given its own room, so none overlaps another
 * label or a state. Text is measured by the caller (the page measures with its real font).
 */

export type TextStyle = 'state' | 'compound' | 'internal' | 'edge';
export type TextMeasure = (text: string, style: TextStyle) => { width: number; height: number };

export const METRICS = {
  /** Inside an atomic state's box, around its text. */
  padX: 12,
  padY: 8,
  /** Between a state's name and its internal transitions. */
  lineGap: 3,
  /** Inside a compound state, around its children. */
  inner: 14,
  minStateW: 84,
  /** Around an edge label's text (its background box). */
  labelPadX: 4,
  labelPadY: 1,
};

export interface Point {
  x: number;
  y: number;
}

export interface PlacedNode {
  node: GraphNode;
  x: number;
  y: number;
  w: number;
  h: number;
  depth: number;
}

export interface PlacedLabel {
  text: string;
  /** Top-left corner and size of the label's box. */
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface PlacedEdge {
  /** For the arrow from an initial-state marker: no transition, no labels. */
  initial: boolean;
  edge: GraphEdge;
  /** The routed polyline, from the source's border to the target's. */
  points: Point[];
  labels: PlacedLabel[];
}

/** The dot a statechart draws in a compound state, with an arrow to its initial state. */
export interface PlacedMarker {
  id: string;
  cx: number;
  cy: number;
  r: number;
}

export interface GraphLayout {
  /** Absolute boxes of every state; the machine's root is the outer frame. */
  nodes: Map<string, PlacedNode>;
  markers: PlacedMarker[];
  edges: PlacedEdge[];
  width: number;
  height: number;
}

/** How each level is laid out: set on every compound state too, as ELK reads them per level. */
const LEVEL_OPTIONS: LayoutOptions = {
  'elk.direction': 'DOWN',
  'elk.edgeRouting': 'ORTHOGONAL',
  'elk.edgeLabels.placement': 'CENTER',
  'elk.layered.edgeLabels.sideSelection': 'SMART_UP',
  'elk.layered.spacing.nodeNodeBetweenLayers': '34',
  'elk.layered.spacing.edgeNodeBetweenLayers': '12',
  'elk.layered.spacing.edgeEdgeBetweenLayers': '8',
  'elk.spacing.nodeNode': '22',
  'elk.spacing.edgeNode': '12',
  'elk.spacing.edgeEdge': '8',
  'elk.spacing.edgeLabel': '3',
  'elk.spacing.labelLabel': '2',
  // Depth-first from the initial-state marker: a transition back towards it is the one drawn
  // backwards, so the path from the initial state reads top down. (ELK 0.12's model-order
  // strategies fail inside compound nodes with INCLUDE_CHILDREN.)
  'elk.layered.cycleBreaking.strategy': 'DEPTH_FIRST',
  'elk.layered.nodePlacement.strategy': 'NETWORK_SIMPLEX',
};

const ROOT_OPTIONS: LayoutOptions = {
  ...LEVEL_OPTIONS,
  'elk.algorithm': 'layered',
  // One layout across the hierarchy, so edges between nested states are routed, not drawn over.
  'elk.hierarchyHandling': 'INCLUDE_CHILDREN',
  // Every coordinate in the result is absolute: no summing of parents' offsets.
  'elk.json.shapeCoords': 'ROOT',
  'elk.json.edgeCoords': 'ROOT',
};

/** The state's name and its internal transitions, one per line. */
function textLines(node: GraphNode, compound: boolean, measure: TextMeasure) {
  const title = measure(node.key, compound ? 'compound' : 'state');
  const internal = node.internal.map((t) => measure(`↻ ${t}`, 'internal'));
  const width = Math.max(title.width, ...internal.map((l) => l.width));
  const height = title.height + internal.reduce((sum, l) => sum + l.height + METRICS.lineGap, 0);
  return { width, height };
}

const MARKER = 10;
const markerId = (node: GraphNode) => `${node.id}#initial`;

/** The initial child of a compound state (also what puts it first: the marker is a source). */
function initialChild(node: GraphNode): GraphNode | undefined {
  return node.children.find((c) => c.key === node.initial);
}

function elkNode(node: GraphNode, measure: TextMeasure): ElkNode {
  const m = METRICS;
  if (node.children.length === 0) {
    const text = textLines(node, false, measure);
    return {
      id: node.id,
      width: Math.max(m.minStateW, Math.ceil(text.width) + 2 * m.padX),
      height: Math.ceil(text.height) + 2 * m.padY,
    };
  }
  const header = textLines(node, true, measure);
  return {
    id: node.id,
    layoutOptions: {
      ...LEVEL_OPTIONS,
      'elk.padding': `[top=${Math.ceil(header.height) + 2 * m.padY},left=${m.inner},bottom=${m.inner},right=${m.inner}]`,
      // Wide enough for its own name and internal transitions, whatever its children need.
      'elk.nodeSize.constraints': 'MINIMUM_SIZE',
      'elk.nodeSize.minimum': `(${Math.ceil(header.width) + 2 * m.padX}, ${Math.ceil(header.height) + 2 * m.padY})`,
    },
    children: [
      ...(initialChild(node) ? [{ id: markerId(node), width: MARKER, height: MARKER }] : []),
      ...node.children.map((c) => elkNode(c, measure)),
    ],
  };
}

function initialEdges(node: GraphNode): GraphEdge[] {
  const first = initialChild(node);
  const own = first
    ? [{ id: `${markerId(node)}→${first.id}`, source: markerId(node), target: first.id, labels: [] }]
    : [];
  return [...own, ...node.children.flatMap(initialEdges)];
}

export function elkGraph(graph: MachineGraph, measure: TextMeasure): ElkNode {
  const m = METRICS;
  const edges: ElkExtendedEdge[] = [...initialEdges(graph.root), ...graph.edges].map((e) => ({
    id: e.id,
    sources: [e.source],
    targets: [e.target],
    labels: e.labels.map((text): ElkLabel => {
      const size = measure(text, 'edge');
      return {
        text,
        width: Math.ceil(size.width) + 2 * m.labelPadX,
        height: Math.ceil(size.height) + 2 * m.labelPadY,
      };
    }),
  }));
  return {
    id: `${graph.id}#layout`,
    layoutOptions: ROOT_OPTIONS,
    children: [elkNode(graph.root, measure)],
    edges,
  };
}

/** Approximate text sizes (for tests and the server side): the page measures its real font. */
export function estimateText(text: string, style: TextStyle): { width: number; height: number } {
  const char = { state: 7.4, compound: 7.6, internal: 5.9, edge: 6.1 }[style];
  const height = { state: 16, compound: 16, internal: 13, edge: 13 }[style];
  return { width: [...text].length * char, height };
}

/**
 * The bundle is CommonJS exporting the class, also as its own `default`: esbuild and Node both hand
 * over the class, while the NodeNext typings (the tests') see the module object. Typed once here.
 */
const Elk = elkBundled as unknown as new () => ELK;

type ElkLike = { layout(graph: ElkNode): Promise<ElkNode> };

let sharedElk: ElkLike | null = null;

export async function layoutMachine(
  graph: MachineGraph,
  measure: TextMeasure = estimateText,
  elk: ElkLike = (sharedElk ??= new Elk()),
): Promise<GraphLayout> {
  const laid = await elk.layout(elkGraph(graph, measure));
  const byId = new Map<string, GraphNode>();
  const index = (n: GraphNode) => {
    byId.set(n.id, n);
    n.children.forEach(index);
  };
  index(graph.root);

  const nodes = new Map<string, PlacedNode>();
  const markers: PlacedMarker[] = [];
  const place = (n: ElkNode, depth: number) => {
    if (n.id.endsWith('#initial')) {
      const r = (n.width ?? MARKER) / 2;
      markers.push({ id: n.id, cx: (n.x ?? 0) + r, cy: (n.y ?? 0) + r, r });
      return;
    }
    const node = byId.get(n.id);
    if (!node) throw new Error(`ELK returned an unknown state ${n.id}`);
    nodes.set(n.id, { node, x: n.x ?? 0, y: n.y ?? 0, w: n.width ?? 0, h: n.height ?? 0, depth });
    for (const c of n.children ?? []) place(c, depth + 1);
  };
  for (const c of laid.children ?? []) place(c, 0);

  const initials = initialEdges(graph.root);
  const edgeById = new Map([...initials, ...graph.edges].map((e) => [e.id, e]));
  const laidEdges: ElkExtendedEdge[] = [];
  const collect = (n: ElkNode) => {
    laidEdges.push(...(n.edges ?? []));
    (n.children ?? []).forEach(collect);
  };
  collect(laid);
  const edges = laidEdges.map((e): PlacedEdge => {
    const edge = edgeById.get(e.id);
    if (!edge) throw new Error(`ELK returned an unknown edge ${e.id}`);
    const points: Point[] = [];
    for (const s of e.sections ?? []) {
      points.push(s.startPoint, ...(s.bendPoints ?? []), s.endPoint);
    }
    const labels = (e.labels ?? []).map((l) => ({
      text: l.text ?? '',
      x: l.x ?? 0,
      y: l.y ?? 0,
      w: l.width ?? 0,
      h: l.height ?? 0,
    }));
    return { initial: initials.includes(edge), edge, points, labels };
  });
  return { nodes, markers, edges, width: laid.width ?? 0, height: laid.height ?? 0 };
}

/**
 * The node ids a state value names, innermost first, then its ancestors: `installing` (a flattened
 * job state) finds `updateJob.installing`; `in_progress.extracting` is a path from the root.
 */
export function stateIds(graph: MachineGraph, value: string | null): string[] {
  if (!value) return [];
  const all: GraphNode[] = [];
  const walk = (n: GraphNode) => {
    all.push(n);
    n.children.forEach(walk);
  };
  walk(graph.root);
  let path = value;
  if (value.startsWith('{')) {
    try {
      let v: unknown = JSON.parse(value);
      const parts: string[] = [];
      while (v && typeof v === 'object') {
        const [k, inner] = Object.entries(v)[0] ?? [];
        if (k === undefined) break;
        parts.push(k);
        v = inner;
      }
      if (typeof v === 'string') parts.push(v);
      path = parts.join('.');
    } catch {
      return [];
    }
  }
  const exact = all.find((n) => n.id === `${graph.root.id}.${path}`);
  const found = exact ?? all.find((n) => n.key === path.split('.').pop() && n !== graph.root);
  if (!found) return [];
  const ids = [found.id];
  let id = found.id;
  while (id.lastIndexOf('.') > 0) {
    id = id.slice(0, id.lastIndexOf('.'));
    if (id === graph.root.id) break;
    ids.push(id);
  }
  return ids;
}
