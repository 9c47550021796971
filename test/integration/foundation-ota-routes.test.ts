import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { restRouteTable } from '../../rest-compat/table.js';
import { startTestGantry, type TestGantry } from '../helpers/gantry.js';

/**
 * Every REST route delivered by the foundation, over real HTTP, with good input and with each
 * kind of bad input; refused writes must leave the store untouched and leave an audit row.
 */

const GW_A = 'GW-3920A9';
const GW_B = 'GW-7781B2';
const T0 = Date.parse('2025-03-15T10:00:00Z');

type RequestOpts = NonNullable<Parameters<TestGantry['request']>[2]>;

describe('foundation: /api/v1/ota REST routes', () => {
  let g: TestGantry;
  const clock = { now: T0 };
  const tokens = {} as Record<'admin' | 'operator' | 'viewer' | 'adminOfB' | 'expired' | 'forged', string>;

  beforeAll(async () => {
    g = await startTestGantry({
      clock: () => clock.now,
      env: { GANTRY_GATEWAYS: `${GW_A}:Univa-GW-Pro,${GW_B}:Univa-GW-Lite:Europe/Amsterdam` },
    });
    tokens.admin = await g.login();
    tokens.operator = await g.tokenFor('operator');
    tokens.viewer = await g.tokenFor('viewer');
    tokens.adminOfB = await g.tokenFor('admin', [GW_B]);
    tokens.expired = g.signToken({}, { expiresInSeconds: -1 });
    tokens.forged = g.signToken({}, { secret: 'not-the-server-secret-but-long-enough-anyway' });
  });
  afterAll(() => g.stop());

  const get = (path: string, opts: RequestOpts = {}) =>
    g.request('GET', path, { token: tokens.admin, ...opts });
  const post = (path: string, body: unknown, opts: RequestOpts = {}) =>
    g.request('POST', path, { token: tokens.admin, body, ...opts });

  async function settingsOf(gateway: string) {
    const res = await get('/api/v1/ota/settings', { gateway });
    expect(res.status).toBe(200);
    return res.body.data;
  }

  function logCount(gateway: string, level?: string): number {
    const sql = `select count(*) as n from logs where gateway_id = ?${level ? ' and level = ?' : ''}`;
    const row = g.deps.db.$client.prepare(sql).get(...(level ? [gateway, level] : [gateway])) as {
      n: number;
    };
    return row.n;
  }

  function lastAuditId(): number {
    return g.deps.audit.recent(1)[0]?.id ?? 0;
  }

  function auditSince(id: number) {
    return g.deps.audit.recent(100).filter((row) => row.id > id);
  }

  /** Auth and gateway failures every gateway-scoped route answers the same way. */
  const accessCases: Array<{ name: string; opts: () => RequestOpts; status: number; code: string }> = [
    { name: 'no token', opts: () => ({ token: undefined }), status: 401, code: 'AUTH_REQUIRED' },
    {
      name: 'an expired token',
      opts: () => ({ token: tokens.expired }),
      status: 401,
      code: 'AUTH_TOKEN_EXPIRED',
    },
    {
      name: 'a forged token',
      opts: () => ({ token: tokens.forged }),
      status: 401,
      code: 'AUTH_INVALID_TOKEN',
    },
    { name: 'no X-Gateway-ID', opts: () => ({ gateway: null }), status: 400, code: 'GATEWAY_REQUIRED' },
    {
      name: 'an unknown gateway',
      opts: () => ({ gateway: 'GW-NOPE' }),
      status: 404,
      code: 'GATEWAY_NOT_FOUND',
    },
    {
      name: 'a token scoped to another gateway',
      opts: () => ({ token: tokens.adminOfB, gateway: GW_A }),
      status: 403,
      code: 'GATEWAY_FORBIDDEN',
    },
  ];

  describe.each([
    '/api/v1/ota/status',
    '/api/v1/ota/settings',
    '/api/v1/ota/logs?limit=5',
    '/api/v1/ota/monitor',
  ])('GET %s access', (path) => {
    it.each(accessCases)('should answer $name with $status $code', async ({ opts, status, code }) => {
      const res = await get(path, opts());
      expect(res.status).toBe(status);
      expect(res.body).toMatchObject({ success: false, error: { code }, message: expect.any(String) });
    });

    it('should serve a viewer, and an admin scoped to that gateway', async () => {
      expect((await get(path, { token: tokens.viewer })).status).toBe(200);
      const scoped = await get(path, { token: tokens.adminOfB, gateway: GW_B });
      expect(scoped.status).toBe(200);
      expect(scoped.body.success).toBe(true);
    });
  });

  describe('GET /api/v1/ota/status', () => {
    it('should return the gateway and both partitions in the documented shape', async () => {
      const res = await get('/api/v1/ota/status');
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        success: true,
        message: 'Gateway status retrieved successfully',
        data: {
          gateway: {
            model: 'Univa-GW-Pro',
            os_version: 'v5.0.4',
            kernel: '6.1.33-LTS',
            uptime: expect.stringMatching(/^\d+d \d+h \d+m$/),
            bootloader: 'U-Boot 2024.01',
            last_ota: null,
          },
          partitions: {
            active: {
              id: 'A',
              version: 'v5.0.4',
              status: 'healthy',
              size: '8GB',
              used: '1MB',
              booted: true,
              next_boot: true,
            },
            inactive: {
              id: 'B',
              version: 'v5.0.3',
              status: 'ready',
              size: '8GB',
              used: '1MB',
              booted: false,
              next_boot: false,
            },
            auto_rollback: true,
            rollback_retries: 3,
          },
          // Gantry's addition (issue 15): the installed components, rootfs only on a fresh gateway.
          components: [
            {
              name: 'rootfs',
              version: 'v5.0.4',
              handler: 'ab-slot',
              target: 'rootfs',
              slot: 'A',
              floor: 'v5.0.4',
              pending_version: null,
            },
          ],
        },
      });
    });

    it('should answer for the gateway named in X-Gateway-ID', async () => {
      const res = await get('/api/v1/ota/status', { gateway: GW_B });
      expect(res.body.data.gateway.model).toBe('Univa-GW-Lite');
    });

    it('should count uptime on the server clock', async () => {
      const saved = clock.now;
      clock.now = T0 + (2 * 86_400 + 3 * 3600 + 7 * 60) * 1000;
      try {
        expect((await get('/api/v1/ota/status')).body.data.gateway.uptime).toBe('2d 3h 7m');
      } finally {
        clock.now = saved;
      }
    });
  });

  describe('GET /api/v1/ota/settings', () => {
    it('should return the defaults with the gateway’s time zone', async () => {
      const res = await get('/api/v1/ota/settings');
      expect(res.status).toBe(200);
      expect(res.body.message).toBe('Update settings retrieved successfully');
      // toMatchObject: later features add their own sections (safety, …) to the same document.
      expect(res.body.data).toMatchObject({
        auto_update: { enabled: false, auto_download: true, auto_security: true, auto_reboot: false },
        maintenance_window: {
          enabled: true,
          schedule: 'daily',
          time: '02:00',
          day: 'sunday',
          duration_minutes: 120,
          timezone: 'UTC',
        },
        update_strategy: 'seamless',
        auto_rollback: true,
        rollback_retries: 3,
        auto_check: true,
        check_interval_hours: 6,
      });
      expect((await settingsOf(GW_B)).maintenance_window.timezone).toBe('Europe/Amsterdam');
    });
  });

  describe('GET /api/v1/ota/monitor', () => {
    it('should report idle with cpu_usage a number and memory_usage a "NN.N%" string', async () => {
      const res = await get('/api/v1/ota/monitor');
      expect(res.status).toBe(200);
      expect(res.body.message).toBe('Monitor status retrieved successfully');
      const data = res.body.data;
      expect(data).toMatchObject({
        system_status: 'idle',
        current_operation: 'none',
        last_update_check: null,
      });
      expect(typeof data.resources.cpu_usage).toBe('number');
      expect(data.resources.cpu_usage).toBeGreaterThanOrEqual(0);
      expect(data.resources.cpu_usage).toBeLessThanOrEqual(100);
      expect(data.resources.memory_usage).toMatch(/^\d{1,3}\.\d%$/);
      expect(parseFloat(data.resources.memory_usage)).toBeGreaterThan(0);
    });

    it('should compute next_check from the gateway’s registration and the check interval', async () => {
      const saved = clock.now;
      clock.now = T0 + 7 * 3_600_000;
      try {
        // Registered at T0, every 6 h: the next check after T0+7h is T0+12h.
        expect((await get('/api/v1/ota/monitor')).body.data.next_check).toBe('2025-03-15T22:00:00Z');
      } finally {
        clock.now = saved;
      }
    });
  });

  describe('POST /api/v1/ota/settings', () => {
    it('should save the spec’s example and answer the next maintenance window', async () => {
      const body = {
        auto_update: { auto_download: true, auto_security: true, auto_reboot: false },
        maintenance_window: { enabled: true, schedule: 'daily', time: '02:00' },
        update_strategy: 'seamless',
      };
      const before = lastAuditId();
      const res = await post('/api/v1/ota/settings', body);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        success: true,
        message: 'Settings updated successfully',
        data: { updated: true, next_maintenance_window: '2025-03-16T02:00:00Z' },
      });
      expect(auditSince(before)).toEqual([
        expect.objectContaining({
          action: 'settings.update',
          username: 'admin',
          gatewayId: GW_A,
          outcome: 'success',
        }),
      ]);
    });

    it('should compute the window in the gateway’s time zone', async () => {
      const res = await post(
        '/api/v1/ota/settings',
        { maintenance_window: { time: '02:00' } },
        { gateway: GW_B },
      );
      expect(res.status).toBe(200);
      // 02:00 in Amsterdam (CET, UTC+1) on 2025-03-16.
      expect(res.body.data.next_maintenance_window).toBe('2025-03-16T01:00:00Z');
    });

    it('should merge a partial update field by field and keep the rest', async () => {
      await post('/api/v1/ota/settings', { auto_update: { auto_reboot: true }, rollback_retries: 5 });
      const res = await post('/api/v1/ota/settings', { maintenance_window: { time: '03:30' } });
      expect(res.body.data.next_maintenance_window).toBe('2025-03-16T03:30:00Z');
      const doc = await settingsOf(GW_A);
      expect(doc.auto_update).toEqual({
        enabled: false,
        auto_download: true,
        auto_security: true,
        auto_reboot: true,
      });
      expect(doc.maintenance_window).toMatchObject({ enabled: true, schedule: 'daily', time: '03:30' });
      expect(doc.rollback_retries).toBe(5);
      expect((await get('/api/v1/ota/status')).body.data.partitions.rollback_retries).toBe(5);
    });

    it('should merge every nested section field by field, whichever sections exist', async () => {
      // Regression: a section missing from the service's merge list was replaced by the partial
      // object and its other fields silently reset to their defaults.
      const before = await settingsOf(GW_B);
      const sections = Object.entries(before).filter(
        ([, v]) =>
          typeof v === 'object' &&
          v !== null &&
          Object.values(v as object).filter((f) => typeof f === 'boolean').length >= 2,
      ) as Array<[string, Record<string, unknown>]>;
      expect(sections.map(([k]) => k)).toContain('auto_update');
      for (const [name, section] of sections) {
        const flags = Object.keys(section).filter((k) => typeof section[k] === 'boolean');
        const flipped = Object.fromEntries(flags.map((k) => [k, !section[k]]));
        const first = await post('/api/v1/ota/settings', { [name]: flipped }, { gateway: GW_B });
        expect(first.status, name).toBe(200);
        const [one] = flags;
        const second = await post(
          '/api/v1/ota/settings',
          { [name]: { [one!]: section[one!] } },
          { gateway: GW_B },
        );
        expect(second.status, name).toBe(200);
        const after = (await settingsOf(GW_B))[name];
        expect(after, name).toEqual({ ...section, ...flipped, [one!]: section[one!] });
        // Put the section back as it was for the tests that follow.
        await post(
          '/api/v1/ota/settings',
          { [name]: Object.fromEntries(flags.map((k) => [k, section[k]])) },
          { gateway: GW_B },
        );
      }
      expect(await settingsOf(GW_B)).toEqual(before);
    });

    it('should answer a weekly window on its day, and null for a disabled one', async () => {
      // 2025-03-15 is a Saturday.
      const weekly = await post('/api/v1/ota/settings', {
        maintenance_window: { schedule: 'weekly', day: 'wednesday', time: '04:00' },
      });
      expect(weekly.body.data.next_maintenance_window).toBe('2025-03-19T04:00:00Z');
      const off = await post('/api/v1/ota/settings', { maintenance_window: { enabled: false } });
      expect(off.body.data.next_maintenance_window).toBeNull();
      const on = await post('/api/v1/ota/settings', {
        maintenance_window: { enabled: true, schedule: 'daily' },
      });
      expect(on.body.data.next_maintenance_window).toBe('2025-03-16T04:00:00Z');
    });

    it('should compute the window from the server clock, moving to tomorrow once today’s passed', async () => {
      const saved = clock.now;
      clock.now = Date.parse('2025-03-16T05:00:00Z');
      try {
        const res = await post('/api/v1/ota/settings', { maintenance_window: { time: '02:00' } });
        expect(res.body.data.next_maintenance_window).toBe('2025-03-17T02:00:00Z');
      } finally {
        clock.now = saved;
      }
    });

    it('should keep the settings of each gateway apart', async () => {
      await post('/api/v1/ota/settings', { update_strategy: 'rolling' }, { gateway: GW_B });
      expect((await settingsOf(GW_B)).update_strategy).toBe('rolling');
      expect((await settingsOf(GW_A)).update_strategy).toBe('seamless');
    });

    it('should write an activity log entry', async () => {
      const before = logCount(GW_A);
      await post('/api/v1/ota/settings', { auto_check: true });
      expect(logCount(GW_A)).toBe(before + 1);
      const logs = await get('/api/v1/ota/logs?limit=1');
      expect(logs.body.data.logs[0]).toMatchObject({
        level: 'info',
        source: 'settings',
        message: 'Settings updated by admin',
      });
    });
  });

  describe('refused writes change nothing and are audited', () => {
    interface RefusedCase {
      name: string;
      path: '/api/v1/ota/settings' | '/api/v1/ota/auto-update';
      opts: () => RequestOpts;
      status: number;
      code: string;
      /** What the message must name (the field, for validation errors). */
      names?: RegExp;
      /** Refused before any procedure runs (the body never parsed): not in the audit trail. */
      beforeProcedure?: boolean;
    }

    const S = '/api/v1/ota/settings' as const;
    const A = '/api/v1/ota/auto-update' as const;
    const good = { [S]: { update_strategy: 'in-place' }, [A]: { enabled: true } };

    const cases: RefusedCase[] = [];
    for (const path of [S, A]) {
      const body = good[path];
      cases.push(
        {
          name: 'no token',
          path,
          opts: () => ({ token: undefined, body }),
          status: 401,
          code: 'AUTH_REQUIRED',
        },
        {
          name: 'an expired token',
          path,
          opts: () => ({ token: tokens.expired, body }),
          status: 401,
          code: 'AUTH_TOKEN_EXPIRED',
        },
        {
          name: 'a forged token',
          path,
          opts: () => ({ token: tokens.forged, body }),
          status: 401,
          code: 'AUTH_INVALID_TOKEN',
        },
        {
          name: 'no X-Gateway-ID',
          path,
          opts: () => ({ gateway: null, body }),
          status: 400,
          code: 'GATEWAY_REQUIRED',
        },
        {
          name: 'an unknown gateway',
          path,
          opts: () => ({ gateway: 'GW-NOPE', body }),
          status: 404,
          code: 'GATEWAY_NOT_FOUND',
        },
        {
          name: 'a token scoped to another gateway',
          path,
          opts: () => ({ token: tokens.adminOfB, gateway: GW_A, body }),
          status: 403,
          code: 'GATEWAY_FORBIDDEN',
        },
        {
          name: 'a viewer',
          path,
          opts: () => ({ token: tokens.viewer, body }),
          status: 403,
          code: 'FORBIDDEN',
        },
        {
          name: 'malformed JSON',
          path,
          opts: () => ({ rawBody: '{"update_strategy": "in-place",' }),
          status: 400,
          code: 'VALIDATION_ERROR',
          names: /JSON/,
          beforeProcedure: true,
        },
        {
          name: 'no body',
          path,
          opts: () => ({}),
          status: 400,
          code: 'VALIDATION_ERROR',
          names: /body/,
        },
        {
          name: 'a JSON array body',
          path,
          opts: () => ({ body: [body] }),
          status: 400,
          code: 'VALIDATION_ERROR',
          names: /body/,
        },
      );
    }
    cases.push(
      {
        name: 'an operator (settings are admin-only)',
        path: S,
        opts: () => ({ token: tokens.operator, body: good[S] }),
        status: 403,
        code: 'FORBIDDEN',
      },
      {
        name: 'a string where a number belongs',
        path: S,
        opts: () => ({ body: { rollback_retries: '5' } }),
        status: 400,
        code: 'VALIDATION_ERROR',
        names: /rollback_retries/,
      },
      {
        name: 'a number where a boolean belongs (nested)',
        path: S,
        opts: () => ({ body: { auto_update: { auto_reboot: 1 } } }),
        status: 400,
        code: 'VALIDATION_ERROR',
        names: /auto_update\.auto_reboot/,
      },
      {
        name: 'an unknown top-level field',
        path: S,
        opts: () => ({ body: { update_strategy: 'in-place', reboot_now: true } }),
        status: 400,
        code: 'VALIDATION_ERROR',
        names: /reboot_now/,
      },
      {
        name: 'an unknown nested field',
        path: S,
        opts: () => ({ body: { maintenance_window: { time: '04:00', timezone: 'Asia/Tokyo' } } }),
        status: 400,
        code: 'VALIDATION_ERROR',
        names: /maintenance_window\.timezone/,
      },
      {
        name: 'an impossible time',
        path: S,
        opts: () => ({ body: { maintenance_window: { time: '24:00' } } }),
        status: 400,
        code: 'VALIDATION_ERROR',
        names: /maintenance_window\.time/,
      },
      {
        name: 'an unknown strategy',
        path: S,
        opts: () => ({ body: { update_strategy: 'yolo' } }),
        status: 400,
        code: 'VALIDATION_ERROR',
        names: /update_strategy/,
      },
      {
        name: 'an out-of-range number',
        path: S,
        opts: () => ({ body: { rollback_retries: 11 } }),
        status: 400,
        code: 'VALIDATION_ERROR',
        names: /rollback_retries/,
      },
      {
        name: 'a string where a boolean belongs',
        path: A,
        opts: () => ({ body: { enabled: 'yes' } }),
        status: 400,
        code: 'VALIDATION_ERROR',
        names: /enabled/,
      },
      {
        name: 'a missing field',
        path: A,
        opts: () => ({ body: {} }),
        status: 400,
        code: 'VALIDATION_ERROR',
        names: /enabled/,
      },
      {
        name: 'an unknown field',
        path: A,
        opts: () => ({ body: { enabled: true, auto_check: false } }),
        status: 400,
        code: 'VALIDATION_ERROR',
        names: /auto_check/,
      },
    );

    it.each(cases.map((c) => [`${c.path} with ${c.name}`, c] as const))(
      'should refuse %s, changing nothing',
      async (_title, c) => {
        const before = { a: await settingsOf(GW_A), b: await settingsOf(GW_B), logs: logCount(GW_A) };
        const auditBefore = lastAuditId();

        const res = await g.request('POST', c.path, { token: tokens.admin, ...c.opts() });
        expect(res.status).toBe(c.status);
        expect(res.body.success).toBe(false);
        expect(res.body.error.code).toBe(c.code);
        if (c.names) expect(res.body.message).toMatch(c.names);
        if (c.code === 'VALIDATION_ERROR' && !c.beforeProcedure) {
          expect(res.body.error.details.fields.map((f: { field: string }) => f.field).join(' ')).toMatch(
            c.names ?? /./,
          );
        }

        const audit = auditSince(auditBefore);
        expect(audit.some((row) => row.outcome === 'success')).toBe(false);
        if (!c.beforeProcedure) {
          expect(audit).toHaveLength(1);
          expect(audit[0]).toMatchObject({
            action: c.path === S ? 'settings.update' : 'settings.setAutoUpdate',
            outcome: 'failure',
            detail: c.code,
          });
        }
        expect(await settingsOf(GW_A)).toEqual(before.a);
        expect(await settingsOf(GW_B)).toEqual(before.b);
        expect(logCount(GW_A)).toBe(before.logs);
      },
    );

    it('should refuse a body over the size limit with 413 PAYLOAD_TOO_LARGE', async () => {
      const before = await settingsOf(GW_A);
      const res = await post('/api/v1/ota/settings', {
        update_strategy: 'in-place',
        pad: 'x'.repeat(300 * 1024),
      });
      expect(res.status).toBe(413);
      expect(res.body.error.code).toBe('PAYLOAD_TOO_LARGE');
      expect(await settingsOf(GW_A)).toEqual(before);
    });
  });

  describe('POST /api/v1/ota/auto-update', () => {
    it('should let an operator switch auto-update on and off, touching nothing else', async () => {
      const before = await settingsOf(GW_A);
      const on = await post('/api/v1/ota/auto-update', { enabled: true }, { token: tokens.operator });
      expect(on.status).toBe(200);
      expect(on.body).toEqual({
        success: true,
        message: 'Auto-update enabled',
        data: { auto_update: true, auto_check_enabled: true },
      });
      const doc = await settingsOf(GW_A);
      expect(doc).toEqual({ ...before, auto_update: { ...before.auto_update, enabled: true } });
      expect((await get('/api/v1/ota/logs?limit=1')).body.data.logs[0].message).toMatch(
        /^Auto-update enabled by operator-/,
      );

      const off = await post('/api/v1/ota/auto-update', { enabled: false }, { token: tokens.operator });
      expect(off.body.message).toBe('Auto-update disabled');
      expect(off.body.data).toEqual({ auto_update: false, auto_check_enabled: true });
      expect((await settingsOf(GW_A)).auto_update.enabled).toBe(false);
    });

    it('should report auto_check_enabled false when both auto-update and periodic checks are off', async () => {
      await post('/api/v1/ota/settings', { auto_check: false }, { gateway: GW_B });
      const res = await post('/api/v1/ota/auto-update', { enabled: false }, { gateway: GW_B });
      expect(res.body.data).toEqual({ auto_update: false, auto_check_enabled: false });
      expect((await get('/api/v1/ota/monitor', { gateway: GW_B })).body.data.next_check).toBeNull();
    });
  });

  describe('GET /api/v1/ota/logs', () => {
    const entries: Array<['debug' | 'info' | 'warn' | 'error', string]> = [
      ['info', 'log-test 1'],
      ['warn', 'log-test 2'],
      ['error', 'log-test 3'],
      ['warn', 'log-test 4'],
      ['debug', 'log-test 5'],
    ];

    beforeAll(() => {
      for (const [i, [level, message]] of entries.entries()) {
        clock.now = T0 + 3_600_000 + i * 1000;
        g.deps.logs.write(GW_A, level, 'ota', message);
      }
      clock.now = T0;
    });

    it('should return entries newest first, with total counting every entry', async () => {
      const res = await get('/api/v1/ota/logs?limit=3');
      expect(res.status).toBe(200);
      expect(res.body.message).toBe('System logs retrieved successfully');
      expect(res.body.data.logs).toEqual([
        { timestamp: '2025-03-15T11:00:04Z', level: 'debug', source: 'ota', message: 'log-test 5' },
        { timestamp: '2025-03-15T11:00:03Z', level: 'warn', source: 'ota', message: 'log-test 4' },
        { timestamp: '2025-03-15T11:00:02Z', level: 'error', source: 'ota', message: 'log-test 3' },
      ]);
      expect(res.body.data.total).toBe(logCount(GW_A));
      expect(res.body.data.total).toBeGreaterThan(3);
    });

    it('should filter on exactly the given level, total = matching count', async () => {
      const res = await get('/api/v1/ota/logs?level=warn');
      expect(res.body.data.logs.map((l: { message: string }) => l.message)).toEqual([
        'log-test 4',
        'log-test 2',
      ]);
      expect(res.body.data.total).toBe(2);
      expect(logCount(GW_A, 'warn')).toBe(2);

      const one = await get('/api/v1/ota/logs?level=warn&limit=1');
      expect(one.body.data.logs).toHaveLength(1);
      expect(one.body.data.total).toBe(2);
    });

    it('should return 50 entries by default and at most 500', async () => {
      for (let i = 0; i < 60; i++) g.deps.logs.info(GW_A, 'bulk', `bulk ${i}`);
      const res = await get('/api/v1/ota/logs');
      expect(res.body.data.logs).toHaveLength(50);
      expect(res.body.data.logs[0].message).toBe('bulk 59');
      expect(res.body.data.total).toBe(logCount(GW_A));
      const all = await get('/api/v1/ota/logs?limit=500');
      expect(all.body.data.logs).toHaveLength(Math.min(500, logCount(GW_A)));
    });

    it('should never show another gateway’s entries', async () => {
      g.deps.logs.error(GW_B, 'ota', 'only on B');
      const a = await get('/api/v1/ota/logs?limit=500');
      expect(a.body.data.logs.some((l: { message: string }) => l.message === 'only on B')).toBe(false);
      const b = await get('/api/v1/ota/logs?level=error', { gateway: GW_B });
      expect(b.body.data.logs[0].message).toBe('only on B');
    });

    it.each([
      ['limit=0', /limit/],
      ['limit=501', /limit/],
      ['limit=-1', /limit/],
      ['limit=abc', /limit/],
      ['limit=2.5', /limit/],
      ['level=verbose', /level/],
      ['level=INFO', /level/],
      ['since=2025-01-01', /since/],
    ])('should answer ?%s with 400 VALIDATION_ERROR naming the parameter', async (query, names) => {
      const res = await get(`/api/v1/ota/logs?${query}`);
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('VALIDATION_ERROR');
      expect(res.body.message).toMatch(names);
    });
  });

  describe('API reference', () => {
    it('should serve an OpenAPI 3.1 document listing every REST route, without auth', async () => {
      const res = await g.request('GET', '/api/v1/openapi.json', { gateway: null });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/application\/json/);
      const doc = res.body;
      expect(doc.openapi).toBe('3.1.0');
      for (const route of restRouteTable()) {
        const op = doc.paths[route.openApiPath]?.[route.rest.method];
        expect(op, `${route.rest.method} ${route.openApiPath}`).toBeDefined();
        expect(op.responses['200']).toBeDefined();
      }
      for (const [method, path] of [
        ['post', '/api/v1/auth/login'],
        ['post', '/api/v1/auth/logout'],
        ['get', '/api/v1/ota/status'],
        ['get', '/api/v1/ota/settings'],
        ['post', '/api/v1/ota/settings'],
        ['post', '/api/v1/ota/auto-update'],
        ['get', '/api/v1/ota/logs'],
        ['get', '/api/v1/ota/monitor'],
      ] as const) {
        expect(doc.paths[path]?.[method], `${method} ${path}`).toBeDefined();
      }
      const status = doc.paths['/api/v1/ota/status'].get;
      expect(status.parameters).toContainEqual(
        expect.objectContaining({ name: 'X-Gateway-ID', in: 'header' }),
      );
      expect(status.responses['401']).toBeDefined();
      const logs = doc.paths['/api/v1/ota/logs'].get;
      expect(logs.parameters.map((p: { name: string }) => p.name)).toEqual(
        expect.arrayContaining(['limit', 'level']),
      );
      expect(doc.paths['/api/v1/ota/settings'].post.requestBody).toBeDefined();
      expect(doc.components.securitySchemes.cookieAuth).toMatchObject({
        in: 'cookie',
        name: 'session_token',
      });
    });

    it('should serve an HTML reference at /api/docs listing the routes', async () => {
      const res = await g.request('GET', '/api/docs', { gateway: null });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/text\/html/);
      expect(res.body).toMatch(/^<!DOCTYPE html>/i);
      for (const route of restRouteTable()) expect(res.body).toContain(route.openApiPath);
    });

    it('should answer an unknown API path with a 404 envelope', async () => {
      const res = await get('/api/v1/ota/nope');
      expect(res.status).toBe(404);
      expect(res.body).toMatchObject({ success: false, error: { code: 'NOT_FOUND' } });
    });
  });
});
