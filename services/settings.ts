import { eq, sql } from 'drizzle-orm';
import {
  settingsDocumentSchema,
  type SettingsDocument,
  type SettingsPatch,
} from '../core/settings-document.js';
import type { GantryDb } from '../drizzle/db.js';
import { settings } from '../drizzle/schema.js';

/** Per-gateway settings, stored as one document validated on the way in and on the way out. */
export class SettingsService {
  constructor(
    private readonly db: GantryDb,
    private readonly clock: () => number,
  ) {
    this.byGateway = this.prepareByGateway();
  }

  private readonly byGateway: ReturnType<SettingsService['prepareByGateway']>;

  private prepareByGateway() {
    return this.db
      .select()
      .from(settings)
      .where(eq(settings.gatewayId, sql.placeholder('gatewayId')))
      .prepare();
  }

  /**
   * Each gateway's document as last loaded or written. This service is the only writer of the
   * settings table (and never inside a transaction that could roll back), so the parsed document
   * stays what the table holds; `GET /status` and the scheduler read it often. Deep-frozen, so no
   * caller can change it for the others.
   */
  private readonly documents = new Map<string, SettingsDocument>();

  get(gatewayId: string): SettingsDocument {
    let doc = this.documents.get(gatewayId);
    if (!doc) {
      const row = this.byGateway.get({ gatewayId });
      // A stored document is validated on load too: a hand-edited or older one gets defaults filled.
      doc = deepFreeze(settingsDocumentSchema.parse(row?.document ?? {}));
      this.documents.set(gatewayId, doc);
    }
    return doc;
  }

  update(gatewayId: string, patch: SettingsPatch): SettingsDocument {
    const current = this.get(gatewayId);
    const next = settingsDocumentSchema.parse({
      ...current,
      ...patch,
      auto_update: { ...current.auto_update, ...patch.auto_update },
      maintenance_window: { ...current.maintenance_window, ...patch.maintenance_window },
      safety: { ...current.safety, ...patch.safety },
    });
    const now = this.clock();
    this.documents.delete(gatewayId);
    this.db
      .insert(settings)
      .values({ gatewayId, document: next, updatedAt: now })
      .onConflictDoUpdate({ target: settings.gatewayId, set: { document: next, updatedAt: now } })
      .run();
    return next;
  }

  /** Factory state (recovery with wipe_data). */
  reset(gatewayId: string): SettingsDocument {
    this.documents.delete(gatewayId);
    this.db.delete(settings).where(eq(settings.gatewayId, gatewayId)).run();
    return this.get(gatewayId);
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
