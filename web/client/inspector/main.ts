import { createTRPCUntypedClient, createWSClient, wsLink } from '@trpc/client';
import { byId, dataJson, fill, h, listen } from '../dom.js';
import type {
  InspectorJob,
  InspectorState,
  InspectorTransition,
  InspectorUpdate,
  MachineGraph,
} from './graph-types.js';
import { layoutMachine, stateIds, type GraphLayout, type TextMeasure, type TextStyle } from './layout.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
/** The page keeps as many events as the server's first message holds. */
const MAX_EVENTS = 100;

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

const TEXT_CLASS: Record<TextStyle, string> = {
  state: 'label',
  compound: 'label compound-label',
  internal: 'internal-label',
  edge: 'edge-label',
};

/** Measures text in the page's own font and styles, so the layout leaves exactly the room needed. */
function pageMeasure(): { measure: TextMeasure; done: () => void } {
  const svg = s('svg', { class: 'chart measure', 'aria-hidden': 'true' });
  document.body.append(svg);
  const cache = new Map<string, { width: number; height: number }>();
  const measure: TextMeasure = (text, style) => {
    const key = `${style}\u0000${text}`;
    const hit = cache.get(key);
    if (hit) return hit;
    const el = s('text', { class: TEXT_CLASS[style], x: 0, y: 0 }, text);
    svg.append(el);
    const box = el.getBBox();
    el.remove();
    const size = { width: box.width, height: box.height };
    cache.set(key, size);
    return size;
  };
  return { measure, done: () => svg.remove() };
}

/** One statechart drawn from its definition; `mark` highlights the states of one actor. */
class MachineView {
  readonly el: HTMLElement;
  private readonly wrap: HTMLElement;
  private svg: SVGSVGElement | null = null;
  private readonly status: HTMLElement;
  readonly select: HTMLSelectElement;

  constructor(readonly graph: MachineGraph) {
    this.status = h('p', { class: 'inspector-status', 'data-testid': `status-${graph.id}`, role: 'status' });
    this.select = h('select', { id: `actor-${graph.id}` });
    // Wide charts are shrunk to the panel by default (every state and highlight in view); the
    // toggle shows them at full size, scrolling, to read the transition labels.
    this.wrap = h('div', { class: 'svg-wrap fit' }, h('p', { class: 'muted' }, 'Laying out…'));
    const zoom = h('button', { type: 'button', class: 'secondary', 'aria-pressed': 'false' }, 'Actual size');
    zoom.addEventListener('click', () => {
      const actual = this.wrap.classList.toggle('fit') === false;
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
      this.wrap,
    );
  }

  async draw(measure: TextMeasure): Promise<void> {
    const layout = await layoutMachine(this.graph, measure);
    this.svg = this.render(layout);
    fill(this.wrap, this.svg);
  }

  private render(layout: GraphLayout): SVGSVGElement {
    const { nodes, edges, width, height } = layout;
    const id = this.graph.id;
    const svg = s('svg', {
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: 'img',
      'aria-label': `Statechart ${id}`,
      class: 'chart',
    });
    svg.append(
      s(
        'defs',
        {},
        s(
          'marker',
          {
            id: `arrow-${id}`,
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
    // States (outer before inner), then edges, then their labels on top of everything.
    const states = s('g', { class: 'states' });
    for (const p of [...nodes.values()].sort((a, b) => a.depth - b.depth)) {
      const compound = p.node.children.length > 0;
      const g = s('g', {
        class: `state state-${p.node.type}${compound ? ' compound' : ''}${p.depth === 0 ? ' machine-root' : ''}`,
        'data-state-id': p.node.id,
      });
      g.append(s('title', {}, p.node.id));
      g.append(s('rect', { x: p.x, y: p.y, width: p.w, height: p.h, rx: compound ? 10 : 8 }));
      if (p.node.type === 'final') {
        g.append(
          s('rect', { x: p.x + 3, y: p.y + 3, width: p.w - 6, height: p.h - 6, rx: 6, class: 'final-inner' }),
        );
      }
      // Text lines from the top: the name, then the transitions that stay in the state.
      const lines = [p.node.key, ...p.node.internal.map((t) => `↻ ${t}`)];
      const text = s(
        'text',
        compound
          ? { x: p.x + 12, y: p.y + 8, class: 'label compound-label' }
          : { x: p.x + p.w / 2, y: p.y + 8, 'text-anchor': 'middle', class: 'label' },
      );
      lines.forEach((line, i) => {
        text.append(
          s(
            'tspan',
            {
              x: compound ? p.x + 12 : p.x + p.w / 2,
              dy: i === 0 ? '1em' : '1.35em',
              ...(i > 0 ? { class: 'internal-label' } : {}),
            },
            line,
          ),
        );
      });
      g.append(text);
      states.append(g);
    }
    for (const m of layout.markers) {
      states.append(s('circle', { cx: m.cx, cy: m.cy, r: m.r - 1, class: 'initial-marker' }));
    }
    svg.append(states);

    const paths = s('g', { class: 'edges' });
    const labels = s('g', { class: 'edge-labels' });
    for (const { edge, points, labels: placed, initial } of edges) {
      if (points.length < 2) continue;
      const g = s('g', { class: initial ? 'edge initial' : 'edge', 'data-edge': edge.id });
      if (!initial) g.append(s('title', {}, `${edge.source} → ${edge.target}: ${edge.labels.join(', ')}`));
      g.append(
        s('path', {
          d: points.map((pt, i) => `${i === 0 ? 'M' : 'L'} ${pt.x} ${pt.y}`).join(' '),
          'marker-end': `url(#arrow-${id})`,
        }),
      );
      paths.append(g);
      const lg = s('g', { class: 'edge-label-group', 'data-edge': edge.id });
      for (const l of placed) {
        lg.append(s('rect', { x: l.x, y: l.y, width: l.w, height: l.h, rx: 3, class: 'edge-label-bg' }));
        lg.append(
          s(
            'text',
            { x: l.x + l.w / 2, y: l.y + l.h / 2, 'text-anchor': 'middle', class: 'edge-label' },
            l.text,
          ),
        );
      }
      labels.append(lg);
    }
    svg.append(paths, labels);
    return svg;
  }

  /** Highlights the given state value (live: `active`; history step: `step`). */
  mark(kind: 'active' | 'step', value: string | null, label: string): void {
    if (kind === 'active') fill(this.status, label);
    if (!this.svg) return;
    const ids = stateIds(this.graph, value);
    for (const g of this.svg.querySelectorAll<SVGGElement>('g.state')) {
      const i = ids.indexOf(g.dataset.stateId ?? '');
      g.classList.toggle(kind, i === 0);
      g.classList.toggle(`${kind}-parent`, i > 0);
    }
  }

  markEdge(from: string | null, to: string | null): void {
    if (!this.svg) return;
    const a = stateIds(this.graph, from)[0];
    const b = stateIds(this.graph, to)[0];
    for (const g of this.svg.querySelectorAll<SVGGElement>('[data-edge]')) {
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

/**
 * Follows the `inspector.live` subscription over the tRPC WebSocket (authenticated by the session
 * cookie of the upgrade request). tRPC's client reconnects by itself and subscribes again, and
 * the server then starts over with the whole state.
 */
function followLive(apply: (u: InspectorUpdate) => void, status: HTMLElement): void {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const show = (state: 'connecting' | 'live' | 'reconnecting' | 'ended', text: string) => {
    status.dataset.live = state;
    fill(status, text);
  };
  show('connecting', 'Connecting to the live stream…');
  const wsClient = createWSClient({
    url: `${scheme}://${location.host}/api/trpc`,
    onClose: () => {
      if (status.dataset.live !== 'ended') show('reconnecting', 'Live stream interrupted: reconnecting…');
    },
  });
  const client = createTRPCUntypedClient({ links: [wsLink({ client: wsClient })] });
  client.subscription('inspector.live', undefined, {
    onStarted: () => show('live', 'Live: states and events arrive as they happen.'),
    onData: (data) => apply(data as InspectorUpdate),
    onError: (err) => {
      show('ended', `Live stream ended: ${err.message}. Reload the page to follow again.`);
      // The stream is over either way; a close that fails has nothing left to tell.
      void wsClient.close();
    },
  });
}

async function start(): Promise<void> {
  const root = byId('inspector');
  const graphs = dataJson<MachineGraph[]>(root, 'machines');
  const state = dataJson<InspectorState>(root, 'state');
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

  const renderActors = () => {
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
  for (const view of views.values()) view.select.addEventListener('change', renderActors);

  const liveStatus = h('p', { class: 'inspector-live', role: 'status', 'data-testid': 'live-status' });
  fill(
    root,
    liveStatus,
    [...views.values()].map((v) => v.el),
    historyPanel,
    eventsPanel,
  );
  renderEvents();
  renderActors();

  const apply = (u: InspectorUpdate) => {
    if (u.type === 'state') {
      Object.assign(state, u.state);
      renderEvents();
      renderActors();
    } else if (u.type === 'actors') {
      state.now = u.now;
      state.gateways = u.gateways;
      state.jobs = u.jobs;
      renderActors();
    } else {
      state.events = [...u.events, ...state.events].slice(0, MAX_EVENTS);
      renderEvents();
    }
  };
  followLive(apply, liveStatus);

  const { measure, done } = pageMeasure();
  try {
    for (const view of views.values()) await view.draw(measure);
  } finally {
    done();
  }
  renderActors();
  root.dataset.ready = 'true';
}

start().catch((err: unknown) => {
  console.error('inspector', err);
  fill(byId('inspector'), h('p', { class: 'banner banner-error' }, `The inspector failed: ${String(err)}`));
});
