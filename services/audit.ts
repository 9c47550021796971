import { desc } from 'drizzle-orm';
import type { GantryDb } from '../drizzle/db.js';
import { audit } from '../drizzle/schema.js';

export interface AuditEntry {
  username: string | null;
  gatewayId: string | null;
  action: string;
  outcome: 'success' | 'failure';
  detail?: string | null;
  remoteAddress?: string | null;
}

/** Who did what, on which gateway, with which outcome. Survives factory resets by design. */
export class AuditService {
  constructor(
    private readonly db: GantryDb,
    private readonly clock: () => number,
  ) {}

  record(entry: AuditEntry): void {
    this.db
      .insert(audit)
      .values({
        at: this.clock(),
        ...entry,
        detail: entry.detail ?? null,
        remoteAddress: entry.remoteAddress ?? null,
      })
      .run();
  }

  recent(limit = 100) {
    return this.db.select().from(audit).orderBy(desc(audit.id)).limit(limit).all();
  }
}
