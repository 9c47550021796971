import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { SafetyReadings } from '../types.js';

/**
 * Crane, anti-collision, UPS and network readings are site-specific: the crane controller
 * integration writes them to a JSON file (replaced atomically, and rewritten at least every
 * `maxAgeSeconds` as a heartbeat), e.g.
 *
 *   {"crane_motion":"idle","acs_collision":"clear","ups_battery_percent":85,
 *    "network_connected":true,"crane_estimated_clear_seconds":null}
 *
 * Fail-safe: a missing, unreadable, malformed or stale file is not turned into made-up values (a
 * "moving" crane that is not moving would be logged and shown to operators as fact). readSafety()
 * throws instead, and the safety service treats a failed read as "no reading": every enabled
 * constraint `unknown`, blocking. A site without one of the sensors writes its constant value
 * (or an admin turns that constraint off in the settings).
 */

export const safetyFileSchema = z.lazy(() =>
  z.strictObject({
    crane_motion: z.enum(['idle', 'moving']),
    acs_collision: z.enum(['clear', 'warning', 'collision_risk']),
    ups_battery_percent: z.number().min(0).max(100),
    network_connected: z.boolean(),
    crane_estimated_clear_seconds: z.number().min(0).nullable().optional(),
  }),
);
export type SafetyFile = z.infer<typeof safetyFileSchema>;

export interface SafetyFileOptions {
  file: string;
  /** Older than this (by mtime) counts as no reading; 0 disables the check. */
  maxAgeSeconds: number;
  now: () => number;
}

/** The file's readings (without system load, which comes from /proc). Throws when there are none. */
export function readSafetyFile(opts: SafetyFileOptions): Omit<SafetyReadings, 'systemLoad'> {
  let text: string;
  let mtimeMs: number;
  try {
    const fd = fs.openSync(opts.file, 'r');
    try {
      mtimeMs = fs.fstatSync(fd).mtimeMs;
      text = fs.readFileSync(fd, 'utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(
      code === 'ENOENT'
        ? `safety readings file ${opts.file} does not exist (the crane controller integration writes it)`
        : `safety readings file ${opts.file} unreadable: ${(err as Error).message}`,
    );
  }
  if (opts.maxAgeSeconds > 0) {
    const age = (opts.now() - mtimeMs) / 1000;
    if (age > opts.maxAgeSeconds) {
      throw new Error(
        `safety readings file ${opts.file} is stale: written ${Math.round(age)} s ago, ` +
          `more than ${opts.maxAgeSeconds} s (is the crane controller integration running?)`,
      );
    }
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`safety readings file ${opts.file} is not JSON: ${(err as Error).message}`);
  }
  const parsed = safetyFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(
      `safety readings file ${opts.file}: ${issue.path.join('.') || '(root)'}: ${issue.message}`,
    );
  }
  const r = parsed.data;
  return {
    craneMotion: r.crane_motion,
    acsCollision: r.acs_collision,
    upsBatteryPercent: r.ups_battery_percent,
    networkConnected: r.network_connected,
    craneEstimatedClearSeconds: r.crane_estimated_clear_seconds ?? null,
  };
}

/**
 * Calls `onChange` (debounced) when the file is written, replaced or removed. Watches the directory,
 * not the file: an atomic replace (write + rename) swaps the inode a file watch would stay on.
 * A directory that does not exist yet is watched once it does (`poke()`, called on every read).
 */
export class SafetyFileWatcher {
  private watcher: fs.FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly file: string,
    private readonly onChange: () => void,
    private readonly debounceMs = 50,
  ) {
    this.poke();
  }

  /** Starts watching if not yet (the directory may have appeared since). */
  poke(): void {
    if (this.watcher || this.stopped) return;
    const dir = path.dirname(this.file);
    const name = path.basename(this.file);
    try {
      this.watcher = fs.watch(dir, { persistent: false }, (_event, filename) => {
        if (filename !== null && filename.toString() !== name) return;
        this.schedule();
      });
      this.watcher.on('error', () => {
        // The directory went away: watch again once it is back.
        this.watcher?.close();
        this.watcher = null;
        this.schedule();
      });
    } catch {
      this.watcher = null;
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.stopped) this.onChange();
    }, this.debounceMs);
    this.timer.unref();
  }

  get watching(): boolean {
    return this.watcher !== null;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.watcher?.close();
    this.watcher = null;
  }
}
