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

  get(gatewayId: string): SettingsDocument {
    const row = this.byGateway.get({ gatewayId });
    // A stored document is validated on load too: a hand-edited or older one gets defaults filled.
    return settingsDocumentSchema.parse(row?.document ?? {});
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
    this.db
      .insert(settings)
      .values({ gatewayId, document: next, updatedAt: now })
      .onConflictDoUpdate({ target: settings.gatewayId, set: { document: next, updatedAt: now } })
      .run();
    return next;
  }

  /** Factory state (recovery with wipe_data). */
  reset(gatewayId: string): SettingsDocument {
    this.db.delete(settings).where(eq(settings.gatewayId, gatewayId)).run();
    return this.get(gatewayId);
  }
}
