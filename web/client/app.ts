import type {
  AvailableUpdate,
  FeedView,
  JobProgress,
  LogEntry,
  MonitorStatus,
  PageSessionView,
  RecoveryImageView,
  SafetyStatus,
  Settings,
  SnapshotItem,
  SystemStatus,
  UpdateProgressMessage,
  UpdatesList,
} from './api-types.js';
import { Api } from './api.js';
import { byId, dataJson, fill, h, listen } from './dom.js';
import { describeError } from './errors.js';
import { LiveChannel } from './live.js';
import { monitorSection } from './sections/monitor.js';
import { recoverySection } from './sections/recovery.js';
import { safetySection } from './sections/safety.js';
import { settingsSection } from './sections/settings.js';
import { systemSection } from './sections/system.js';
import { updatesSection } from './sections/updates.js';
import { uploadSection } from './sections/upload.js';
import { Store, type App, type RefreshKey } from './store.js';

/**
 * Statuses after which the partitions may have changed (a verified image, a staged next boot, a
 * commit): the slot cards are read again. `installed` is not final: the job still waits on a boot.
 */
const SETTLED = ['downloaded', 'installed', 'complete', 'error', 'cancelled'];

function start(): void {
  const root = byId('app');
  const session = dataJson<PageSessionView>(root, 'session');
  const clockOffset = session.server_now - Date.now();
  const store = new Store({
    system: dataJson<SystemStatus>(root, 'system'),
    updates: dataJson<AvailableUpdate[]>(root, 'updates'),
    feed: dataJson<FeedView>(root, 'feed'),
    settings: dataJson<Settings>(root, 'settings'),
    safety: dataJson<SafetyStatus>(root, 'safety'),
    logs: dataJson<LogEntry[]>(root, 'logs'),
    monitor: dataJson<MonitorStatus>(root, 'monitor'),
    snapshots: dataJson<SnapshotItem[]>(root, 'snapshots'),
    job: dataJson<JobProgress | null>(root, 'job'),
    recovery: dataJson<RecoveryImageView | null>(root, 'recovery'),
    systemStatus: null,
    live: 'connecting',
  });
  const api = new Api(session.gateway);
  const live = new LiveChannel(session.gateway);

  const banner = byId('session-banner');
  const sessionEnded = (text: string) => {
    banner.hidden = false;
    fill(banner, text, ' ', h('a', { href: '/login' }, 'Sign in again'));
  };
  api.onSessionEnded(() => sessionEnded('Your session has ended.'));

  const loaders: Record<RefreshKey, () => Promise<void>> = {
    system: async () => store.set('system', (await api.get<SystemStatus>('/api/v1/ota/status')).data),
    updates: async () => {
      const { data } = await api.get<UpdatesList>('/api/v1/ota/updates');
      store.set('feed', { server: data.server, demo: data.demo_feed });
      store.set('updates', data.updates);
    },
    settings: async () => store.set('settings', (await api.get<Settings>('/api/v1/ota/settings')).data),
    safety: async () => store.set('safety', (await api.get<SafetyStatus>('/api/v1/ota/safety')).data),
    snapshots: async () =>
      store.set(
        'snapshots',
        (await api.get<{ snapshots: SnapshotItem[] }>('/api/v1/ota/snapshots')).data.snapshots,
      ),
    monitor: async () => store.set('monitor', (await api.get<MonitorStatus>('/api/v1/ota/monitor')).data),
  };
  const timers = new Map<RefreshKey, number>();
  let pollTimer: number | null = null;

  const app: App = {
    api,
    session,
    store,
    live,
    refresh: (key) => loaders[key](),
    refreshSoon(key) {
      if (timers.has(key)) return;
      timers.set(
        key,
        window.setTimeout(() => {
          timers.delete(key);
          loaders[key]().catch((err: unknown) => console.warn(`refresh ${key}:`, describeError(err)));
        }, 300),
      );
    },
    followJob(jobId) {
      void readProgress(jobId);
    },
    serverNow: () => Date.now() + clockOffset,
  };

  /** Full progress view from /progress; the WebSocket only carries part of it. */
  const readProgress = async (jobId: string) => {
    try {
      const res = await api.get<JobProgress>('/api/v1/ota/progress', { job_id: jobId });
      const previous = store.get('job');
      store.set('job', res.data);
      if (SETTLED.includes(res.data.status) && previous?.status !== res.data.status) settled(res.data.status);
    } catch (err) {
      console.warn('progress', describeError(err));
    }
    schedulePoll();
  };

  /** Without the live channel, poll the followed job until it settles. */
  const schedulePoll = () => {
    if (pollTimer !== null) window.clearTimeout(pollTimer);
    pollTimer = null;
    const job = store.get('job');
    const liveOk = live.status === 'connected' || live.status === 'connecting';
    if (!job || liveOk || ['complete', 'error', 'cancelled'].includes(job.status)) return;
    pollTimer = window.setTimeout(() => void readProgress(job.job_id), 1000);
  };

  const settled = (status: string) => {
    app.refreshSoon('system');
    if (status === 'complete') {
      app.refreshSoon('updates');
      app.refreshSoon('snapshots');
    }
  };

  live.on('update_progress', (m: UpdateProgressMessage) => {
    const job = store.get('job');
    if (!job || job.job_id !== m.job_id) {
      void readProgress(m.job_id);
      return;
    }
    const changed = job.status !== m.status;
    store.set('job', {
      ...job,
      status: m.status,
      progress: {
        ...job.progress,
        percentage: m.progress,
        current_operation: m.current_operation,
        speed: m.speed,
        eta: m.eta,
      },
    });
    // A new state may bring an error, a blocked reboot or new byte counts: read the full view.
    if (changed) void readProgress(m.job_id);
  });
  live.on('system_status', (m) => store.set('systemStatus', m));
  // Boots, commits, rollbacks and recoveries are logged: the slot cards follow them.
  live.on('log_entry', (m) => {
    if (['partition', 'simulator', 'recovery', 'ota', 'system', 'snapshot'].includes(m.source))
      app.refreshSoon('system');
    if (m.source === 'snapshot') app.refreshSoon('snapshots');
  });
  let wasConnected = false;
  live.onStatus((status, reason) => {
    store.set('live', status);
    if (status === 'closed' && reason === 'session') sessionEnded('Your session has ended.');
    if (status === 'connected') {
      // Back online after a drop: catch up on what the channel missed (not on the first connect:
      // the server-rendered data is current).
      if (wasConnected) {
        app.refreshSoon('system');
        app.refreshSoon('safety');
        const job = store.get('job');
        if (job) void readProgress(job.job_id);
      }
      wasConnected = true;
    } else schedulePoll();
  });

  fill(
    root,
    h(
      'nav',
      { class: 'toc', 'aria-label': 'Sections' },
      h(
        'ol',
        {},
        [
          ['section-system', 'System'],
          ['section-updates', 'Updates'],
          ['section-upload', 'Manual upload'],
          ['section-settings', 'Settings'],
          ['section-recovery', 'Recovery'],
          ['section-safety', 'Safety'],
          ['section-monitor', 'Monitor & logs'],
        ].map(([id, label]) => h('li', {}, h('a', { href: `#${id}` }, label!))),
      ),
    ),
    systemSection(app),
    updatesSection(app),
    uploadSection(app),
    settingsSection(app),
    recoverySection(app),
    safetySection(app),
    monitorSection(app),
  );
  document.body.appendChild(h('dialog', { id: 'confirm-dialog', class: 'dialog' }));

  const logout = byId<HTMLButtonElement>('logout-button');
  listen(logout, 'click', async () => {
    logout.disabled = true;
    try {
      await api.post('/api/v1/auth/logout');
      live.close();
      location.assign('/login');
    } catch (err) {
      fill(byId('logout-error'), describeError(err));
      logout.disabled = false;
    }
  });

  live.connect();
  const job = store.get('job');
  if (job) schedulePoll();
  root.dataset.ready = 'true';
}

start();
