import { and, count, desc, eq } from 'drizzle-orm';
import type { EventBus } from '../core/bus.js';
import type { LogEntry } from '../core/events.js';
import type { GantryDb } from '../drizzle/db.js';
import type { LogLevel } from '../core/vocabulary.js';
import { logs } from '../drizzle/schema.js';

/** The gateway activity log: written to SQLite first, then announced as a `log_entry` event. */
export class LogService {
  constructor(
    private readonly db: GantryDb,
    private readonly bus: EventBus,
    private readonly clock: () => number,
  ) {}

  write(gatewayId: string, level: LogLevel, source: string, message: string): void {
    const row = { gatewayId, at: this.clock(), level, source, message };
    this.db.insert(logs).values(row).run();
    this.bus.publish(gatewayId, { type: 'log_entry', at: row.at, level, source, message });
  }

  info(gatewayId: string, source: string, message: string): void {
    this.write(gatewayId, 'info', source, message);
  }

  warn(gatewayId: string, source: string, message: string): void {
    this.write(gatewayId, 'warn', source, message);
  }

  error(gatewayId: string, source: string, message: string): void {
    this.write(gatewayId, 'error', source, message);
  }

  /** Newest first; `total` counts every entry matching the filter, not just the page. */
  list(gatewayId: string, opts: { limit: number; level?: LogLevel }) {
    const where = opts.level
      ? and(eq(logs.gatewayId, gatewayId), eq(logs.level, opts.level))
      : eq(logs.gatewayId, gatewayId);
    const rows = this.db.select().from(logs).where(where).orderBy(desc(logs.id)).limit(opts.limit).all();
    const total = this.db.select({ n: count() }).from(logs).where(where).get()?.n ?? 0;
    return {
      logs: rows.map(({ at, level, source, message }): LogEntry => ({ at, level, source, message })),
      total,
    };
  }
}
