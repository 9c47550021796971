import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { currentWindow } from '../../services/scheduler.js';
import { GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { randomImage, startTestFeed, type TestFeed } from '../helpers/feed.js';
import { waitFor } from '../helpers/wait.js';

const at = (hh: number, mm: number) => Date.UTC(2026, 10, 26, hh, mm);

describe('currentWindow', () => {
  const window = {
    enabled: true,
    schedule: 'daily' as const,
    time: '02:00',
    day: 'sunday' as const,
    duration_minutes: 120,
  };
  it('should find the open daily window and nothing outside it', () => {
    expect(currentWindow(window, 'UTC', at(2, 30))).toEqual({ start: at(2, 0), end: at(4, 0) });
    expect(currentWindow(window, 'UTC', at(4, 0))).toBeNull();
    expect(currentWindow(window, 'UTC', at(1, 59))).toBeNull();
    expect(currentWindow({ ...window, enabled: false }, 'UTC', at(2, 30))).toBeNull();
  });
  it('should honour the gateway time zone', () => {
    // 02:00 in Amsterdam (UTC+1 in November) is 01:00 UTC.
    expect(currentWindow(window, 'Europe/Amsterdam', at(1, 30))).toEqual({ start: at(1, 0), end: at(3, 0) });
  });
});

describe('maintenance scheduler: auto-update inside the window', () => {
  let feed: TestFeed;
  let g: TestGantry;
  let token: string;
  let dataDir: string;
  let now = at(1, 0);
  const clock = () => now;

  beforeEach(async () => {
    now = at(1, 0);
    feed = await startTestFeed();
    await feed.publish(
      { version: 'v5.0.5', type: 'security', severity: 'critical' },
      randomImage(600 * 1024),
    );
    dataDir = tempDataDir();
    feed.trustIn(dataDir);
    g = await startTestGantry({ dataDir, env: feed.env, clock });
    token = await g.login();
    const res = await g.request('POST', '/api/v1/ota/settings', {
      token,
      body: {
        auto_update: { enabled: true, auto_download: true, auto_security: true, auto_reboot: true },
        maintenance_window: { enabled: true, schedule: 'daily', time: '02:00', duration_minutes: 120 },
      },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.data.next_maintenance_window).toBe('2026-11-26T02:00:00Z');
  });
  afterEach(async () => {
    await g?.stop();
    await feed.close();
  });

  const jobsOf = () => g.deps.jobs.recent(GATEWAY).filter((j) => j.kind === 'download');

  it('should download and install a critical update in the window, once, even across a restart', async () => {
    await g.deps.scheduler.runDue();
    expect(jobsOf()).toHaveLength(0); // outside the window nothing is downloaded

    now = at(2, 1);
    await g.deps.scheduler.runDue();
    const [job] = jobsOf();
    expect(job).toBeDefined();
    await waitFor(
      () => g.deps.jobs.get(job!.id)!.state,
      (s) => s === 'downloaded',
      'downloaded',
    );
    await g.deps.scheduler.runDue(); // installs (auto_security) with a reboot (auto_reboot)
    await waitFor(
      () => g.deps.jobs.get(job!.id)!.state,
      (s) => s === 'complete',
      'installed',
    );
    await waitFor(
      async () => (await g.request('GET', '/api/v1/ota/status', { token })).body.data.gateway.os_version,
      (v) => v === 'v5.0.5',
      'running v5.0.5',
    );
    await g.deps.scheduler.runDue();
    expect(g.deps.scheduler.runs(GATEWAY)[0]).toMatchObject({ jobId: job!.id });
    expect(g.deps.scheduler.runs(GATEWAY)[0]!.finishedAt).not.toBeNull();

    // Restart inside the same window: the finished window does not run again.
    await g.stop();
    now = at(2, 30);
    g = await startTestGantry({ dataDir, env: feed.env, clock });
    await g.deps.scheduler.runDue();
    expect(jobsOf()).toHaveLength(1);
  });

  it('should defer the install while the crane moves and install when it stops, inside the window', async () => {
    now = at(2, 1);
    await g.request('POST', '/api/v1/dev/simulator/sensors', { token, body: { crane_motion: 'moving' } });
    await waitFor(
      async () => (await g.request('GET', '/api/v1/ota/safety', { token })).body.data.update_allowed,
      (v) => v === false,
      'blocked',
    );
    await g.deps.scheduler.runDue(); // downloads may proceed while blocked
    const [job] = jobsOf();
    await waitFor(
      () => g.deps.jobs.get(job!.id)!.state,
      (s) => s === 'downloaded',
      'downloaded',
    );
    await g.deps.scheduler.runDue();
    expect(g.deps.jobs.get(job!.id)!.state).toBe('downloaded');
    const logs = await g.request('GET', '/api/v1/ota/logs?limit=100', { token });
    expect(
      logs.body.data.logs.some((l: { message: string }) => /deferred: OTA_UPDATE_BLOCKED/.test(l.message)),
    ).toBe(true);

    await g.request('POST', '/api/v1/dev/simulator/sensors', { token, body: { crane_motion: 'idle' } });
    await waitFor(
      async () => (await g.request('GET', '/api/v1/ota/safety', { token })).body.data.update_allowed,
      (v) => v === true,
      'clear',
    );
    now = at(2, 10);
    await g.deps.scheduler.runDue();
    await waitFor(
      () => g.deps.jobs.get(job!.id)!.state,
      (s) => s === 'complete',
      'installed',
    );
  });

  it('should install without a reboot when auto_reboot is off, close the window, and complete at the next reboot', async () => {
    const off = await g.request('POST', '/api/v1/ota/settings', {
      token,
      body: { auto_update: { auto_reboot: false } },
    });
    expect(off.status, JSON.stringify(off.body)).toBe(200);
    now = at(2, 1);
    await g.deps.scheduler.runDue();
    const [job] = jobsOf();
    await waitFor(
      () => g.deps.jobs.get(job!.id)!.state,
      (s) => s === 'downloaded',
      'downloaded',
    );
    await g.deps.scheduler.runDue();
    await waitFor(
      () => g.deps.jobs.get(job!.id)!.state,
      (s) => s === 'installed',
      'installed, waiting for a reboot',
    );
    await g.deps.scheduler.runDue();
    const run = g.deps.scheduler.runs(GATEWAY)[0]!;
    expect(run.finishedAt).not.toBeNull();
    expect(run.outcome).toBe('installed v5.0.5; active after the next reboot');

    const reboot = await g.request('POST', '/api/v1/dev/simulator/reboot', { token, body: {} });
    expect(reboot.status).toBe(200);
    await waitFor(
      () => g.deps.jobs.get(job!.id)!.state,
      (s) => s === 'complete',
      'complete after the reboot',
    );
  });

  it('should only download (not install) a non-security update, and leave it for an operator', async () => {
    await feed.publish({ version: 'v5.0.6', type: 'feature', severity: 'medium' }, randomImage(300 * 1024));
    now = at(2, 1);
    await g.deps.scheduler.runDue();
    const [job] = jobsOf();
    await waitFor(
      () => g.deps.jobs.get(job!.id)!.state,
      (s) => s === 'downloaded',
      'downloaded',
    );
    await g.deps.scheduler.runDue();
    expect(g.deps.jobs.get(job!.id)!.state).toBe('downloaded');
    expect(g.deps.scheduler.runs(GATEWAY)[0]!.outcome).toMatch(/waiting for an operator/);
  });
});
