import type { Partition, SystemStatus } from '../api-types.js';
import { fill, h, listen } from '../dom.js';
import type { App } from '../store.js';
import { badge, checkbox, Feedback, field, formatTime, roleGate, runAction, section } from '../ui.js';

const STATUS_KIND: Record<string, string> = {
  healthy: 'ok',
  trial: 'warn',
  ready: 'info',
  writing: 'info',
  invalid: 'bad',
  empty: 'muted',
};

function yesNo(v: boolean): string {
  return v ? 'yes' : 'no';
}

function slotCard(p: Partition, which: 'active' | 'inactive'): HTMLElement {
  const role = p.booted ? 'booted (running)' : 'standby';
  return h(
    'article',
    { class: `slot slot-${which}`, 'data-testid': `slot-${which}`, 'data-slot': p.id },
    h(
      'h4',
      {},
      `Slot ${p.id}`,
      ' ',
      h('span', { class: 'slot-role' }, which === 'active' ? 'Active' : 'Inactive'),
    ),
    h(
      'dl',
      { class: 'kv' },
      h('dt', {}, 'Version'),
      h('dd', {}, p.version ?? '—'),
      h('dt', {}, 'Status'),
      h('dd', {}, badge(p.status, STATUS_KIND[p.status] ?? 'muted')),
      h('dt', {}, 'State'),
      h('dd', {}, role),
      h('dt', {}, 'Next boot'),
      h('dd', {}, yesNo(p.next_boot)),
      h('dt', {}, 'Used / size'),
      h('dd', {}, `${p.used} / ${p.size}`),
    ),
  );
}

export function systemSection(app: App): HTMLElement {
  const { api, store, session } = app;
  const cards = h('dl', { class: 'cards', 'data-testid': 'system-cards' });
  const slots = h('div', { class: 'slots' });
  const rollbackInfo = h('p', { class: 'note' });
  const components = h('ul', { class: 'note', 'data-testid': 'gw-components' });

  const render = (s: SystemStatus) => {
    const g = s.gateway;
    const card = (label: string, value: string, testid: string) =>
      h('div', { class: 'card' }, h('dt', {}, label), h('dd', { 'data-testid': testid }, value));
    fill(
      cards,
      card('Model', g.model, 'gw-model'),
      card('OS version', g.os_version, 'gw-os-version'),
      card('Kernel', g.kernel, 'gw-kernel'),
      card('Uptime', g.uptime, 'gw-uptime'),
      card('Bootloader', g.bootloader, 'gw-bootloader'),
      card('Last OTA', g.last_ota ? formatTime(g.last_ota) : 'never', 'gw-last-ota'),
    );
    fill(slots, slotCard(s.partitions.active, 'active'), slotCard(s.partitions.inactive, 'inactive'));
    fill(
      rollbackInfo,
      `Automatic rollback: ${s.partitions.auto_rollback ? 'on' : 'off'}`,
      s.partitions.auto_rollback ? ` (after ${s.partitions.rollback_retries} failed boots)` : '',
    );
    // Only a gateway that installed a multi-component bundle has more than its rootfs to show.
    const list = s.components ?? [];
    fill(
      components,
      ...(list.length > 1
        ? list.map((c) =>
            h(
              'li',
              { 'data-component': c.name },
              `${c.name} ${c.version ?? 'not installed'} (${c.handler} ${c.target}${c.slot ? `, slot ${c.slot}` : ''})` +
                (c.pending_version ? `, installing ${c.pending_version}` : ''),
            ),
          )
        : []),
    );
  };
  render(store.get('system'));
  store.on('system', render);

  // Snapshot: name and description, then the job is followed in the monitor.
  const stamp = new Date(app.serverNow()).toISOString().slice(0, 16).replace(/[-:T]/g, '');
  const snapName = h('input', {
    type: 'text',
    id: 'snapshot-name',
    value: `snapshot-${stamp}`,
    required: true,
    maxlength: 64,
    pattern: '[A-Za-z0-9._\\-]+',
  });
  const snapDesc = h('input', { type: 'text', id: 'snapshot-description', maxlength: 500 });
  const snapButton = h('button', { type: 'button', id: 'snapshot-button' }, 'Snapshot');
  const snapFeedback = new Feedback();
  snapFeedback.describe(snapButton);
  roleGate(snapButton, session.role, 'operator');
  listen(snapButton, 'click', () =>
    runAction(snapButton, snapFeedback, async () => {
      const name = snapName.value.trim();
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) {
        throw new Error('the snapshot name may use letters, digits, ".", "_" and "-" only');
      }
      const res = await api.post<{ snapshot_id: string; estimated_duration: string }>(
        '/api/v1/ota/snapshot',
        {
          name,
          description: snapDesc.value.trim(),
        },
      );
      app.followJob(res.data.snapshot_id);
      return `Snapshot ${res.data.snapshot_id} started (about ${res.data.estimated_duration}). Progress is shown in section 7.`;
    }),
  );

  // Debug bundle: built in the background; the link appears when its log line says it is ready.
  const include = {
    logs: checkbox('Logs', true, { id: 'debug-include-logs' }),
    configs: checkbox('Configuration', true, { id: 'debug-include-configs' }),
    metrics: checkbox('Metrics', true, { id: 'debug-include-metrics' }),
  };
  const checked = (el: HTMLElement) => (el.querySelector('input') as HTMLInputElement).checked;
  const debugButton = h('button', { type: 'button', id: 'debug-bundle-button' }, 'Debug Bundle');
  const debugFeedback = new Feedback();
  debugFeedback.describe(debugButton);
  roleGate(debugButton, session.role, 'operator');
  const debugLink = h('p', { class: 'download', 'data-testid': 'debug-download' });
  let pendingBundle: { id: string; url: string } | null = null;
  app.live.on('log_entry', (m) => {
    if (!pendingBundle || m.source !== 'debug' || !m.message.includes(pendingBundle.id)) return;
    if (m.message.includes(' ready')) {
      const { id, url } = pendingBundle;
      pendingBundle = null;
      debugFeedback.ok(`Debug bundle ${id} is ready.`);
      fill(debugLink, downloadLink(app, id, url));
    } else if (m.level === 'error' || m.level === 'warn') {
      pendingBundle = null;
      debugFeedback.failText(m.message);
    }
  });
  listen(debugButton, 'click', () =>
    runAction(debugButton, debugFeedback, async () => {
      fill(debugLink);
      const res = await api.post<{ bundle_id: string; estimated_size: string; download_url: string }>(
        '/api/v1/ota/debug-bundle',
        {
          include_logs: checked(include.logs),
          include_configs: checked(include.configs),
          include_metrics: checked(include.metrics),
        },
      );
      pendingBundle = { id: res.data.bundle_id, url: res.data.download_url };
      // Without the live channel the "ready" line never comes: poll the log instead.
      if (app.live.status !== 'connected') void pollBundle(app, res.data.bundle_id, debugFeedback, debugLink);
      return `Creating debug bundle ${res.data.bundle_id} (about ${res.data.estimated_size})…`;
    }),
  );

  return section(
    'section-system',
    1,
    'System Information & Partition Status',
    cards,
    h('h3', {}, 'Partitions (A/B)'),
    slots,
    rollbackInfo,
    components,
    h(
      'div',
      { class: 'subpanels' },
      h(
        'fieldset',
        { class: 'subpanel' },
        h('legend', {}, 'System snapshot'),
        field('Snapshot name', snapName, 'Letters, digits, ".", "_" and "-".'),
        field('Description (optional)', snapDesc),
        h('div', { class: 'actions' }, snapButton),
        snapFeedback.el,
      ),
      h(
        'fieldset',
        { class: 'subpanel' },
        h('legend', {}, 'Debug bundle'),
        h('div', { class: 'checks' }, include.logs, include.configs, include.metrics),
        h('div', { class: 'actions' }, debugButton),
        debugFeedback.el,
        debugLink,
      ),
    ),
  );
}

async function pollBundle(app: App, id: string, feedback: Feedback, link: HTMLElement): Promise<void> {
  for (let i = 0; i < 120 && app.live.status !== 'connected'; i++) {
    await new Promise((r) => setTimeout(r, 2000));
    const logs = await app.api
      .get<{ logs: Array<{ message: string; source: string }> }>('/api/v1/ota/logs', { limit: 100 })
      .catch(() => null);
    const line = logs?.data.logs.find((l) => l.source === 'debug' && l.message.includes(`${id} ready`));
    if (line) {
      feedback.ok(`Debug bundle ${id} is ready.`);
      fill(link, downloadLink(app, id, `/api/v1/ota/debug/download/${id}.tar.gz`));
      return;
    }
  }
}

/**
 * A link to the bundle's download_url. The route needs X-Gateway-ID, which a plain link cannot
 * send, so a click fetches it with the header and hands the browser the file.
 */
function downloadLink(app: App, id: string, url: string): HTMLElement {
  const filename = `${id}.tar.gz`;
  const error = h('span', { class: 'error', role: 'alert' });
  const link = h('a', { href: url, download: filename }, `Download ${filename}`);
  link.addEventListener('click', (ev) => {
    ev.preventDefault();
    fill(error);
    fetch(url, { credentials: 'same-origin', headers: { 'X-Gateway-ID': app.session.gateway } })
      .then(async (res) => {
        if (!res.ok) throw new Error(`the download failed (HTTP ${res.status})`);
        const blobUrl = URL.createObjectURL(await res.blob());
        const a = h('a', { href: blobUrl, download: filename });
        document.body.appendChild(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(blobUrl), 60_000);
      })
      .catch((err: Error) => fill(error, ` ${err.message}`));
  });
  return h('span', {}, link, error);
}
