import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import * as auth from '../../api/schemas/auth.js';
import * as events from '../../api/schemas/events.js';
import * as recovery from '../../api/schemas/recovery.js';
import * as safety from '../../api/schemas/safety.js';
import * as settings from '../../api/schemas/settings.js';
import * as systemOps from '../../api/schemas/system-ops.js';
import * as system from '../../api/schemas/system.js';
import * as updates from '../../api/schemas/updates.js';
import * as zip from '../../api/schemas/zip.js';
import * as settingsDocument from '../../core/settings-document.js';
import * as zipManifests from '../../services/zip-manifests.js';

/**
 * The API's payload schemas are built on their first use (z.lazy), not when the router loads: an
 * idle server that answered a login and a /status had built ~720 zod instances for the router's
 * ~70 payloads, ~0.4 MiB of heap it never used (README "How it runs in production"). Upload forms
 * stay plain objects: the REST layer reads their fields at start-up.
 */
describe('api/schemas', () => {
  const modules = { auth, events, recovery, safety, settings, systemOps, system, updates, zip };

  it('should build every payload schema on first use, upload forms excepted', () => {
    const eager: string[] = [];
    let payloads = 0;
    for (const [file, exports] of Object.entries(modules)) {
      for (const [name, value] of Object.entries(exports)) {
        if (!(value instanceof z.ZodType) || name.endsWith('FormSchema')) continue;
        // Re-exported from the domain (the stored settings document, the ZIP manifests).
        if ([settingsDocument, zipManifests].some((m) => Object.values(m).includes(value))) continue;
        payloads++;
        if (!(value instanceof z.ZodLazy)) eager.push(`${file}.${name}`);
      }
    }
    expect(eager).toEqual([]);
    expect(payloads).toBeGreaterThan(60);
  });

  it('should validate through the lazy wrapper as the schema itself does', () => {
    expect(auth.loginInputSchema.safeParse({ username: 'admin', password: 'x' }).success).toBe(true);
    const refused = auth.loginInputSchema.safeParse({ username: '', password: 'x', extra: 1 });
    expect(refused.success).toBe(false);
    expect(refused.error?.issues.map((i) => i.path.join('.')).sort()).toEqual(['', 'username']);
  });
});
