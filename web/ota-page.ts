import { createContextInner, type RequestMeta } from '../api/context.js';
import { createCaller } from '../api/routers/_app.js';
import { formatBytes, isoSeconds } from '../core/format.js';
import { PROGRESS_JOB_KINDS } from '../core/job-kinds.js';
import type { GantryDeps } from '../server/deps.js';
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
} from './client/api-types.js';
import { html, jsonAttr, type SafeHtml } from './html.js';
import { documentShell } from './layout.js';

export const OTA_PAGE_PATH = '/ota-system-updates';
export const OTA_PAGE_TITLE = 'OTA & System Updates - Univa Gateway';

export interface OtaPageData {
  session: PageSessionView;
  system: SystemStatus;
  updates: AvailableUpdate[];
  /** The feed section 2 checks (marked when it is the local demo feed). */
  feed: FeedView;
  settings: Settings;
  safety: SafetyStatus;
  logs: LogEntry[];
  monitor: MonitorStatus;
  snapshots: SnapshotItem[];
  job: JobProgress | null;
  recovery: RecoveryImageView | null;
}

/**
 * Everything the first paint shows, read through the same tRPC procedures the REST routes call
 * (same authorization, same shapes), so the page needs no API call to show its data.
 */
export async function loadOtaPageData(
  deps: GantryDeps,
  meta: RequestMeta & { gatewayId: string },
  session: Omit<PageSessionView, 'gateway' | 'server_now'>,
): Promise<OtaPageData> {
  const caller = createCaller(createContextInner(deps, meta));
  const [system, updates, settings, safety, logs, monitor, snapshots] = await Promise.all([
    caller.system.status(),
    caller.updates.list(),
    caller.settings.get(),
    caller.safety.status(),
    caller.monitor.logs({ limit: 50 }),
    caller.monitor.status(),
    caller.maintenance.snapshots(),
  ]);
  // The newest unfinished job is what the live monitor shows until the WebSocket says otherwise.
  const unfinished = deps.jobs.unfinished(meta.gatewayId, PROGRESS_JOB_KINDS);
  const latest = unfinished[unfinished.length - 1];
  let job: JobProgress | null = null;
  if (latest) {
    job = await caller.updates.progress({ job_id: latest.id }).catch(() => null);
  }
  const runtime = deps.gateways.get(meta.gatewayId);
  const image = runtime ? deps.recovery.recoveryImage(runtime) : null;
  return {
    session: { ...session, gateway: meta.gatewayId, server_now: deps.clock() },
    system,
    updates: updates.updates,
    feed: { server: updates.server, demo: updates.demo_feed },
    settings,
    safety,
    logs: logs.logs,
    monitor,
    snapshots: snapshots.snapshots,
    job,
    recovery: image && {
      filename: image.filename,
      version: image.manifest.version,
      size: formatBytes(image.size),
      uploaded_at: isoSeconds(image.uploadedAt),
    },
  };
}

function gatewayPicker(session: PageSessionView): SafeHtml | '' {
  if (session.gateways.length < 2) return '';
  return html`<form class="gateway-picker" method="get" action="${OTA_PAGE_PATH}">
    <label for="gateway-select">Gateway</label>
    <select id="gateway-select" name="gateway">
      ${session.gateways.map(
        (id) => html`<option value="${id}" ${id === session.gateway ? html`selected` : ''}>${id}</option>`,
      )}
    </select>
    <button type="submit">Switch</button>
  </form>`;
}

/**
 * The page of the spec: a shell plus `#app` whose data-* attributes carry the JSON of /status,
 * /updates, /settings and /safety (and what else the first paint shows). Every value goes
 * through the escaping `html` tag: a feed-supplied string cannot leave its attribute.
 */
export function renderOtaPage(data: OtaPageData): SafeHtml {
  const s = data.session;
  return documentShell({
    title: OTA_PAGE_TITLE,
    scripts: ['app.js'],
    body: html`<a class="skip-link" href="#main">Skip to the sections</a>
      <header class="topbar">
        <div class="topbar-title">
          <h1>OTA &amp; System Updates</h1>
          <p class="topbar-sub">
            Univa Gateway <strong id="gateway-id">${s.gateway}</strong> · signed in as
            <strong>${s.username}</strong> (${s.role})
          </p>
        </div>
        <div class="topbar-actions">
          ${gatewayPicker(s)}
          <button type="button" id="logout-button" class="secondary">Log out</button>
          <p id="logout-error" class="error" role="alert"></p>
        </div>
      </header>
      <p id="session-banner" class="banner banner-error" role="alert" hidden></p>
      <main id="main">
        <div
          id="app"
          data-system="${jsonAttr(data.system)}"
          data-updates="${jsonAttr(data.updates)}"
          data-feed="${jsonAttr(data.feed)}"
          data-settings="${jsonAttr(data.settings)}"
          data-safety="${jsonAttr(data.safety)}"
          data-logs="${jsonAttr(data.logs)}"
          data-monitor="${jsonAttr(data.monitor)}"
          data-snapshots="${jsonAttr(data.snapshots)}"
          data-job="${jsonAttr(data.job)}"
          data-recovery="${jsonAttr(data.recovery)}"
          data-session="${jsonAttr(s)}"
        >
          <noscript>
            <p class="banner banner-error">
              This page needs JavaScript to show and operate the gateway. The same operations are available
              through the API: see <a href="/api/docs">/api/docs</a>.
            </p>
          </noscript>
        </div>
      </main>`,
  });
}
