import path from 'node:path';
import { eq } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { TokenService } from '../../core/auth.js';
import { SimulatedDevice } from '../../device/simulated.js';
import { openDatabase } from '../../drizzle/db.js';
import { gateways } from '../../drizzle/schema.js';
import { GatewayRegistry } from '../../services/gateways.js';
import { ComponentStateStore, type ComponentRecord } from '../../services/components/state.js';
import { SettingsService } from '../../services/settings.js';
import { UserService } from '../../services/users.js';
import { makeTempDir } from '../helpers/temp.js';

/**
 * What /status reads is kept in memory by the one writer of each file or table. A kept value
 * must be exactly what a fresh reader (another process, the next start) would read, and no caller
 * may change it for the others.
 */

const T0 = Date.parse('2026-12-05T06:00:00Z');

describe('SimulatedDevice: slot records and boot env kept by their writer', () => {
  const device = (dir: string) =>
    new SimulatedDevice({ gatewayId: 'GW-C1', model: 'Univa-GW-Pro', dir, now: () => T0 });

  it('should read back what it wrote, and a fresh instance should read the same from the files', async () => {
    const dir = makeTempDir('gantry-cache-device-');
    const d = device(dir);
    expect((await d.slots()).B.version).toBe('v5.0.3');
    const b = (await d.slots()).B;
    await d.writeSlotRecord('B', { ...b, version: 'v9.9.9', state: 'bootable' });
    await d.writeBootEnv({ bootSlot: 'B', upgradeAvailable: true });
    expect((await d.slots()).B.version).toBe('v9.9.9');
    expect(await d.readBootEnv()).toMatchObject({ bootSlot: 'B', upgradeAvailable: true });

    const fresh = device(dir);
    expect(await fresh.slots()).toEqual(await d.slots());
    expect(await fresh.readBootEnv()).toEqual(await d.readBootEnv());
  });

  it('should hand out copies: changing what a read returned changes nothing kept', async () => {
    const d = device(makeTempDir('gantry-cache-device-'));
    const env = await d.readBootEnv();
    env.bootSlot = 'B';
    const slots = await d.slots();
    slots.A.version = 'changed';
    expect((await d.readBootEnv()).bootSlot).toBe('A');
    expect((await d.slots()).A.version).toBe('v5.0.4');
    expect((await d.systemInfo()).osVersion).toBe('v5.0.4');
  });
});

describe('ComponentStateStore: records kept by their writer', () => {
  const record = (name: string, version: string): ComponentRecord => ({
    name,
    handler: 'file',
    target: `/opt/${name}`,
    version,
    floor: version,
    slot: null,
    release: null,
    previous: null,
    pending: null,
    updatedAt: T0,
  });

  it('should list what was put, as a fresh store reads it from the file', () => {
    const root = makeTempDir('gantry-cache-components-');
    const store = new ComponentStateStore((id) => path.join(root, id));
    expect(store.all('GW-C1')).toEqual({});
    store.put('GW-C1', record('app', '1.0.0'));
    expect(store.get('GW-C1', 'app')?.version).toBe('1.0.0');
    store.put('GW-C1', record('app', '1.1.0'));
    store.put('GW-C1', record('maps', '2.0.0'));
    const fresh = new ComponentStateStore((id) => path.join(root, id));
    expect(store.all('GW-C1')).toEqual(fresh.all('GW-C1'));
    expect(store.get('GW-C1', 'app')?.version).toBe('1.1.0');
  });

  it('should keep the records frozen and the caller’s record its own', () => {
    const root = makeTempDir('gantry-cache-components-');
    const store = new ComponentStateStore((id) => path.join(root, id));
    const mine = record('app', '1.0.0');
    store.put('GW-C1', mine);
    mine.version = 'mine to change';
    const kept = store.get('GW-C1', 'app')!;
    expect(kept.version).toBe('1.0.0');
    expect(() => ((kept as { version: string }).version = 'x')).toThrow(TypeError);
    // The map handed out is the caller's (adding to it changes nothing kept).
    const all = store.all('GW-C1');
    delete all.app;
    expect(store.get('GW-C1', 'app')).not.toBeNull();
  });
});

describe('SettingsService and UserService: rows kept by their writer', () => {
  const open = () => openDatabase(path.join(makeTempDir('gantry-cache-db-'), 'gantry.db'));

  it('should answer settings as stored after update and reset, frozen', () => {
    const db = open();
    try {
      db.insert(gateways)
        .values({ id: 'GW-C1', model: 'Univa-GW-Pro', timezone: 'UTC', createdAt: T0 })
        .run();
      const settings = new SettingsService(db, () => T0);
      expect(settings.get('GW-C1').rollback_retries).toBe(3);
      settings.update('GW-C1', { rollback_retries: 5, auto_rollback: false });
      expect(settings.get('GW-C1')).toMatchObject({ rollback_retries: 5, auto_rollback: false });
      expect(new SettingsService(db, () => T0).get('GW-C1')).toEqual(settings.get('GW-C1'));
      const kept = settings.get('GW-C1');
      expect(() => ((kept as { rollback_retries: number }).rollback_retries = 9)).toThrow(TypeError);
      expect(() => ((kept.maintenance_window as { enabled: boolean }).enabled = false)).toThrow(TypeError);
      settings.reset('GW-C1');
      expect(settings.get('GW-C1').rollback_retries).toBe(3);
    } finally {
      db.$client.close();
    }
  });

  it('should see a revocation and a new user at once', async () => {
    const db = open();
    try {
      const users = new UserService(db, new TokenService('s'.repeat(32), 600), () => T0, 100);
      expect(users.find('ops')).toBeUndefined();
      await users.create({ username: 'ops', password: 'password-123', role: 'operator', gateways: ['*'] });
      const before = users.find('ops')!.tokenVersion;
      users.revokeSessions('ops');
      expect(users.find('ops')!.tokenVersion).toBe(before + 1);
      expect(() => ((users.find('ops') as { role: string }).role = 'admin')).toThrow(TypeError);
      expect(() => (users.find('ops')!.gateways as string[]).push('x')).toThrow(TypeError);
    } finally {
      db.$client.close();
    }
  });
});

describe('GatewayRuntime: its row kept by its one writer', () => {
  it('should answer the row as stored after each write, frozen, and as before a rolled-back one', () => {
    const dir = makeTempDir('gantry-cache-gateway-');
    const db = openDatabase(path.join(dir, 'gantry.db'));
    try {
      const registry = new GatewayRegistry(db, dir, () => T0);
      registry.load([{ id: 'GW-C1', model: 'Univa-GW-Pro', timezone: 'UTC' }], 'simulated');
      const gw = registry.get('GW-C1')!;
      const stored = () => db.select().from(gateways).where(eq(gateways.id, 'GW-C1')).get();
      expect(gw.row()).toEqual(stored());
      expect(gw.row().lastOtaAt).toBeNull();
      expect(() => ((gw.row() as { lastOtaAt: number | null }).lastOtaAt = 1)).toThrow(TypeError);

      gw.recordOtaCommitted(T0 + 1000);
      expect(gw.row().lastOtaAt).toBe(T0 + 1000);
      gw.recordUpdateCheck(T0 + 2000);
      expect(gw.row()).toEqual(stored());
      expect(gw.row().lastUpdateCheckAt).toBe(T0 + 2000);

      // Written in a transaction that then fails: the row reads as the store kept it.
      expect(() =>
        db.transaction((tx) => {
          gw.recordUpdateCheck(T0 + 3000, tx);
          expect(gw.row().lastUpdateCheckAt).toBe(T0 + 3000);
          throw new Error('rolled back');
        }),
      ).toThrow('rolled back');
      expect(gw.row().lastUpdateCheckAt).toBe(T0 + 2000);
      expect(gw.row()).toEqual(stored());
    } finally {
      db.$client.close();
    }
  });
});
