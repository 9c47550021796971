import type { GraphEdge, GraphNode, MachineGraph } from './graph-types.js';

/**
 * A small layered layout of a statechart (no layout library on the gateway): the children of each
 * compound state go into columns by their distance from its initial state along its transitions,
 * final states in a last column; compound states are boxes around their own layout.
 */

export interface PlacedNode {
  node: GraphNode;
  x: number;
  y: number;
  w: number;
  h: number;
  depth: number;
}

export interface GraphLayout {
  nodes: Map<string, PlacedNode>;
  width: number;
  height: number;
}

export const METRICS = { nodeH: 34, pad: 16, header: 26, gapX: 64, gapY: 20, charW: 7.4, minW: 92 };

interface Sized {
  node: GraphNode;
  w: number;
  h: number;
  columns: Sized[][];
  /** Horizontal gap after each column but the last. */
  gaps: number[];
}

/** The child of `parent` that is `id` or contains it, or null when `id` is outside `parent`. */
function childContaining(parent: GraphNode, id: string): GraphNode | null {
  for (const c of parent.children) {
    if (id === c.id || id.startsWith(`${c.id}.`)) return c;
  }
  return null;
}

/** Edges merged per (source, target), with the label drawn for them. */
export interface DrawnEdge {
  source: string;
  target: string;
  labels: string[];
  text: string;
}

export function mergeEdges(edges: GraphEdge[]): DrawnEdge[] {
  const grouped = new Map<string, DrawnEdge>();
  for (const e of edges) {
    const key = `${e.source}→${e.target}`;
    const g = grouped.get(key) ?? { source: e.source, target: e.target, labels: [], text: '' };
    const label = e.guard ? `${e.event} [${e.guard}]` : e.event;
    if (!g.labels.includes(label)) g.labels.push(label);
    grouped.set(key, g);
  }
  for (const g of grouped.values()) {
    g.text =
      g.labels.length > 2
        ? `${g.labels.slice(0, 2).join(', ')} +${g.labels.length - 2}`
        : g.labels.join(', ');
  }
  return [...grouped.values()];
}

export function labelWidth(text: string): number {
  return text.length * (METRICS.charW - 1.6) + 8;
}

/**
 * Columns of the children of `node`. Transitions back to a state already on the current path
 * (found depth-first from the initial state) are set aside, the rest form a DAG, and each state
 * goes one column right of its farthest predecessor; final states share the last column.
 */
export function columnsOf(node: GraphNode, edges: GraphEdge[]): GraphNode[][] {
  const kids = node.children;
  if (kids.length === 0) return [];
  const next = new Map<string, string[]>(kids.map((k) => [k.id, []]));
  for (const e of edges) {
    const a = childContaining(node, e.source);
    const b = childContaining(node, e.target);
    if (a && b && a !== b && !next.get(a.id)!.includes(b.id)) next.get(a.id)!.push(b.id);
  }
  const isFinal = (id: string) => kids.find((k) => k.id === id)!.type === 'final';
  const start = kids.find((k) => k.key === node.initial) ?? kids[0]!;
  const order: string[] = [];
  const onPath = new Set<string>();
  const forward = new Map<string, string[]>(kids.map((k) => [k.id, []]));
  const dfs = (id: string) => {
    order.push(id);
    onPath.add(id);
    for (const t of next.get(id)!) {
      if (onPath.has(t)) continue; // a back edge: drawn, but not used for the columns
      forward.get(id)!.push(t);
      if (!order.includes(t)) dfs(t);
    }
    onPath.delete(id);
  };
  dfs(start.id);
  for (const k of kids) if (!order.includes(k.id)) dfs(k.id);
  // Longest path over the DAG, in a topological order (reverse post-order is not needed: relax
  // until stable, the DAG is small).
  const layer = new Map<string, number>(order.map((id) => [id, 0]));
  for (let changed = true, guard = 0; changed && guard < kids.length + 1; guard++) {
    changed = false;
    for (const id of order) {
      for (const t of forward.get(id)!) {
        if (!isFinal(t) && layer.get(t)! < layer.get(id)! + 1) {
          layer.set(t, layer.get(id)! + 1);
          changed = true;
        }
      }
    }
  }
  const last = Math.max(0, ...order.filter((id) => !isFinal(id)).map((id) => layer.get(id)!));
  for (const id of order) if (isFinal(id)) layer.set(id, last + 1);
  const cols: GraphNode[][] = [];
  for (const id of order) (cols[layer.get(id)!] ??= []).push(kids.find((k) => k.id === id)!);
  return cols.filter((c) => c && c.length > 0);
}

function within(id: string, n: GraphNode): boolean {
  return id === n.id || id.startsWith(`${n.id}.`);
}

function size(node: GraphNode, edges: GraphEdge[], drawn: DrawnEdge[]): Sized {
  const m = METRICS;
  const labelW = Math.max(m.minW, Math.ceil(node.key.length * m.charW) + 28);
  if (node.children.length === 0) return { node, w: labelW, h: m.nodeH, columns: [], gaps: [] };
  const columns = columnsOf(node, edges).map((col) => col.map((c) => size(c, edges, drawn)));
  // Room for the label of a straight edge between neighbouring columns.
  const gaps = columns.slice(1).map((col, i) => {
    const left = columns[i]!;
    const widths = drawn
      .filter(
        (e) =>
          (left.some((l) => within(e.source, l.node)) && col.some((r) => within(e.target, r.node))) ||
          (col.some((r) => within(e.source, r.node)) && left.some((l) => within(e.target, l.node))),
      )
      .map((e) => labelWidth(e.text) + 24);
    return Math.max(m.gapX, ...widths);
  });
  const colW = columns.map((col) => Math.max(...col.map((c) => c.w)));
  const colH = columns.map((col) => col.reduce((sum, c) => sum + c.h, 0) + m.gapY * (col.length - 1));
  const innerW = colW.reduce((a, b) => a + b, 0) + gaps.reduce((a, b) => a + b, 0);
  const innerH = Math.max(...colH);
  return {
    node,
    w: Math.max(labelW, innerW + 2 * m.pad),
    h: m.header + innerH + m.pad,
    columns,
    gaps,
  };
}

function place(s: Sized, x: number, y: number, depth: number, out: Map<string, PlacedNode>): void {
  const m = METRICS;
  out.set(s.node.id, { node: s.node, x, y, w: s.w, h: s.h, depth });
  if (s.columns.length === 0) return;
  const colW = s.columns.map((col) => Math.max(...col.map((c) => c.w)));
  const innerW = colW.reduce((a, b) => a + b, 0) + s.gaps.reduce((a, b) => a + b, 0);
  const innerH = s.h - m.header - m.pad;
  let cx = x + (s.w - innerW) / 2;
  s.columns.forEach((col, i) => {
    const colH = col.reduce((sum, c) => sum + c.h, 0) + m.gapY * (col.length - 1);
    let cy = y + m.header + (innerH - colH) / 2;
    for (const c of col) {
      place(c, cx + (colW[i]! - c.w) / 2, cy, depth + 1, out);
      cy += c.h + m.gapY;
    }
    cx += colW[i]! + (s.gaps[i] ?? 0);
  });
}

/** Absolute boxes of every state; the root is the outer frame at (0, 0). */
export function layoutMachine(graph: MachineGraph): GraphLayout {
  const sized = size(graph.root, graph.edges, mergeEdges(graph.edges));
  const nodes = new Map<string, PlacedNode>();
  place(sized, 0, 0, 0, nodes);
  return { nodes, width: sized.w, height: sized.h };
}

/** Where the segment from the centre of `a` towards the centre of `b` leaves `a`'s box. */
export function borderPoint(a: PlacedNode, b: PlacedNode): { x: number; y: number } {
  const cx = a.x + a.w / 2;
  const cy = a.y + a.h / 2;
  const dx = b.x + b.w / 2 - cx;
  const dy = b.y + b.h / 2 - cy;
  if (dx === 0 && dy === 0) return { x: cx, y: cy };
  const t = Math.min(
    dx === 0 ? Infinity : a.w / 2 / Math.abs(dx),
    dy === 0 ? Infinity : a.h / 2 / Math.abs(dy),
  );
  return { x: cx + dx * t, y: cy + dy * t };
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

export interface Route {
  /** SVG path data. */
  d: string;
  labelX: number;
  labelY: number;
}

function segmentHitsBox(x1: number, y1: number, x2: number, y2: number, b: PlacedNode): boolean {
  // Liang–Barsky clip of the segment against the box (shrunk a little so touching is not hitting).
  const m = 2;
  const [xmin, xmax, ymin, ymax] = [b.x + m, b.x + b.w - m, b.y + m, b.y + b.h - m];
  const dx = x2 - x1;
  const dy = y2 - y1;
  let t0 = 0;
  let t1 = 1;
  for (const [p, q] of [
    [-dx, x1 - xmin],
    [dx, xmax - x1],
    [-dy, y1 - ymin],
    [dy, ymax - y1],
  ] as const) {
    if (p === 0) {
      if (q < 0) return false;
      continue;
    }
    const r = q / p;
    if (p < 0) t0 = Math.max(t0, r);
    else t1 = Math.min(t1, r);
    if (t0 > t1) return false;
  }
  return true;
}

/**
 * How an edge is drawn: a straight line when nothing stands between the two states; otherwise an
 * arc (below for forward edges, above for backward ones, to the right within a column), higher
 * the farther it goes, so edges skipping states do not run through them and nest readably.
 */
export function routeEdge(
  a: PlacedNode,
  b: PlacedNode,
  all: Iterable<PlacedNode>,
  opts: { reverse?: boolean } = {},
): Route {
  let p1 = borderPoint(a, b);
  let p2 = borderPoint(b, a);
  // A pair with transitions both ways: two parallel lines, each labelled on its own side.
  let side = 0;
  if (opts.reverse) {
    side = a.node.id < b.node.id ? -1 : 1;
    const len = Math.hypot(p2.x - p1.x, p2.y - p1.y) || 1;
    const [nx, ny] = [(-(p2.y - p1.y) / len) * 7 * side, ((p2.x - p1.x) / len) * 7 * side];
    p1 = { x: p1.x + nx, y: p1.y + ny };
    p2 = { x: p2.x + nx, y: p2.y + ny };
  }
  const related = (n: PlacedNode) =>
    n === a || n === b || a.node.id.startsWith(`${n.node.id}.`) || b.node.id.startsWith(`${n.node.id}.`);
  const blocked = [...all].some(
    (n) =>
      n.depth > 0 && !related(n) && n.node.children.length === 0 && segmentHitsBox(p1.x, p1.y, p2.x, p2.y, n),
  );
  if (!blocked) {
    const horizontal = Math.abs(p2.x - p1.x) >= Math.abs(p2.y - p1.y);
    const up = side === 0 ? -4 : side * (p2.x >= p1.x ? 1 : -1) * 10;
    return {
      d: `M ${p1.x} ${p1.y} L ${p2.x} ${p2.y}`,
      labelX: (p1.x + p2.x) / 2,
      labelY: (p1.y + p2.y) / 2 + (horizontal ? up : 0),
    };
  }
  const acx = a.x + a.w / 2;
  const bcx = b.x + b.w / 2;
  const sameColumn = Math.abs(acx - bcx) < Math.min(a.w, b.w) / 2;
  if (sameColumn) {
    const sx = a.x + a.w;
    const sy = a.y + a.h / 2;
    const tx = b.x + b.w;
    const ty = b.y + b.h / 2;
    const k = 24 + Math.abs(ty - sy) * 0.35 + Math.max(0, Math.max(sx, tx) - Math.min(sx, tx));
    const cx = Math.max(sx, tx) + k;
    return {
      d: `M ${sx} ${sy} C ${cx} ${sy} ${cx} ${ty} ${tx} ${ty}`,
      labelX: Math.max(sx, tx) + k * 0.75,
      labelY: (sy + ty) / 2,
    };
  }
  const forward = bcx > acx;
  const dir = forward ? 1 : -1;
  const sx = acx + (dir * a.w) / 6;
  const tx = bcx - (dir * b.w) / 6;
  const sy = forward ? a.y + a.h : a.y;
  const ty = forward ? b.y + b.h : b.y;
  const k = (forward ? 1 : -1) * (22 + Math.abs(tx - sx) * 0.14);
  const base = forward ? Math.max(sy, ty) : Math.min(sy, ty);
  const c1y = base + k;
  return {
    d: `M ${sx} ${sy} C ${sx} ${c1y} ${tx} ${c1y} ${tx} ${ty}`,
    labelX: (sx + tx) / 2,
    labelY: (sy + ty) / 8 + (3 * c1y) / 4 + (forward ? 4 : 0),
  };
}
