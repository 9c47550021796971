import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';

/** Everything the foundation stores survives a stop and a start on the same data dir. */

const GW_A = 'GW-3920A9';
const GW_B = 'GW-7781B2';
const GATEWAYS = `${GW_A}:Univa-GW-Pro,${GW_B}:Univa-GW-Lite:Europe/Amsterdam`;

describe('foundation: restart on the same data dir', () => {
  const running: TestGantry[] = [];
  afterEach(async () => {
    for (const g of running.splice(0)) await g.stop();
  });

  async function start(dataDir: string, env: Record<string, string> = {}): Promise<TestGantry> {
    const g = await startTestGantry({ dataDir, env: { GANTRY_GATEWAYS: GATEWAYS, ...env } });
    running.push(g);
    return g;
  }

  async function stop(g: TestGantry): Promise<void> {
    await g.stop();
    running.splice(running.indexOf(g), 1);
  }

  it('should keep settings, logs, users, sessions and the generated admin password', async () => {
    const dataDir = tempDataDir();
    // An empty GANTRY_ADMIN_PASSWORD counts as unset: the first start generates one.
    const first = await start(dataDir, { GANTRY_ADMIN_PASSWORD: '' });
    const generated = first.generatedAdminPassword;
    expect(generated).toMatch(/^[\w-]{12,}$/);
    const admin = await first.login('admin', generated);

    const saved = await first.request('POST', '/api/v1/ota/settings', {
      token: admin,
      gateway: GW_B,
      body: {
        auto_update: { enabled: true, auto_reboot: true },
        maintenance_window: { schedule: 'weekly', day: 'tuesday', time: '04:45', duration_minutes: 90 },
        update_strategy: 'rolling',
        rollback_retries: 7,
      },
    });
    expect(saved.status).toBe(200);
    first.deps.logs.error(GW_B, 'ota', 'before the restart');
    const settingsBefore = (
      await first.request('GET', '/api/v1/ota/settings', { token: admin, gateway: GW_B })
    ).body.data;
    const logsBefore = (
      await first.request('GET', '/api/v1/ota/logs?limit=500', { token: admin, gateway: GW_B })
    ).body.data;
    const statusBefore = (await first.request('GET', '/api/v1/ota/status', { token: admin, gateway: GW_B }))
      .body.data;
    const operator = await first.tokenFor('operator', [GW_B]);
    const auditBefore = first.deps.audit.recent(1000).length;
    await stop(first);

    // A different GANTRY_ADMIN_PASSWORD on a later start must not replace the existing admin's.
    const second = await start(dataDir, { GANTRY_ADMIN_PASSWORD: 'a-new-password-123' });
    expect(second.generatedAdminPassword).toBeUndefined();
    await expect(second.login('admin', 'a-new-password-123')).rejects.toThrow(/401/);
    const again = await second.login('admin', generated);

    const settingsAfter = await second.request('GET', '/api/v1/ota/settings', {
      token: again,
      gateway: GW_B,
    });
    expect(settingsAfter.body.data).toEqual(settingsBefore);
    expect(settingsAfter.body.data).toMatchObject({
      update_strategy: 'rolling',
      rollback_retries: 7,
      maintenance_window: { schedule: 'weekly', day: 'tuesday', time: '04:45', duration_minutes: 90 },
    });

    const logsAfter = (
      await second.request('GET', '/api/v1/ota/logs?limit=500', { token: again, gateway: GW_B })
    ).body.data;
    // Everything from before, plus the new "Gantry started" on top.
    expect(logsAfter.total).toBe(logsBefore.total + 1);
    expect(logsAfter.logs[0]).toMatchObject({ source: 'system', message: 'Gantry started' });
    expect(logsAfter.logs.slice(1)).toEqual(logsBefore.logs);
    expect(logsAfter.logs.some((l: { message: string }) => l.message === 'before the restart')).toBe(true);

    const statusAfter = await second.request('GET', '/api/v1/ota/status', { token: again, gateway: GW_B });
    expect(statusAfter.body.data.partitions).toEqual(statusBefore.partitions);
    expect(statusAfter.body.data.gateway.model).toBe('Univa-GW-Lite');

    // Tokens issued before the restart stay valid (the signing secret is kept in the data dir).
    expect((await second.request('GET', '/api/v1/ota/status', { token: admin, gateway: GW_B })).status).toBe(
      200,
    );
    expect(
      (await second.request('GET', '/api/v1/ota/status', { token: operator, gateway: GW_B })).status,
    ).toBe(200);
    expect(second.deps.audit.recent(1000).length).toBeGreaterThanOrEqual(auditBefore);
  });

  it('should keep the JWT secret private to the data dir (0600)', async () => {
    const dataDir = tempDataDir();
    await start(dataDir);
    const stat = fs.statSync(path.join(dataDir, 'secrets', 'jwt-secret'));
    expect(stat.mode & 0o777).toBe(0o600);
  });

  it('should keep a logout (revoked tokens) across a restart', async () => {
    const dataDir = tempDataDir();
    const first = await start(dataDir);
    const admin = await first.login();
    expect((await first.request('POST', '/api/v1/auth/logout', { token: admin, gateway: null })).status).toBe(
      200,
    );
    await stop(first);

    const second = await start(dataDir);
    const res = await second.request('GET', '/api/v1/ota/status', { token: admin });
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('AUTH_INVALID_TOKEN');
    expect((await second.request('GET', '/api/v1/ota/status', { token: await second.login() })).status).toBe(
      200,
    );
  });

  it('should keep a gateway’s history when the gateway list changes, and follow its new model and zone', async () => {
    const dataDir = tempDataDir();
    const first = await start(dataDir);
    const admin = await first.login();
    await first.request('POST', '/api/v1/ota/settings', {
      token: admin,
      gateway: GW_A,
      body: { rollback_retries: 9 },
    });
    await stop(first);

    const second = await startTestGantry({
      dataDir,
      env: { GANTRY_GATEWAYS: `${GW_A}:Univa-GW-Max:Asia/Tokyo` },
    });
    running.push(second);
    const token = await second.login();
    const settings = await second.request('GET', '/api/v1/ota/settings', { token, gateway: GW_A });
    expect(settings.body.data.rollback_retries).toBe(9);
    expect(settings.body.data.maintenance_window.timezone).toBe('Asia/Tokyo');
    const status = await second.request('GET', '/api/v1/ota/status', { token, gateway: GW_A });
    expect(status.body.data.gateway.model).toBe('Univa-GW-Max');
    // B is no longer hosted.
    expect((await second.request('GET', '/api/v1/ota/status', { token, gateway: GW_B })).status).toBe(404);
  });

  it('should keep the simulated device state (booted slot) across a restart', async () => {
    const dataDir = tempDataDir();
    const first = await start(dataDir);
    const device = first.deps.gateways.get(GW_A)!.device;
    await device.writeBootEnv({ bootSlot: 'B' });
    await device.reboot();
    await stop(first);

    const second = await start(dataDir);
    const status = await second.request('GET', '/api/v1/ota/status', { token: await second.login() });
    expect(status.body.data.gateway.os_version).toBe('v5.0.3');
    expect(status.body.data.partitions.active).toMatchObject({ id: 'B', booted: true, next_boot: true });
    expect(status.body.data.partitions.inactive).toMatchObject({ id: 'A', booted: false, status: 'ready' });
  });
});
