import { and, eq, isNull } from 'drizzle-orm';
import { compareVersions, isVersion } from '../bundle/manifest.js';
import { findGantryError } from '../core/errors.js';
import type { GantryDb } from '../drizzle/db.js';
import { maintenanceRuns, type MaintenanceRunRow } from '../drizzle/schema.js';
import type { GatewayRegistry, GatewayRuntime } from './gateways.js';
import type { LogService } from './logs.js';
import { nextMaintenanceWindow } from './maintenance-window.js';
import type { SettingsService } from './settings.js';
import { nextUpdateCheck } from './system.js';
import type { UpdateService } from './updates/update-service.js';

export interface SchedulerDeps {
  db: GantryDb;
  clock: () => number;
  gateways: GatewayRegistry;
  settings: SettingsService;
  logs: LogService;
  updates: UpdateService;
  feedConfigured(gatewayId: string): boolean;
}

const DAY = 86_400_000;
/** While a window is open the scheduler looks again this often (downloads finish, cranes stop). */
const WINDOW_TICK_MS = 30_000;
const MAX_TIMER_MS = 6 * 3_600_000;

/** The window containing `now`, if any: its start and end (epoch ms). */
export function currentWindow(
  window: Parameters<typeof nextMaintenanceWindow>[0],
  timezone: string,
  now: number,
): { start: number; end: number } | null {
  if (!window.enabled) return null;
  const period = window.schedule === 'weekly' ? 7 * DAY : DAY;
  const start = nextMaintenanceWindow(window, timezone, new Date(now - period))?.getTime();
  if (start === undefined || start > now) return null;
  const end = start + window.duration_minutes * 60_000;
  return now < end ? { start, end } : null;
}

function isUrgent(update: { type: string; severity: string }): boolean {
  return update.type === 'security' || update.severity === 'critical';
}

/**
 * Settings in action: periodic update checks (the `next_check` of /monitor), and inside the
 * maintenance window auto-download and, for security/critical updates, auto-install (rebooting only
 * with `auto_reboot`). Every step goes through the same services as an operator's click, so the
 * safety interlock and the one-operation lock apply unchanged.
 */
export class MaintenanceScheduler {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> = Promise.resolve();
  private stopped = true;

  constructor(private readonly deps: SchedulerDeps) {}

  start(): void {
    this.stopped = false;
    this.arm(0);
  }

  stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    return this.running;
  }

  /** Runs everything due now; the timer calls it, tests call it with a fake clock. */
  runDue(): Promise<void> {
    this.running = this.running.then(async () => {
      for (const gw of this.deps.gateways.all()) {
        try {
          await this.runGateway(gw);
        } catch (err) {
          this.deps.logs.error(gw.id, 'scheduler', `Scheduled work failed: ${(err as Error).message}`);
        }
      }
    });
    return this.running;
  }

  private arm(delay: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      void this.runDue().then(() => this.arm(this.nextDelay()));
    }, delay);
    this.timer.unref();
  }

  /** Sleeps until the earliest next check or window start (or one tick while a window is open). */
  private nextDelay(): number {
    const now = this.deps.clock();
    let next = now + MAX_TIMER_MS;
    for (const gw of this.deps.gateways.all()) {
      const s = this.deps.settings.get(gw.id);
      const row = gw.row();
      const check = nextUpdateCheck(s, row.lastUpdateCheckAt, row.createdAt, now);
      if (check !== null) next = Math.min(next, check);
      if (currentWindow(s.maintenance_window, gw.timezone, now)) next = Math.min(next, now + WINDOW_TICK_MS);
      const win = nextMaintenanceWindow(s.maintenance_window, gw.timezone, new Date(now));
      if (win) next = Math.min(next, win.getTime());
    }
    return Math.max(1000, next - now);
  }

  private async runGateway(gw: GatewayRuntime): Promise<void> {
    const now = this.deps.clock();
    const s = this.deps.settings.get(gw.id);
    const row = gw.row();
    const feed = this.deps.feedConfigured(gw.id);
    const checkDue = nextUpdateCheck(s, row.lastUpdateCheckAt, row.createdAt, now - 1);
    if (feed && (s.auto_check || s.auto_update.enabled) && checkDue !== null && checkDue <= now) {
      await this.check(gw);
    }
    const window = currentWindow(s.maintenance_window, gw.timezone, now);
    if (window && s.auto_update.enabled && feed) await this.inWindow(gw, window);
    this.closeFinishedRuns(gw, now);
  }

  private async check(gw: GatewayRuntime): Promise<void> {
    try {
      await this.deps.updates.checkForUpdates(gw, { force: false, background: false });
    } catch {
      // Logged by the update service; the next check comes at the next interval.
    }
  }

  private run(gw: GatewayRuntime, windowStart: number): MaintenanceRunRow | undefined {
    return this.deps.db
      .select()
      .from(maintenanceRuns)
      .where(and(eq(maintenanceRuns.gatewayId, gw.id), eq(maintenanceRuns.windowStart, windowStart)))
      .get();
  }

  private finish(gw: GatewayRuntime, windowStart: number, outcome: string): void {
    this.deps.db
      .update(maintenanceRuns)
      .set({ finishedAt: this.deps.clock(), outcome })
      .where(and(eq(maintenanceRuns.gatewayId, gw.id), eq(maintenanceRuns.windowStart, windowStart)))
      .run();
    this.deps.logs.info(gw.id, 'scheduler', `Maintenance window finished: ${outcome}`);
  }

  private async inWindow(gw: GatewayRuntime, window: { start: number; end: number }): Promise<void> {
    let run = this.run(gw, window.start);
    if (run?.finishedAt) return; // this window already did its work (also across restarts)
    if (!run) {
      this.deps.db
        .insert(maintenanceRuns)
        .values({
          gatewayId: gw.id,
          windowStart: window.start,
          windowEnd: window.end,
          startedAt: this.deps.clock(),
        })
        .run();
      this.deps.logs.info(gw.id, 'scheduler', 'Maintenance window opened');
      await this.check(gw);
      run = this.run(gw, window.start)!;
    }
    const s = this.deps.settings.get(gw.id);

    if (run.jobId) {
      let state: string;
      try {
        state = this.deps.updates.progress(gw, run.jobId).status;
      } catch {
        return this.finish(gw, window.start, `job ${run.jobId} vanished`);
      }
      if (state === 'complete') return this.finish(gw, window.start, `installed ${run.outcome ?? ''}`.trim());
      if (state === 'error' || state === 'cancelled')
        return this.finish(gw, window.start, `job ${run.jobId} ${state}`);
      // Installed without auto_reboot: the window's work is done; the next reboot activates it.
      if (state === 'installed') {
        return this.finish(gw, window.start, `installed ${run.outcome ?? ''}; active after the next reboot`);
      }
      if (state !== 'downloaded') return; // still downloading / installing: look again next tick
      const candidate = this.deps.updates.listUpdates(gw).updates.find((u) => u.version === run!.outcome);
      if (!s.auto_update.auto_security || !candidate || !isUrgent(candidate)) {
        return this.finish(gw, window.start, `downloaded ${run.outcome}; waiting for an operator to install`);
      }
      try {
        await this.deps.updates.install(
          gw,
          { job_id: run.jobId, reboot_after: s.auto_update.auto_reboot, create_snapshot: false },
          'scheduler',
        );
        this.deps.logs.info(gw.id, 'scheduler', `Installing ${candidate.version} in the maintenance window`);
      } catch (err) {
        const code = findGantryError(err)?.gantryCode;
        // Blocked by safety or another operation: try again at the next tick, inside the window.
        this.deps.logs.warn(
          gw.id,
          'scheduler',
          `Install of ${candidate.version} deferred: ${code ?? (err as Error).message}`,
        );
      }
      return;
    }

    if (!s.auto_update.auto_download) return this.finish(gw, window.start, 'auto-download is off');
    const booted = (await gw.device.slots())[await gw.device.bootedSlot()].version;
    const candidates = this.deps.updates
      .listUpdates(gw)
      .updates.filter((u) => u.compatible && u.signature === 'verified')
      .filter(
        (u) =>
          !booted || !isVersion(booted) || !isVersion(u.version) || compareVersions(u.version, booted) > 0,
      )
      .sort((a, b) => compareVersions(b.version, a.version));
    const pick = candidates[0];
    if (!pick) return this.finish(gw, window.start, 'no update');
    try {
      const started = await this.deps.updates.startDownload(
        gw,
        { update_id: pick.id, background: true },
        'scheduler',
      );
      this.deps.db
        .update(maintenanceRuns)
        .set({ jobId: started.jobId, outcome: pick.version })
        .where(and(eq(maintenanceRuns.gatewayId, gw.id), eq(maintenanceRuns.windowStart, window.start)))
        .run();
      this.deps.logs.info(
        gw.id,
        'scheduler',
        `Downloading ${pick.version} (${started.jobId}) in the maintenance window`,
      );
    } catch (err) {
      const code = findGantryError(err)?.gantryCode;
      this.deps.logs.warn(
        gw.id,
        'scheduler',
        `Download of ${pick.version} deferred: ${code ?? (err as Error).message}`,
      );
    }
  }

  /** A window that ended with work still open is closed with what it reached. */
  private closeFinishedRuns(gw: GatewayRuntime, now: number): void {
    const open = this.deps.db
      .select()
      .from(maintenanceRuns)
      .where(and(eq(maintenanceRuns.gatewayId, gw.id), isNull(maintenanceRuns.finishedAt)))
      .all();
    for (const run of open) {
      if (run.windowEnd <= now)
        this.finish(gw, run.windowStart, `window ended (${run.outcome ?? 'nothing started'})`);
    }
  }

  /** Runs of the gateway, newest first (for /monitor and the debug bundle). */
  runs(gatewayId: string): MaintenanceRunRow[] {
    return this.deps.db
      .select()
      .from(maintenanceRuns)
      .where(eq(maintenanceRuns.gatewayId, gatewayId))
      .all()
      .sort((a, b) => b.windowStart - a.windowStart);
  }
}
