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
  SystemStatusMessage,
} from './api-types.js';
import type { Api } from './api.js';
import type { LiveChannel } from './live.js';

export type LiveState = 'connecting' | 'connected' | 'reconnecting' | 'closed';

export interface PageState {
  system: SystemStatus;
  updates: AvailableUpdate[];
  feed: FeedView;
  settings: Settings;
  safety: SafetyStatus;
  logs: LogEntry[];
  monitor: MonitorStatus;
  snapshots: SnapshotItem[];
  job: JobProgress | null;
  recovery: RecoveryImageView | null;
  /** The latest system_status message (current operation, resources). */
  systemStatus: SystemStatusMessage | null;
  live: LiveState;
}

type Listener<T> = (value: T) => void;

/** The page's data, first from the server-rendered attributes, then from calls and live messages. */
export class Store {
  private readonly listeners = new Map<keyof PageState, Set<Listener<never>>>();

  constructor(private readonly state: PageState) {}

  get<K extends keyof PageState>(key: K): PageState[K] {
    return this.state[key];
  }

  set<K extends keyof PageState>(key: K, value: PageState[K]): void {
    this.state[key] = value;
    for (const l of this.listeners.get(key) ?? []) (l as Listener<PageState[K]>)(value);
  }

  /** Calls `listener` on every change of `key` (not at once: sections render their initial state). */
  on<K extends keyof PageState>(key: K, listener: Listener<PageState[K]>): void {
    const set = this.listeners.get(key) ?? new Set();
    set.add(listener as Listener<never>);
    this.listeners.set(key, set);
  }
}

export type RefreshKey = 'system' | 'updates' | 'settings' | 'safety' | 'snapshots' | 'monitor';

/** What every section gets: the API, who is looking, the data, and the live channel. */
export interface App {
  api: Api;
  session: PageSessionView;
  store: Store;
  live: LiveChannel;
  /** Re-reads one part of the data from its GET route. */
  refresh(key: RefreshKey): Promise<void>;
  /** Re-reads soon, coalescing bursts (a reboot logs several lines at once). */
  refreshSoon(key: RefreshKey): void;
  /** The monitor follows this job from now on (download, deploy, restore, snapshot…). */
  followJob(jobId: string): void;
  /** Server time now, from the clock the server sent with the page. */
  serverNow(): number;
}
