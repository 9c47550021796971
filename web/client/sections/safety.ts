import type { ConstraintName, ConstraintView, SafetyStatus } from '../api-types.js';
import { fill, h, listen } from '../dom.js';
import { CONSTRAINT_LABELS, constraintLabel } from '../errors.js';
import type { App } from '../store.js';
import { badge, Feedback, field, roleAllows, roleNote, runAction, section } from '../ui.js';

const NAMES = Object.keys(CONSTRAINT_LABELS) as ConstraintName[];

/** "14:05" for a remaining time in ms (never negative). */
export function countdown(ms: number): string {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const m = Math.floor(total / 60);
  const s = total % 60;
  return `${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}`;
}

function reading(name: ConstraintName, c: ConstraintView, s: SafetyStatus): string {
  switch (name) {
    case 'ups_battery':
      return c.level === null || c.level === undefined
        ? 'no reading'
        : `${c.level}% (minimum ${s.thresholds.ups_min_battery_percent}%)`;
    case 'system_load':
      return c.load === null || c.load === undefined
        ? 'no reading'
        : `${c.load} per CPU (maximum ${s.thresholds.max_system_load})`;
    case 'crane_motion':
      return c.estimated_clear ? `expected to stop in ${c.estimated_clear}` : '—';
    default:
      return '—';
  }
}

export function safetySection(app: App): HTMLElement {
  const { api, store, session } = app;
  const admin = roleAllows(session.role, 'admin');
  const summary = h('p', { class: 'banner', 'data-testid': 'safety-summary', role: 'status' });
  const rows = h('tbody', {});
  const table = h(
    'table',
    { class: 'safety-table responsive' },
    h('caption', { class: 'visually-hidden' }, 'Safety constraints'),
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['Constraint', 'Enforced', 'Status', 'Reading', 'Blocks updates'].map((t) =>
          h('th', { scope: 'col' }, t),
        ),
      ),
    ),
    rows,
  );

  const renderTable = (s: SafetyStatus) => {
    fill(
      rows,
      NAMES.map((name) => {
        const c = s.constraints[name];
        return h(
          'tr',
          { 'data-constraint': name },
          h('th', { scope: 'row', 'data-label': 'Constraint' }, CONSTRAINT_LABELS[name]),
          h('td', { 'data-label': 'Enforced' }, c.enabled ? 'yes' : 'no (turned off in settings)'),
          h(
            'td',
            { 'data-label': 'Status', 'data-testid': `safety-status-${name}` },
            c.status.replace(/_/g, ' '),
          ),
          h('td', { 'data-label': 'Reading' }, reading(name, c, s)),
          h(
            'td',
            { 'data-label': 'Blocks updates', 'data-testid': `safety-blocking-${name}` },
            c.blocking
              ? badge('blocking', 'bad')
              : c.overridden
                ? badge('overridden', 'warn')
                : badge('clear', 'ok'),
          ),
        );
      }),
    );
    const blocking = NAMES.filter((n) => s.constraints[n].blocking).map(constraintLabel);
    summary.className = `banner ${s.update_allowed ? 'banner-ok' : 'banner-error'}`;
    fill(
      summary,
      s.update_allowed
        ? s.force_override
          ? 'Updates allowed (safety override active).'
          : 'Updates allowed: no safety constraint blocks.'
        : `Updates blocked by: ${blocking.join(', ')}.`,
    );
  };

  // ---- override: active state with its countdown, or the form to give one ----
  const active = h('div', { class: 'override-active', 'data-testid': 'override-active' });
  const countdownEl = h('strong', { role: 'timer', 'aria-live': 'off', 'data-testid': 'override-countdown' });
  const endButton = h('button', { type: 'button', id: 'override-end', class: 'secondary' }, 'End Override');
  const endFeedback = new Feedback();
  endFeedback.describe(endButton);
  endButton.disabled = !admin;
  listen(endButton, 'click', () =>
    runAction(endButton, endFeedback, async () => {
      await api.post('/api/v1/ota/safety/override', { enable: false });
      await app.refresh('safety');
      return 'Override ended: every constraint is enforced again.';
    }),
  );

  const checks = NAMES.map((name) =>
    h('input', { type: 'checkbox', id: `override-${name}`, value: name, 'data-constraint': name }),
  );
  const pin = h('input', {
    type: 'password',
    id: 'override-pin',
    inputmode: 'numeric',
    autocomplete: 'off',
    maxlength: 8,
    class: 'short',
  });
  const reason = h('input', { type: 'text', id: 'override-reason', maxlength: 500 });
  const enableButton = h(
    'button',
    { type: 'submit', id: 'override-enable', class: 'danger' },
    'Enable Override',
  );
  const enableFeedback = new Feedback();
  enableFeedback.describe(enableButton);
  const form = h(
    'form',
    { id: 'override-form', class: 'override-form', novalidate: true },
    h(
      'fieldset',
      { class: 'subpanel' },
      h('legend', {}, 'Force override'),
      h(
        'p',
        { class: 'hint' },
        'Lets updates proceed despite the chosen constraints, for 15 minutes or until the operation ends.',
      ),
      h(
        'fieldset',
        { class: 'checks' },
        h('legend', {}, 'Constraints to override'),
        NAMES.map((name, i) =>
          h(
            'div',
            { class: 'check' },
            checks[i]!,
            h('label', { for: `override-${name}` }, CONSTRAINT_LABELS[name]),
          ),
        ),
      ),
      field('Safety PIN', pin, '4 to 8 digits'),
      field('Reason', reason),
      h('div', { class: 'actions' }, enableButton),
      enableFeedback.el,
    ),
  );
  if (!admin) for (const el of [...checks, pin, reason, enableButton]) el.disabled = true;
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!admin) return;
    const constraints = checks.filter((c) => c.checked).map((c) => c.value);
    enableFeedback.reset();
    if (constraints.length === 0)
      return enableFeedback.failText('Choose at least one constraint to override.');
    if (!/^\d{4,8}$/.test(pin.value)) {
      pin.focus();
      return enableFeedback.failText('Enter the safety PIN (4 to 8 digits).');
    }
    if (!reason.value.trim()) {
      reason.focus();
      return enableFeedback.failText('Give a reason for the override.');
    }
    void runAction(enableButton, enableFeedback, async () => {
      try {
        const res = await api.post<{ expires_at: string | null; overridden_constraints: string[] }>(
          '/api/v1/ota/safety/override',
          { enable: true, pin: pin.value, reason: reason.value.trim(), constraints },
        );
        await app.refresh('safety');
        return `Override enabled for ${res.data.overridden_constraints.map(constraintLabel).join(', ')}.`;
      } finally {
        pin.value = '';
      }
    });
  });

  let expiresAt: number | null = null;
  const tick = () => {
    if (expiresAt === null) return;
    const left = expiresAt - app.serverNow();
    fill(countdownEl, countdown(left));
    if (left <= 0) {
      expiresAt = null;
      app.refreshSoon('safety');
    }
  };
  setInterval(tick, 1000);

  const renderOverride = (s: SafetyStatus) => {
    const o = s.override;
    active.hidden = !o;
    if (!o) {
      expiresAt = null;
      fill(active);
      return;
    }
    expiresAt = Date.parse(o.expires_at);
    fill(
      active,
      h(
        'p',
        { class: 'banner banner-warn' },
        `Override active for ${o.constraints.map(constraintLabel).join(', ')} (by ${o.enabled_by}: “${o.reason}”). Expires in `,
        countdownEl,
        ` at ${new Date(o.expires_at).toLocaleTimeString()}.`,
      ),
      h('div', { class: 'actions' }, endButton),
      endFeedback.el,
    );
    tick();
  };

  const render = (s: SafetyStatus) => {
    renderTable(s);
    renderOverride(s);
  };
  render(store.get('safety'));
  store.on('safety', render);

  // A constraint changed: show it at once, then re-read the whole status (override, summary).
  app.live.on('safety_update', (m) => {
    const s = store.get('safety');
    const name = m.constraint as ConstraintName;
    if (s.constraints[name]) {
      const c = {
        ...s.constraints[name],
        status: m.status,
        blocking: m.blocking,
        estimated_clear: m.estimated_clear,
      };
      store.set('safety', { ...s, constraints: { ...s.constraints, [name]: c } });
    }
    app.refreshSoon('safety');
  });

  return section(
    'section-safety',
    6,
    'Safety Constraints',
    summary,
    h('div', { class: 'table-wrap' }, table),
    active,
    form,
    roleNote(session.role, 'admin'),
  );
}
