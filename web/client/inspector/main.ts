import { byId, dataJson, fill, h, listen } from '../dom.js';
import type { InspectorJob, InspectorState, InspectorTransition, MachineGraph } from './graph-types.js';
import { labelWidth, layoutMachine, mergeEdges, routeEdge, stateIds, type GraphLayout } from './layout.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const POLL_MS = 700;

function s<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number> = {},
  ...children: Array<SVGElement | string>
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

/** One statechart drawn from its definition; `mark` highlights the states of one actor. */
class MachineView {
  readonly el: HTMLElement;
  private readonly svg: SVGSVGElement;
  private readonly layout: GraphLayout;
  private readonly status: HTMLElement;
  readonly select: HTMLSelectElement;

  constructor(readonly graph: MachineGraph) {
    this.layout = layoutMachine(graph);
    this.svg = this.draw();
    this.status = h('p', { class: 'inspector-status', 'data-testid': `status-${graph.id}`, role: 'status' });
    this.select = h('select', { id: `actor-${graph.id}` });
    // Wide charts are shrunk to the panel by default (every state and highlight in view); the
    // toggle shows them at full size, scrolling, to read the transition labels.
    const wrap = h('div', { class: 'svg-wrap fit' }, this.svg);
    const zoom = h('button', { type: 'button', class: 'secondary', 'aria-pressed': 'false' }, 'Actual size');
    zoom.addEventListener('click', () => {
      const actual = wrap.classList.toggle('fit') === false;
      zoom.setAttribute('aria-pressed', String(actual));
    });
    this.el = h(
      'section',
      { class: 'panel inspector-machine', 'aria-labelledby': `title-${graph.id}`, 'data-machine': graph.id },
      h('h2', { id: `title-${graph.id}` }, graph.title, ' ', h('code', {}, graph.id)),
      h(
        'div',
        { class: 'toolbar' },
        h('div', { class: 'field inline' }, h('label', { for: this.select.id }, 'Actor'), this.select),
        zoom,
      ),
      this.status,
      wrap,
    );
  }

  private draw(): SVGSVGElement {
    const { nodes, width, height } = this.layout;
    const margin = 12;
    const svg = s('svg', {
      viewBox: `${-margin} ${-margin} ${width + 2 * margin} ${height + 2 * margin}`,
      width: width + 2 * margin,
      height: height + 2 * margin,
      role: 'img',
      'aria-label': `Statechart ${this.graph.id}`,
      class: 'chart',
    });
    svg.append(
      s(
        'defs',
        {},
        s(
          'marker',
          {
            id: `arrow-${this.graph.id}`,
            viewBox: '0 0 10 10',
            refX: 9,
            refY: 5,
            markerWidth: 7,
            markerHeight: 7,
            orient: 'auto-start-reverse',
          },
          s('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrowhead' }),
        ),
      ),
    );
    // States first (outer before inner), then edges on top so labels stay readable.
    const states = s('g', { class: 'states' });
    for (const p of [...nodes.values()].sort((a, b) => a.depth - b.depth)) {
      if (p.depth === 0) continue;
      const compound = p.node.children.length > 0;
      const g = s('g', {
        class: `state state-${p.node.type}${compound ? ' compound' : ''}`,
        'data-state-id': p.node.id,
      });
      g.append(s('title', {}, p.node.id));
      g.append(s('rect', { x: p.x, y: p.y, width: p.w, height: p.h, rx: compound ? 10 : 8 }));
      if (p.node.type === 'final') {
        g.append(
          s('rect', { x: p.x + 3, y: p.y + 3, width: p.w - 6, height: p.h - 6, rx: 6, class: 'final-inner' }),
        );
      }
      g.append(
        s(
          'text',
          compound
            ? { x: p.x + 10, y: p.y + 17, class: 'label compound-label' }
            : { x: p.x + p.w / 2, y: p.y + p.h / 2 + 4, 'text-anchor': 'middle', class: 'label' },
          p.node.key,
        ),
      );
      states.append(g);
    }
    svg.append(states);

    const edges = s('g', { class: 'edges' });
    const drawn = mergeEdges(this.graph.edges);
    const pairs = new Set(drawn.map((e) => `${e.source}→${e.target}`));
    let [minX, minY, maxX, maxY] = [0, 0, width, height];
    for (const { source, target, labels, text } of drawn) {
      const a = nodes.get(source);
      const b = nodes.get(target);
      if (!a || !b) continue;
      const route = routeEdge(a, b, nodes.values(), { reverse: pairs.has(`${target}→${source}`) });
      const g = s('g', { class: 'edge', 'data-edge': `${source}→${target}` });
      g.append(s('title', {}, `${source} → ${target}: ${labels.join(', ')}`));
      g.append(s('path', { d: route.d, 'marker-end': `url(#arrow-${this.graph.id})` }));
      const w = labelWidth(text);
      g.append(
        s('rect', {
          x: route.labelX - w / 2,
          y: route.labelY - 9,
          width: w,
          height: 14,
          rx: 3,
          class: 'edge-label-bg',
        }),
      );
      g.append(
        s(
          'text',
          { x: route.labelX, y: route.labelY + 2, 'text-anchor': 'middle', class: 'edge-label' },
          text,
        ),
      );
      edges.append(g);
      const numbers = route.d.match(/-?\d+(\.\d+)?/g)!.map(Number);
      for (let i = 0; i + 1 < numbers.length; i += 2) {
        minX = Math.min(minX, numbers[i]!);
        maxX = Math.max(maxX, numbers[i]!);
        minY = Math.min(minY, numbers[i + 1]!);
        maxY = Math.max(maxY, numbers[i + 1]!);
      }
      minX = Math.min(minX, route.labelX - w / 2);
      maxX = Math.max(maxX, route.labelX + w / 2);
      minY = Math.min(minY, route.labelY - 10);
      maxY = Math.max(maxY, route.labelY + 6);
    }
    const vw = maxX - minX + 2 * margin;
    const vh = maxY - minY + 2 * margin;
    svg.setAttribute('viewBox', `${minX - margin} ${minY - margin} ${vw} ${vh}`);
    svg.setAttribute('width', String(vw));
    svg.setAttribute('height', String(vh));
    svg.append(edges);
    return svg;
  }

  /** Highlights the given state value (live: `active`; history step: `step`). */
  mark(kind: 'active' | 'step', value: string | null, label: string): void {
    const ids = stateIds(this.graph, value);
    for (const g of this.svg.querySelectorAll<SVGGElement>('g.state')) {
      const i = ids.indexOf(g.dataset.stateId ?? '');
      g.classList.toggle(kind, i === 0);
      g.classList.toggle(`${kind}-parent`, i > 0);
    }
    if (kind === 'active') fill(this.status, label);
  }

  markEdge(from: string | null, to: string | null): void {
    const a = stateIds(this.graph, from)[0];
    const b = stateIds(this.graph, to)[0];
    for (const g of this.svg.querySelectorAll<SVGGElement>('g.edge')) {
      g.classList.toggle('step', !!a && !!b && g.dataset.edge === `${a}→${b}`);
    }
  }

  setOptions(options: Array<{ value: string; label: string }>): void {
    const current = this.select.value;
    const same =
      this.select.options.length === options.length &&
      options.every(
        (o, i) => this.select.options[i]?.value === o.value && this.select.options[i]?.text === o.label,
      );
    if (same) return;
    fill(
      this.select,
      options.map((o) => h('option', { value: o.value }, o.label)),
    );
    if (options.some((o) => o.value === current)) this.select.value = current;
  }
}

function jobLabel(j: InspectorJob): string {
  return `${j.id} (${j.kind}, ${j.gateway_id}) — ${j.state}`;
}

function start(): void {
  const root = byId('inspector');
  const graphs = dataJson<MachineGraph[]>(root, 'machines');
  let state = dataJson<InspectorState>(root, 'state');
  const views = new Map(graphs.map((g) => [g.id, new MachineView(g)]));
  const AUTO = '__newest__';

  // ---- job history stepper ----
  const historySelect = h('select', { id: 'history-job' });
  const load = h('button', { type: 'button', id: 'history-load' }, 'Show history');
  const prev = h('button', { type: 'button', id: 'history-prev', class: 'secondary' }, '◀ Previous');
  const next = h('button', { type: 'button', id: 'history-next', class: 'secondary' }, 'Next ▶');
  const stepInfo = h('p', { 'data-testid': 'history-step', role: 'status' });
  const list = h('ol', { class: 'history', 'data-testid': 'history-list' });
  const error = h('p', { class: 'error', role: 'alert' });
  let history: { job: InspectorJob; transitions: InspectorTransition[]; index: number } | null = null;

  const showStep = () => {
    if (!history) return;
    const { job, transitions, index } = history;
    const view = job.machine ? views.get(job.machine) : undefined;
    const t = transitions[index];
    if (!t) return;
    view?.mark('step', t.to, '');
    view?.markEdge(t.from, t.to);
    fill(
      stepInfo,
      `Step ${index + 1} of ${transitions.length}: ${t.from ?? '(start)'} → ${t.to} on ${t.event} at ${t.at}`,
    );
    for (const [i, li] of [...list.children].entries()) li.classList.toggle('current', i === index);
    prev.disabled = index === 0;
    next.disabled = index === transitions.length - 1;
  };
  prev.addEventListener('click', () => {
    if (history && history.index > 0) {
      history.index--;
      showStep();
    }
  });
  next.addEventListener('click', () => {
    if (history && history.index < history.transitions.length - 1) {
      history.index++;
      showStep();
    }
  });
  listen(load, 'click', async () => {
    fill(error);
    const job = state.jobs.find((j) => j.id === historySelect.value);
    if (!job) return;
    try {
      const res = await fetch(`/dev/inspector/jobs/${encodeURIComponent(job.id)}/transitions`, {
        credentials: 'same-origin',
      });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const body = (await res.json()) as { transitions: InspectorTransition[] };
      history = { job, transitions: body.transitions, index: 0 };
      fill(
        list,
        body.transitions.map((t, i) =>
          h(
            'li',
            {},
            h(
              'button',
              {
                type: 'button',
                class: 'link',
                onclick: () => {
                  if (history) history.index = i;
                  showStep();
                },
              },
              `${t.at} ${t.from ?? '(start)'} → ${t.to} (${t.event})`,
            ),
          ),
        ),
      );
      showStep();
    } catch (err) {
      fill(error, `Could not read the history: ${(err as Error).message}`);
    }
  });
  const historyPanel = h(
    'section',
    { class: 'panel', 'aria-labelledby': 'history-title' },
    h('h2', { id: 'history-title' }, 'Job transition history'),
    h(
      'div',
      { class: 'toolbar' },
      h('div', { class: 'field inline' }, h('label', { for: 'history-job' }, 'Job'), historySelect),
      load,
    ),
    h('div', { class: 'actions' }, prev, next),
    stepInfo,
    error,
    list,
  );

  // ---- events as they arrive ----
  const eventList = h('ol', { class: 'events', 'data-testid': 'event-list', 'aria-live': 'polite' });
  const eventsPanel = h(
    'section',
    { class: 'panel', 'aria-labelledby': 'events-title' },
    h('h2', { id: 'events-title' }, 'Events received (newest first)'),
    eventList,
  );
  const renderEvents = () =>
    fill(
      eventList,
      state.events
        .slice(0, 60)
        .map((e) =>
          h(
            'li',
            {},
            h('code', {}, `${e.at.slice(11, 23)} ${e.machine} ${e.actor} `),
            h('strong', {}, e.type),
            Object.keys(e.payload).length
              ? h('code', { class: 'payload' }, ` ${JSON.stringify(e.payload)}`)
              : '',
          ),
        ),
    );

  const render = () => {
    renderEvents();
    for (const view of views.values()) {
      const id = view.graph.id;
      const jobs = state.jobs.filter((j) => j.machine === id);
      if (jobs.length || id === 'updateJob' || id === 'zipOp') {
        view.setOptions([
          { value: AUTO, label: 'Newest job (follows)' },
          ...jobs.map((j) => ({ value: j.id, label: jobLabel(j) })),
        ]);
        const chosen =
          view.select.value === AUTO || !view.select.value
            ? jobs[0]
            : jobs.find((j) => j.id === view.select.value);
        view.mark(
          'active',
          chosen?.state ?? null,
          chosen ? `${chosen.id}: ${chosen.state}${chosen.finished ? ' (finished)' : ''}` : 'No job yet.',
        );
      } else {
        view.setOptions(state.gateways.map((g) => ({ value: g.id, label: g.id })));
        const gw = state.gateways.find((g) => g.id === view.select.value) ?? state.gateways[0];
        const value = gw ? (id === 'partition' ? gw.partition : gw.safety) : null;
        view.mark('active', value, gw ? `${gw.id}: ${value ?? 'unknown'}` : 'No gateway.');
      }
    }
    const withMachine = state.jobs.filter((j) => j.machine);
    const current = historySelect.value;
    fill(
      historySelect,
      withMachine.map((j) => h('option', { value: j.id }, jobLabel(j))),
    );
    if (withMachine.some((j) => j.id === current)) historySelect.value = current;
    load.disabled = withMachine.length === 0;
  };
  for (const view of views.values()) view.select.addEventListener('change', render);

  fill(
    root,
    [...views.values()].map((v) => v.el),
    historyPanel,
    eventsPanel,
  );
  render();

  const poll = async () => {
    try {
      const res = await fetch('/dev/inspector/state', { credentials: 'same-origin' });
      if (res.ok) {
        state = (await res.json()) as InspectorState;
        render();
      }
    } catch {
      /* transient: next poll */
    }
    setTimeout(poll, POLL_MS);
  };
  setTimeout(poll, POLL_MS);
  root.dataset.ready = 'true';
}

start();
