import type { JobProgress, LogEntry, SystemStatusMessage } from '../api-types.js';
import { fill, h, listen } from '../dom.js';
import { constraintLabel } from '../errors.js';
import type { App, LiveState } from '../store.js';
import { badge, Feedback, formatTime, roleGate, runAction, section } from '../ui.js';

const CANCELLABLE = ['pending', 'downloading', 'verifying', 'deploying', 'restoring', 'downloaded'];
const LOG_LIMIT = 200;
const LEVEL_KIND: Record<string, string> = { error: 'bad', warn: 'warn', info: 'info', debug: 'muted' };

const LIVE_TEXT: Record<LiveState, string> = {
  connecting: 'Live updates: connecting…',
  connected: 'Live updates: connected',
  reconnecting: 'Live updates: reconnecting…',
  closed: 'Live updates: stopped (reload the page)',
};

function words(s: string): string {
  return s.replace(/_/g, ' ');
}

/** Job statuses that need more than their name to be understood, with their badge kind. */
const STATUS_LABEL: Record<string, { text: string; kind: string }> = {
  installed: { text: 'Installed – reboot to activate', kind: 'warn' },
  activating: { text: 'Activating – health check', kind: 'info' },
  complete: { text: 'complete', kind: 'ok' },
  error: { text: 'error', kind: 'bad' },
};

/** What a job waiting on a boot is waiting for, in plain words. */
function waitingNote(status: string): string | null {
  if (status === 'installed') {
    return 'The new image is installed and boots at the next reboot of the gateway; the job completes once it passes its health check there.';
  }
  if (status === 'activating')
    return 'The gateway booted the new image; waiting for its health check to commit it.';
  return null;
}

export function monitorSection(app: App): HTMLElement {
  const { api, store, session } = app;

  const live = h('p', { class: 'live-indicator', 'data-testid': 'live-indicator', role: 'status' });
  const renderLive = (s: LiveState) => {
    live.dataset.state = s;
    fill(live, LIVE_TEXT[s]);
  };
  renderLive(store.get('live'));
  store.on('live', renderLive);

  // ---- the followed job ----
  const jobTitle = h('h3', { 'data-testid': 'job-title' });
  const bar = h('progress', {
    id: 'monitor-progress',
    max: 100,
    value: 0,
    'aria-label': 'Operation progress',
  });
  const percent = h('span', { id: 'monitor-progress-label', 'data-testid': 'progress-percent' });
  const details = h('dl', { class: 'kv monitor-kv' });
  const jobNote = h('p', { class: 'note', 'data-testid': 'job-note' });
  const cancel = h('button', { type: 'button', id: 'cancel-button', class: 'secondary' }, 'Cancel');
  const cancelFeedback = new Feedback();
  cancelFeedback.describe(cancel);
  const rebootAfter = h('input', { type: 'checkbox', id: 'install-reboot-after', checked: true });
  const createSnapshot = h('input', { type: 'checkbox', id: 'install-create-snapshot' });
  const install = h('button', { type: 'button', id: 'install-button', class: 'primary' }, 'Install');
  const installFeedback = new Feedback();
  installFeedback.describe(install);
  const installBox = h(
    'div',
    { class: 'install-box', hidden: true },
    h(
      'div',
      { class: 'check' },
      rebootAfter,
      h('label', { for: 'install-reboot-after' }, 'Reboot into the new image when installed'),
    ),
    h(
      'div',
      { class: 'check' },
      createSnapshot,
      h('label', { for: 'install-create-snapshot' }, 'Take a snapshot first'),
    ),
    h('div', { class: 'actions' }, install),
    installFeedback.el,
  );
  const jobBox = h(
    'div',
    { class: 'job', 'data-testid': 'job' },
    jobTitle,
    h('div', { class: 'progress-row' }, bar, percent),
    details,
    jobNote,
    h('div', { class: 'actions' }, cancel),
    cancelFeedback.el,
    installBox,
  );
  const noJob = h('p', { class: 'empty', 'data-testid': 'no-job' }, 'No operation running.');

  const DELIVERY_LABEL = { hop: 'hop delta', dynamic: 'dynamic delta', full: 'full bundle' } as const;
  const renderJob = (job: JobProgress | null) => {
    jobBox.hidden = !job;
    noJob.hidden = !!job;
    if (!job) return;
    const p = job.progress;
    const label = STATUS_LABEL[job.status] ?? { text: words(job.status), kind: 'info' };
    fill(jobTitle, `${job.job_id} `, badge(label.text, label.kind));
    jobBox.dataset.status = job.status;
    bar.value = p.percentage;
    bar.setAttribute('aria-valuetext', `${p.percentage}%`);
    fill(percent, `${p.percentage}%`);
    fill(
      details,
      h('dt', {}, 'Operation'),
      h('dd', { 'data-testid': 'job-operation' }, words(p.current_operation)),
      h('dt', {}, 'Image'),
      h('dd', {}, `${job.update.version} → slot ${job.target_partition}`),
      h('dt', {}, 'Speed'),
      h('dd', { 'data-testid': 'job-speed' }, p.speed),
      h('dt', {}, 'ETA'),
      h('dd', { 'data-testid': 'job-eta' }, p.eta),
      h('dt', {}, 'Transferred'),
      h('dd', {}, p.downloaded && p.total ? `${p.downloaded} of ${p.total}` : '—'),
      h('dt', {}, 'Delivery'),
      h(
        'dd',
        { 'data-testid': 'job-delivery' },
        job.delivery
          ? `${DELIVERY_LABEL[job.delivery.path]}: ${job.delivery.wire} on the wire (planned ${job.delivery.planned})`
          : '—',
      ),
      h('dt', {}, 'Elapsed'),
      h('dd', {}, job.elapsed_time || '—'),
    );
    fill(
      jobNote,
      job.error ? h('span', { class: 'error' }, `${job.error.code}: ${job.error.message}`) : null,
      job.blocked_by.length ? `Waiting for safety: ${job.blocked_by.map(constraintLabel).join(', ')}.` : null,
      waitingNote(job.status),
    );
    cancel.hidden = !CANCELLABLE.includes(job.status);
    roleGate(cancel, session.role, 'operator');
    installBox.hidden = job.status !== 'downloaded';
    roleGate(install, session.role, 'operator');
  };
  renderJob(store.get('job'));
  store.on('job', renderJob);

  listen(cancel, 'click', () =>
    runAction(cancel, cancelFeedback, async () => {
      const job = store.get('job');
      if (!job) throw new Error('no operation to cancel');
      const res = await api.post<{ progress_at_cancel: number }>('/api/v1/ota/cancel', {
        job_id: job.job_id,
        reason: 'Cancelled from the OTA page',
      });
      app.followJob(job.job_id);
      return `Cancelled at ${res.data.progress_at_cancel}%.`;
    }),
  );
  listen(install, 'click', () =>
    runAction(install, installFeedback, async () => {
      const job = store.get('job');
      if (!job) throw new Error('no downloaded update to install');
      const res = await api.post<{ target_partition: string; next_boot_partition: string }>(
        '/api/v1/ota/install',
        {
          job_id: job.job_id,
          strategy: store.get('settings').update_strategy,
          reboot_after: rebootAfter.checked,
          create_snapshot: createSnapshot.checked,
        },
      );
      app.followJob(job.job_id);
      return `Installing to slot ${res.data.target_partition}; next boot: slot ${res.data.next_boot_partition}.`;
    }),
  );

  // ---- system status (system_status every 5 s) ----
  const sys = h('dl', { class: 'kv monitor-kv', 'data-testid': 'system-status' });
  const renderSys = () => {
    const m = store.get('monitor');
    const s: SystemStatusMessage | null = store.get('systemStatus');
    fill(
      sys,
      h('dt', {}, 'System'),
      h('dd', {}, words(s?.status ?? m.system_status)),
      h('dt', {}, 'Current operation'),
      h('dd', {}, words(s?.current_operation ?? m.current_operation)),
      h('dt', {}, 'CPU'),
      h('dd', {}, `${(s?.resources.cpu_usage ?? m.resources.cpu_usage).toFixed(1)}%`),
      h('dt', {}, 'Memory'),
      h('dd', {}, s ? `${s.resources.memory_usage.toFixed(1)}%` : m.resources.memory_usage),
      h('dt', {}, 'Next update check'),
      h('dd', {}, m.next_check ? formatTime(m.next_check) : 'off'),
    );
  };
  renderSys();
  store.on('monitor', renderSys);
  store.on('systemStatus', renderSys);

  // ---- activity log ----
  const level = h(
    'select',
    { id: 'log-level' },
    ['all', 'error', 'warn', 'info', 'debug'].map((l) =>
      h('option', { value: l }, l === 'all' ? 'All levels' : l),
    ),
  );
  const log = h('ol', {
    class: 'log',
    'data-testid': 'activity-log',
    'aria-live': 'polite',
    'aria-relevant': 'additions',
  });
  const logItem = (e: LogEntry) =>
    h(
      'li',
      { 'data-level': e.level },
      h('time', { datetime: e.timestamp }, formatTime(e.timestamp)),
      ' ',
      badge(e.level, LEVEL_KIND[e.level] ?? 'muted'),
      ' ',
      h('span', { class: 'log-source' }, e.source),
      ' ',
      h('span', { class: 'log-message' }, e.message),
    );
  const renderLog = (entries: LogEntry[]) => {
    const wanted = level.value;
    fill(log, entries.filter((e) => wanted === 'all' || e.level === wanted).map(logItem));
  };
  renderLog(store.get('logs'));
  level.addEventListener('change', () => renderLog(store.get('logs')));
  // New lines are added at the top, not re-rendered with the rest, so a screen reader (the list
  // is a polite live region) announces only what is new.
  app.live.on('log_entry', (m) => {
    const entry: LogEntry = { timestamp: m.timestamp, level: m.level, source: m.source, message: m.message };
    store.set('logs', [entry, ...store.get('logs')].slice(0, LOG_LIMIT));
    if (level.value === 'all' || level.value === entry.level) {
      log.prepend(logItem(entry));
      while (log.children.length > LOG_LIMIT) log.lastElementChild?.remove();
    }
  });

  return section(
    'section-monitor',
    7,
    'Live Update Monitor & Logs',
    live,
    h(
      'div',
      { class: 'subpanels' },
      h('div', { class: 'subpanel' }, h('h3', {}, 'Operation'), jobBox, noJob),
      h('div', { class: 'subpanel' }, h('h3', {}, 'System'), sys),
    ),
    h(
      'div',
      { class: 'log-head' },
      h('h3', {}, 'Update activity log'),
      h('div', { class: 'field inline' }, h('label', { for: 'log-level' }, 'Show'), level),
    ),
    log,
  );
}
