import type { AvailableUpdate, FeedView } from '../api-types.js';
import { type Child, fill, h, listen } from '../dom.js';
import type { App } from '../store.js';
import { badge, Feedback, formatTime, roleAllows, roleGate, runAction, section } from '../ui.js';

const SEVERITY_KIND: Record<string, string> = { critical: 'bad', high: 'warn', medium: 'info', low: 'muted' };

/** What each `signature` value tells the operator (see signatureStatus on the server). */
const SIGNATURE: Record<string, { kind: string; note: string | null }> = {
  verified: { kind: 'ok', note: null },
  // The refused Install button already says why.
  untrusted: { kind: 'bad', note: null },
  unknown: { kind: 'warn', note: 'The feed names no signing key: the signature is checked on download' },
};

function updateRow(app: App, u: AvailableUpdate): HTMLElement {
  const install = h(
    'button',
    { type: 'button', class: 'primary', 'data-update-id': u.id, 'aria-label': `Install ${u.version} now` },
    'Install Now',
  );
  const feedback = new Feedback();
  feedback.describe(install);
  roleGate(install, app.session.role, 'operator');
  const signature = SIGNATURE[u.signature] ?? { kind: 'bad', note: null };
  // Only a key known to be untrusted is refused here; an unknown signer is left to the download's check.
  const refusal = !u.compatible
    ? 'Not compatible with this gateway'
    : u.signature === 'untrusted'
      ? 'Signed by a key this gateway does not trust: will not be installed'
      : null;
  if (refusal) {
    install.disabled = true;
    feedback.failText(refusal);
  }
  listen(install, 'click', () =>
    runAction(install, feedback, async () => {
      const res = await app.api.post<{ job_id: string; target_partition: string }>('/api/v1/ota/download', {
        update_id: u.id,
        version: u.version,
      });
      app.followJob(res.data.job_id);
      return `Downloading to slot ${res.data.target_partition} (job ${res.data.job_id}). Follow it in section 7.`;
    }),
  );
  const cell = (label: string, ...content: Child[]) => h('td', { 'data-label': label }, ...content);
  return h(
    'tr',
    { 'data-testid': `update-${u.id}` },
    h('th', { scope: 'row', 'data-label': 'Version' }, u.version),
    cell('Type', u.type),
    cell('Severity', badge(u.severity, SEVERITY_KIND[u.severity.toLowerCase()] ?? 'muted')),
    cell('Size', u.size),
    cell('Released', u.released),
    cell(
      'Description',
      h('p', { class: 'update-description' }, u.description),
      u.changelog.length
        ? h(
            'details',
            {},
            h('summary', {}, `Changelog (${u.changelog.length})`),
            h(
              'ul',
              {},
              u.changelog.map((c) => h('li', {}, c)),
            ),
          )
        : null,
    ),
    cell(
      'Signature',
      badge(u.signature, signature.kind),
      signature.note ? h('p', { class: 'hint' }, signature.note) : null,
    ),
    cell('Action', install, feedback.el),
  );
}

/**
 * Where "Check for Updates" goes. The local demo feed says so plainly (its releases are made on
 * this machine), with the simulator control that makes the next boot of the inactive slot fail,
 * which is how a rollback is shown with it.
 */
function feedPanel(app: App): HTMLElement {
  const { api, store, session } = app;
  const panel = h('div', { class: 'feed-source', 'data-testid': 'feed-source' });
  const failBoot = h('button', { type: 'button', id: 'demo-fail-boot-button', class: 'secondary' });
  const failFeedback = new Feedback();
  failFeedback.describe(failBoot);
  roleGate(failBoot, session.role, 'admin');
  listen(failBoot, 'click', () =>
    runAction(failBoot, failFeedback, async () => {
      const { partitions } = store.get('system');
      const slot = partitions.inactive.id;
      // The bootloader gives a trial slot rollback_retries boots; failing all of them brings the old slot back.
      const count = partitions.rollback_retries;
      await api.post('/api/v1/dev/simulator/boot-failures', { slot, count });
      return `The next ${count} boot${count === 1 ? '' : 's'} of slot ${slot} will fail: install a release to watch the rollback to slot ${partitions.active.id}.`;
    }),
  );
  const renderFailLabel = () => {
    fill(failBoot, `Demo: fail the next boot of slot ${store.get('system').partitions.inactive.id}`);
  };
  const render = (feed: FeedView) => {
    renderFailLabel();
    if (feed.server === null) {
      fill(
        panel,
        h(
          'p',
          { class: 'note' },
          'No update feed is configured for this gateway. Set GANTRY_FEED_URL and GANTRY_FEED_ROOT and restart, or apply a configuration ZIP with a feed.',
        ),
      );
      return;
    }
    if (!feed.demo) {
      fill(panel, h('p', { class: 'note' }, 'Feed: ', h('strong', {}, feed.server)));
      return;
    }
    fill(
      panel,
      h(
        'p',
        { class: 'note' },
        badge('Demo', 'warn'),
        ' Feed: ',
        h('strong', {}, feed.server),
        ': releases generated and signed on this machine to try updates on the simulated gateway. It is not used once a real feed is configured.',
      ),
      h('div', { class: 'toolbar-item' }, failBoot, failFeedback.el),
    );
  };
  render(store.get('feed'));
  store.on('feed', render);
  store.on('system', renderFailLabel);
  return panel;
}

export function updatesSection(app: App): HTMLElement {
  const { api, store, session } = app;
  const body = h('tbody', {});
  const summary = h('p', { class: 'summary', 'data-testid': 'updates-summary' });
  const table = h(
    'table',
    { class: 'updates-table responsive' },
    h('caption', { class: 'visually-hidden' }, 'Available updates'),
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['Version', 'Type', 'Severity', 'Size', 'Released', 'Description', 'Signature', 'Action'].map((t) =>
          h('th', { scope: 'col' }, t),
        ),
      ),
    ),
    body,
  );
  const empty = h(
    'p',
    { class: 'empty', 'data-testid': 'updates-empty' },
    'No updates available. Use “Check for Updates”.',
  );

  const render = (updates: AvailableUpdate[]) => {
    fill(
      body,
      updates.map((u) => updateRow(app, u)),
    );
    table.hidden = updates.length === 0;
    empty.hidden = updates.length > 0;
    const m = store.get('monitor');
    fill(
      summary,
      `${updates.length} update${updates.length === 1 ? '' : 's'} available · last check ${
        m.last_update_check ? formatTime(m.last_update_check) : 'never'
      }`,
    );
  };
  render(store.get('updates'));
  store.on('updates', render);
  store.on('monitor', () => render(store.get('updates')));

  const check = h('button', { type: 'button', id: 'check-updates-button' }, 'Check for Updates');
  const checkFeedback = new Feedback();
  checkFeedback.describe(check);
  roleGate(check, session.role, 'operator');
  listen(check, 'click', () =>
    runAction(
      check,
      checkFeedback,
      async () => {
        const res = await api.post<{ status: string; server: string; total_available?: number }>(
          '/api/v1/ota/check-updates',
          { force: true, background: false },
        );
        await Promise.all([app.refresh('updates'), app.refresh('monitor')]);
        const n = res.data.total_available ?? store.get('updates').length;
        return `Checked ${res.data.server}: ${n} update${n === 1 ? '' : 's'} available.`;
      },
      'Checking…',
    ),
  );

  const auto = h('button', { type: 'button', id: 'auto-update-button', class: 'toggle' });
  const autoFeedback = new Feedback();
  autoFeedback.describe(auto);
  const renderAuto = () => {
    const on = store.get('settings').auto_update.enabled;
    auto.setAttribute('aria-pressed', String(on));
    auto.textContent = `Auto-Update: ${on ? 'On' : 'Off'}`;
  };
  renderAuto();
  store.on('settings', renderAuto);
  roleGate(auto, session.role, 'operator');
  listen(auto, 'click', () =>
    runAction(auto, autoFeedback, async () => {
      const enabled = !store.get('settings').auto_update.enabled;
      const res = await api.post<{ auto_update: boolean }>('/api/v1/ota/auto-update', { enabled });
      const settings = store.get('settings');
      store.set('settings', {
        ...settings,
        auto_update: { ...settings.auto_update, enabled: res.data.auto_update },
      });
      return res.message;
    }),
  );

  return section(
    'section-updates',
    2,
    'Available Updates',
    h(
      'div',
      { class: 'toolbar' },
      h('div', { class: 'toolbar-item' }, check, checkFeedback.el),
      h('div', { class: 'toolbar-item' }, auto, autoFeedback.el),
    ),
    feedPanel(app),
    summary,
    h('div', { class: 'table-wrap' }, table),
    empty,
    roleAllows(session.role, 'operator')
      ? null
      : h(
          'p',
          { class: 'note' },
          `Your role (${session.role}) can view updates; installing needs the operator role.`,
        ),
  );
}
