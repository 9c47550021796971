import { describe, expect, it } from 'vitest';
import { createActor, type Snapshot } from 'xstate';
import { GantryError, type ErrorCode } from '../../core/errors.js';
import { restoreOptions } from '../../machines/persist.js';
import {
  errorCodeOf,
  isFinalJobState,
  jobPercentage,
  jobStateName,
  updateJobMachine,
  type UpdateJobContext,
  type UpdateJobEvent,
} from '../../machines/update-job.js';
import { flush, JOB_INPUT, JobHarness } from './job-harness.js';

type JobActor = ReturnType<JobHarness['start']>;

const INSTALL_OK = {
  type: 'INSTALL',
  at: 5_000,
  strategy: 'seamless',
  rebootAfter: true,
  createSnapshot: false,
  blocking: [],
} as const satisfies UpdateJobEvent;

/** Drives a fresh job to `downloaded` through the fakes. */
async function toDownloaded(h: JobHarness): Promise<JobActor> {
  const actor = h.start();
  actor.send({ type: 'START', at: 2_000 });
  h.liveTransfer().sendBack({ type: 'PROGRESS', bytesDone: 500, speedBps: 100, at: 2_500 });
  h.liveTransfer().sendBack({ type: 'TRANSFER_DONE', at: 3_000 });
  JobHarness.last(h.verifies).done.resolve({ at: 4_000 });
  await flush();
  expect(jobStateName(actor.getSnapshot())).toBe('downloaded');
  return actor;
}

async function toInstalled(h: JobHarness): Promise<JobActor> {
  const actor = await toPreparing(h, false);
  h.installs[0]!.done.resolve({ at: 6_500 });
  await flush();
  expect(jobStateName(actor.getSnapshot())).toBe('installed');
  return actor;
}

async function toPreparing(h: JobHarness, rebootAfter = true): Promise<JobActor> {
  const actor = await toDownloaded(h);
  actor.send({ ...INSTALL_OK, rebootAfter });
  expect(actor.getSnapshot().value).toEqual({ installing: 'preparing' });
  return actor;
}

function roundTrip(actor: JobActor): Snapshot<unknown> {
  return JSON.parse(JSON.stringify(actor.getPersistedSnapshot())) as Snapshot<unknown>;
}

describe('updateJobMachine: happy path', () => {
  it('should start pending with the input and empty progress', () => {
    const actor = new JobHarness().start();
    const snap = actor.getSnapshot();
    expect(snap.value).toBe('pending');
    expect(snap.context).toMatchObject({
      ...JOB_INPUT,
      bytesDone: 0,
      speedBps: 0,
      etaSeconds: null,
      startedAt: null,
      updatedAt: JOB_INPUT.createdAt,
      finishedAt: null,
      errorCode: null,
      errorMessage: null,
      progressAtCancel: null,
      cancelReason: null,
      install: null,
      blockedBy: [],
    });
    expect(jobPercentage(snap.context)).toBe(0);
  });

  it('should download, verify, install, reboot and complete', async () => {
    const h = new JobHarness();
    const actor = h.start();

    actor.send({ type: 'START', at: 2_000 });
    expect(actor.getSnapshot().value).toBe('downloading');
    expect(actor.getSnapshot().context.startedAt).toBe(2_000);
    expect(h.transfers).toHaveLength(1);
    expect(h.liveTransfer().input).toEqual({
      jobId: 'job-1',
      targetSlot: 'B',
      offset: 0,
      totalBytes: 1000,
      resumed: false,
    });

    h.liveTransfer().sendBack({ type: 'PROGRESS', bytesDone: 333, speedBps: 100, at: 2_100 });
    let ctx = actor.getSnapshot().context;
    expect(ctx).toMatchObject({ bytesDone: 333, speedBps: 100, etaSeconds: 7, updatedAt: 2_100 });
    expect(jobPercentage(ctx)).toBe(33.3);
    expect(h.emitted).toContainEqual({
      type: 'progress',
      jobId: 'job-1',
      bytesDone: 333,
      totalBytes: 1000,
      percentage: 33.3,
      speedBps: 100,
      etaSeconds: 7,
      at: 2_100,
    });

    h.liveTransfer().sendBack({ type: 'TRANSFER_DONE', at: 3_000 });
    expect(actor.getSnapshot().value).toBe('verifying');
    ctx = actor.getSnapshot().context;
    expect(ctx).toMatchObject({ bytesDone: 1000, speedBps: 0, etaSeconds: null, downloadedAt: 3_000 });
    expect(jobPercentage(ctx)).toBe(100);
    expect(h.transfers[0]!.stopped).toBe(true);
    expect(h.verifies).toHaveLength(1);
    expect(h.verifies[0]!.input).toEqual({ jobId: 'job-1', targetSlot: 'B', resumed: false });

    h.verifies[0]!.done.resolve({ at: 4_000 });
    await flush();
    expect(actor.getSnapshot().value).toBe('downloaded');
    expect(actor.getSnapshot().context.updatedAt).toBe(4_000);

    actor.send(INSTALL_OK);
    expect(actor.getSnapshot().value).toEqual({ installing: 'preparing' });
    expect(jobStateName(actor.getSnapshot())).toBe('installing');
    expect(h.installs[0]!.input).toEqual({
      jobId: 'job-1',
      targetSlot: 'B',
      install: { strategy: 'seamless', rebootAfter: true, createSnapshot: false },
      resumed: false,
    });

    h.installs[0]!.done.resolve({ at: 6_000 });
    await flush();
    // Nothing blocks the reboot: awaiting_reboot is left in the same step.
    expect(actor.getSnapshot().value).toEqual({ installing: 'rebooting' });
    expect(h.reboots).toHaveLength(1);
    expect(h.reboots[0]!.input).toEqual({ jobId: 'job-1', targetSlot: 'B', resumed: false });

    h.reboots[0]!.done.resolve({ at: 7_000 });
    await flush();
    // Back from the reboot, not done yet: the new slot must pass its health check first.
    expect(actor.getSnapshot().value).toEqual({ installing: 'activating' });
    expect(actor.getSnapshot().context).toMatchObject({
      installedAt: 6_000,
      updatedAt: 7_000,
      finishedAt: null,
    });
    expect(actor.getSnapshot().can({ type: 'CANCEL', reason: 'x', at: 7_100 })).toBe(false);

    actor.send({ type: 'COMMITTED', at: 7_500 });
    const done = actor.getSnapshot();
    expect(done.value).toBe('complete');
    expect(done.status).toBe('done');
    expect(done.context).toMatchObject({ finishedAt: 7_500, updatedAt: 7_500, errorCode: null });
    expect(jobPercentage(done.context)).toBe(100);
    expect(h.invalidations).toEqual([]);
  });

  // Regression (issue 11.2): `reboot_after: false` reported `complete` while the old slot still ran,
  // and stayed `complete` when the new slot later failed its boots.
  it('should wait in installed when no reboot is asked for, not complete', async () => {
    const h = new JobHarness();
    const actor = await toPreparing(h, false);
    h.installs[0]!.done.resolve({ at: 6_500 });
    await flush();
    const snap = actor.getSnapshot();
    expect(snap.value).toEqual({ installing: 'installed' });
    expect(jobStateName(snap)).toBe('installed');
    expect(snap.status).toBe('active');
    expect(snap.context).toMatchObject({ installedAt: 6_500, finishedAt: null, errorCode: null });
    expect(h.reboots).toHaveLength(0);
    // Past the point of no return: the slot is staged.
    expect(snap.can({ type: 'CANCEL', reason: 'x', at: 6_600 })).toBe(false);
    // Nothing else moves it: no install, no reboot of its own.
    actor.send({ ...INSTALL_OK, at: 6_700 });
    actor.send({ type: 'RESUME', at: 6_800 });
    actor.send({ type: 'SAFETY_CHANGED', blocking: [], at: 6_900 });
    expect(actor.getSnapshot().value).toEqual({ installing: 'installed' });
    expect(h.reboots).toHaveLength(0);
  });

  it('should complete an installed job once the rebooted gateway commits the new slot', async () => {
    const h = new JobHarness();
    const actor = await toInstalled(h);
    actor.send({ type: 'TRIAL_STARTED', at: 8_000 });
    expect(jobStateName(actor.getSnapshot())).toBe('activating');
    actor.send({ type: 'TRIAL_STARTED', at: 8_100 }); // a retried trial boot changes nothing
    expect(jobStateName(actor.getSnapshot())).toBe('activating');
    actor.send({ type: 'COMMITTED', at: 9_000 });
    expect(actor.getSnapshot().value).toBe('complete');
    expect(actor.getSnapshot().context).toMatchObject({ finishedAt: 9_000, errorCode: null });
    expect(h.reboots).toHaveLength(0);
  });

  it('should complete from installed directly when the commit is the first thing it hears (restart)', async () => {
    const h = new JobHarness();
    const actor = await toInstalled(h);
    actor.send({ type: 'COMMITTED', at: 9_000 });
    expect(actor.getSnapshot().value).toBe('complete');
  });

  it('should compute the ETA from remaining bytes and speed, null when the speed is 0', () => {
    const h = new JobHarness();
    const actor = h.start();
    actor.send({ type: 'START', at: 2_000 });
    h.liveTransfer().sendBack({ type: 'PROGRESS', bytesDone: 100, speedBps: 0, at: 2_001 });
    expect(actor.getSnapshot().context.etaSeconds).toBeNull();
    h.liveTransfer().sendBack({ type: 'PROGRESS', bytesDone: 100, speedBps: 400, at: 2_002 });
    expect(actor.getSnapshot().context.etaSeconds).toBe(3); // 900 / 400 = 2.25, rounded up
    h.liveTransfer().sendBack({ type: 'PROGRESS', bytesDone: 5000, speedBps: 400, at: 2_003 });
    expect(actor.getSnapshot().context).toMatchObject({ bytesDone: 1000, etaSeconds: 0 });
  });
});

describe('updateJobMachine: safety gating', () => {
  it('should refuse INSTALL while something blocks it, stay downloaded and emit install_blocked', async () => {
    const h = new JobHarness();
    const actor = await toDownloaded(h);
    actor.send({ ...INSTALL_OK, at: 4_500, blocking: ['crane_moving', 'ups_low'] });
    expect(actor.getSnapshot().value).toBe('downloaded');
    expect(actor.getSnapshot().context.blockedBy).toEqual(['crane_moving', 'ups_low']);
    expect(actor.getSnapshot().context.install).toBeNull();
    expect(h.installs).toHaveLength(0);
    expect(h.emitted).toContainEqual({
      type: 'install_blocked',
      jobId: 'job-1',
      blocking: ['crane_moving', 'ups_low'],
      at: 4_500,
    });

    actor.send(INSTALL_OK);
    expect(jobStateName(actor.getSnapshot())).toBe('installing');
    expect(actor.getSnapshot().context.blockedBy).toEqual([]);
  });

  it('should wait in awaiting_reboot while safety blocks the reboot, then reboot once clear', async () => {
    const h = new JobHarness();
    const actor = await toPreparing(h);
    actor.send({ type: 'SAFETY_CHANGED', blocking: ['crane_moving'], at: 5_500 });
    h.installs[0]!.done.resolve({ at: 6_000 });
    await flush();
    expect(actor.getSnapshot().value).toEqual({ installing: 'awaiting_reboot' });
    expect(jobStateName(actor.getSnapshot())).toBe('awaiting_reboot');
    expect(h.reboots).toHaveLength(0);

    actor.send({ type: 'SAFETY_CHANGED', blocking: ['crane_moving', 'acs_collision'], at: 6_100 });
    expect(jobStateName(actor.getSnapshot())).toBe('awaiting_reboot');
    expect(actor.getSnapshot().context.blockedBy).toEqual(['crane_moving', 'acs_collision']);

    actor.send({ type: 'SAFETY_CHANGED', blocking: [], at: 6_200 });
    expect(jobStateName(actor.getSnapshot())).toBe('rebooting');
    expect(h.reboots).toHaveLength(1);
  });

  it('should keep blockedBy current in every non-final state', () => {
    const h = new JobHarness();
    const actor = h.start();
    actor.send({ type: 'SAFETY_CHANGED', blocking: ['network_down'], at: 1_500 });
    expect(actor.getSnapshot().context.blockedBy).toEqual(['network_down']);
    actor.send({ type: 'START', at: 2_000 });
    actor.send({ type: 'SAFETY_CHANGED', blocking: [], at: 2_500 });
    expect(actor.getSnapshot().context).toMatchObject({ blockedBy: [], updatedAt: 2_500 });
  });
});

describe('updateJobMachine: errors', () => {
  it('should fail with the code the transfer reports and invalidate the target', () => {
    const h = new JobHarness();
    const actor = h.start();
    actor.send({ type: 'START', at: 2_000 });
    h.liveTransfer().sendBack({ type: 'PROGRESS', bytesDone: 250, speedBps: 10, at: 2_100 });
    h.liveTransfer().sendBack({
      type: 'TRANSFER_FAILED',
      code: 'OTA_INSUFFICIENT_SPACE',
      message: 'disk full',
      at: 2_200,
    });
    const snap = actor.getSnapshot();
    expect(snap.value).toBe('error');
    expect(snap.status).toBe('done');
    expect(snap.context).toMatchObject({
      errorCode: 'OTA_INSUFFICIENT_SPACE',
      errorMessage: 'disk full',
      finishedAt: 2_200,
      bytesDone: 250,
    });
    expect(jobPercentage(snap.context)).toBe(25);
    expect(h.invalidations).toEqual([{ jobId: 'job-1', targetSlot: 'B', reason: 'failed' }]);
    expect(h.transfers[0]!.stopped).toBe(true);
  });

  it.each([
    ['a GantryError code', new GantryError('OTA_SIGNATURE_FAILED', 'bad signature'), 'OTA_SIGNATURE_FAILED'],
    ['a plain Error (default code)', new Error('mismatch'), 'OTA_INVALID_IMAGE'],
    ['an unknown gantryCode (default code)', { gantryCode: 'NOPE', message: 'x' }, 'OTA_INVALID_IMAGE'],
    ['a non-object rejection (default code)', 'boom', 'OTA_INVALID_IMAGE'],
  ] as const)('should fail verification with %s', async (_name, error, code) => {
    const h = new JobHarness();
    const actor = h.start();
    actor.send({ type: 'START', at: 2_000 });
    h.liveTransfer().sendBack({ type: 'TRANSFER_DONE', at: 3_000 });
    h.verifies[0]!.done.reject(error);
    await flush();
    expect(actor.getSnapshot().value).toBe('error');
    expect(actor.getSnapshot().context.errorCode).toBe(code);
    expect(actor.getSnapshot().context.finishedAt).toBe(3_000);
    expect(h.invalidations).toEqual([{ jobId: 'job-1', targetSlot: 'B', reason: 'failed' }]);
  });

  it('should take the error time from a rejection that carries `at`', async () => {
    const h = new JobHarness();
    const actor = h.start();
    actor.send({ type: 'START', at: 2_000 });
    h.liveTransfer().sendBack({ type: 'TRANSFER_DONE', at: 3_000 });
    h.verifies[0]!.done.reject(Object.assign(new Error('late'), { at: 3_900 }));
    await flush();
    expect(actor.getSnapshot().context).toMatchObject({ finishedAt: 3_900, errorMessage: 'late' });
  });

  it('should fail the download when the transfer actor crashes (here: the unprovided placeholder)', () => {
    const actor = createActor(updateJobMachine, { input: JOB_INPUT }).start();
    actor.send({ type: 'START', at: 2_000 });
    expect(actor.getSnapshot().value).toBe('error');
    expect(actor.getSnapshot().context.errorCode).toBe('INTERNAL_ERROR');
    expect(actor.getSnapshot().context.errorMessage).toMatch(/transferImage is not provided/);
  });

  it('should fail installation with OTA_INSTALL_FAILED by default and invalidate the target', async () => {
    const h = new JobHarness();
    const actor = await toPreparing(h);
    h.installs[0]!.done.reject(new Error('dd failed'));
    await flush();
    expect(actor.getSnapshot().value).toBe('error');
    expect(actor.getSnapshot().context).toMatchObject({
      errorCode: 'OTA_INSTALL_FAILED',
      errorMessage: 'dd failed',
    });
    expect(h.invalidations).toEqual([{ jobId: 'job-1', targetSlot: 'B', reason: 'failed' }]);
  });

  it('should fail the reboot with OTA_INSTALL_FAILED and keep the installed slot', async () => {
    const h = new JobHarness();
    const actor = await toPreparing(h);
    h.installs[0]!.done.resolve({ at: 6_000 });
    await flush();
    h.reboots[0]!.done.reject(new GantryError('OTA_UPDATE_BLOCKED', 'interlock'));
    await flush();
    expect(actor.getSnapshot().value).toBe('error');
    expect(actor.getSnapshot().context.errorCode).toBe('OTA_UPDATE_BLOCKED');
    expect(h.invalidations).toEqual([]);

    const h2 = new JobHarness();
    const actor2 = await toPreparing(h2);
    h2.installs[0]!.done.resolve({ at: 6_000 });
    await flush();
    h2.reboots[0]!.done.reject(new Error('reboot refused'));
    await flush();
    expect(actor2.getSnapshot().context.errorCode).toBe('OTA_INSTALL_FAILED');
  });

  it.each(['installed', 'activating', 'awaiting_reboot'] as const)(
    'should end in OTA_INSTALL_FAILED from %s when the new slot will not run, keeping the slot',
    async (state) => {
      const h = new JobHarness();
      const actor = await driveTo(h, state);
      actor.send({
        type: 'ACTIVATION_FAILED',
        message: 'Slot B did not boot: the bootloader went back to slot A',
        at: 9_000,
      });
      const snap = actor.getSnapshot();
      expect(snap.value).toBe('error');
      expect(snap.context).toMatchObject({
        errorCode: 'OTA_INSTALL_FAILED',
        errorMessage: 'Slot B did not boot: the bootloader went back to slot A',
        finishedAt: 9_000,
      });
      // The partition manager retires a slot that failed its trial; the job does not touch it.
      expect(h.invalidations).toEqual([]);
    },
  );

  it('should take no boot outcome while its own reboot runs (history always shows activating)', async () => {
    const h = new JobHarness();
    const actor = await driveTo(h, 'rebooting');
    for (const event of [
      { type: 'TRIAL_STARTED', at: 8_000 },
      { type: 'COMMITTED', at: 8_100 },
      { type: 'ACTIVATION_FAILED', message: 'x', at: 8_200 },
    ] as const) {
      expect(actor.getSnapshot().can(event)).toBe(false);
      actor.send(event);
    }
    expect(jobStateName(actor.getSnapshot())).toBe('rebooting');
    h.reboots[0]!.done.resolve({ at: 8_500 });
    await flush();
    expect(jobStateName(actor.getSnapshot())).toBe('activating');
  });

  it('should leave awaiting_reboot for activating when the gateway was rebooted by someone else', async () => {
    const h = new JobHarness();
    const actor = await driveTo(h, 'awaiting_reboot');
    actor.send({ type: 'TRIAL_STARTED', at: 8_000 });
    expect(jobStateName(actor.getSnapshot())).toBe('activating');
    // Safety clearing now does not reboot again: the new slot already runs.
    actor.send({ type: 'SAFETY_CHANGED', blocking: [], at: 8_100 });
    expect(jobStateName(actor.getSnapshot())).toBe('activating');
    expect(h.reboots).toHaveLength(0);
  });

  it.each(['pending', 'downloading', 'verifying', 'downloaded', 'installing'] as const)(
    'should refuse boot outcomes in %s (nothing staged yet)',
    async (state) => {
      const h = new JobHarness();
      const actor = await driveTo(h, state);
      const before = actor.getSnapshot();
      for (const event of [
        { type: 'TRIAL_STARTED', at: 8_000 },
        { type: 'COMMITTED', at: 8_100 },
        { type: 'ACTIVATION_FAILED', message: 'x', at: 8_200 },
      ] as const) {
        expect(before.can(event)).toBe(false);
        actor.send(event);
      }
      expect(actor.getSnapshot().value).toEqual(before.value);
      expect(actor.getSnapshot().context).toEqual(before.context);
    },
  );

  it.each([
    ['pending', false],
    ['downloading', true],
    ['verifying', true],
    ['downloaded', false],
    ['installing', true],
    ['awaiting_reboot', false],
    ['rebooting', false],
    ['installed', false],
    ['activating', false],
  ] as const)('should accept FAIL in %s (invalidates the target: %s)', async (state, invalidates) => {
    const h = new JobHarness();
    const actor = await driveTo(h, state);
    expect(jobStateName(actor.getSnapshot())).toBe(state);
    actor.send({ type: 'FAIL', code: 'INTERNAL_ERROR', message: 'service shutting down', at: 9_000 });
    const snap = actor.getSnapshot();
    expect(snap.value).toBe('error');
    expect(snap.context).toMatchObject({
      errorCode: 'INTERNAL_ERROR',
      errorMessage: 'service shutting down',
      finishedAt: 9_000,
    });
    expect(h.invalidations).toEqual(
      invalidates ? [{ jobId: 'job-1', targetSlot: 'B', reason: 'failed' }] : [],
    );
    // Every invoked actor was stopped (aborted) on the way out.
    expect(h.transfers.every((t) => t.stopped)).toBe(true);
    if (state === 'verifying') expect(h.verifies[0]!.signal.aborted).toBe(true);
    if (state === 'installing') expect(h.installs[0]!.signal.aborted).toBe(true);
    if (state === 'rebooting') expect(h.reboots[0]!.signal.aborted).toBe(true);
  });

  it('should fail loudly (INTERNAL_ERROR) when a promise actor is not provided', async () => {
    const actor = createActor(
      updateJobMachine.provide({
        actors: { transferImage: new JobHarness().machine.implementations.actors.transferImage as never },
      }),
      { input: JOB_INPUT },
    ).start();
    actor.send({ type: 'START', at: 2_000 });
    actor.send({ type: 'TRANSFER_DONE', at: 3_000 });
    await flush();
    expect(actor.getSnapshot().value).toBe('error');
    expect(actor.getSnapshot().context.errorCode).toBe('INTERNAL_ERROR');
  });

  it('should accept no event once final (and say so through can())', async () => {
    const h = new JobHarness();
    const actor = h.start();
    actor.send({ type: 'FAIL', code: 'INTERNAL_ERROR', message: 'x', at: 1_500 });
    const before = actor.getSnapshot();
    for (const event of [
      { type: 'START', at: 1 },
      { type: 'SAFETY_CHANGED', blocking: ['x'], at: 2 },
      { type: 'CANCEL', reason: 'r', at: 3 },
      { type: 'RESUME', at: 4 },
      { type: 'FAIL', code: 'INTERNAL_ERROR', message: 'again', at: 5 },
    ] as const satisfies readonly UpdateJobEvent[]) {
      expect(before.can(event)).toBe(false);
    }
    expect(before.status).toBe('done');
  });

  it('should read the error code off a rejection', () => {
    expect(errorCodeOf(new GantryError('OTA_DOWNLOAD_FAILED', 'x'), 'OTA_INVALID_IMAGE')).toBe(
      'OTA_DOWNLOAD_FAILED',
    );
    expect(errorCodeOf(undefined, 'OTA_INVALID_IMAGE')).toBe('OTA_INVALID_IMAGE');
    expect(errorCodeOf(null, 'OTA_INSTALL_FAILED')).toBe('OTA_INSTALL_FAILED');
    expect(errorCodeOf({ gantryCode: 'toString' }, 'OTA_INSTALL_FAILED')).toBe('OTA_INSTALL_FAILED');
  });
});

/** Brings a job to the named state through the fakes. */
async function driveTo(
  h: JobHarness,
  state:
    | 'pending'
    | 'downloading'
    | 'verifying'
    | 'downloaded'
    | 'installing'
    | 'awaiting_reboot'
    | 'rebooting'
    | 'installed'
    | 'activating',
): Promise<JobActor> {
  if (state === 'installed') return toInstalled(h);
  if (state === 'activating') {
    const actor = await toInstalled(h);
    actor.send({ type: 'TRIAL_STARTED', at: 7_000 });
    return actor;
  }
  if (state === 'pending') return h.start();
  if (state === 'downloading') {
    const actor = h.start();
    actor.send({ type: 'START', at: 2_000 });
    h.liveTransfer().sendBack({ type: 'PROGRESS', bytesDone: 333, speedBps: 100, at: 2_100 });
    return actor;
  }
  if (state === 'verifying') {
    const actor = h.start();
    actor.send({ type: 'START', at: 2_000 });
    h.liveTransfer().sendBack({ type: 'TRANSFER_DONE', at: 3_000 });
    return actor;
  }
  if (state === 'downloaded') return toDownloaded(h);
  const actor = await toPreparing(h);
  if (state === 'installing') return actor;
  if (state === 'awaiting_reboot')
    actor.send({ type: 'SAFETY_CHANGED', blocking: ['crane_moving'], at: 5_500 });
  h.installs[0]!.done.resolve({ at: 6_000 });
  await flush();
  return actor;
}

describe('updateJobMachine: cancel', () => {
  it.each([
    ['pending', 0, false],
    ['downloading', 33.3, true],
    ['verifying', 100, true],
    ['downloaded', 100, true],
  ] as const)('should cancel in %s, recording %s%% and the reason', async (state, percent, invalidates) => {
    const h = new JobHarness();
    const actor = await driveTo(h, state);
    const cancel = { type: 'CANCEL', reason: 'operator request', at: 8_000 } as const;
    expect(actor.getSnapshot().can(cancel)).toBe(true);
    actor.send(cancel);
    const snap = actor.getSnapshot();
    expect(snap.value).toBe('cancelled');
    expect(snap.status).toBe('done');
    expect(snap.context).toMatchObject({
      progressAtCancel: percent,
      cancelReason: 'operator request',
      finishedAt: 8_000,
    });
    expect(h.invalidations).toEqual(
      invalidates ? [{ jobId: 'job-1', targetSlot: 'B', reason: 'cancelled' }] : [],
    );
    expect(h.transfers.every((t) => t.stopped)).toBe(true);
  });

  it.each(['installing', 'awaiting_reboot', 'rebooting', 'installed', 'activating'] as const)(
    'should refuse CANCEL in %s (past the point of no return)',
    async (state) => {
      const h = new JobHarness();
      const actor = await driveTo(h, state);
      const before = actor.getSnapshot();
      const cancel = { type: 'CANCEL', reason: 'operator request', at: 8_000 } as const;
      expect(before.can(cancel)).toBe(false);
      actor.send(cancel);
      expect(actor.getSnapshot().value).toEqual(before.value);
      expect(actor.getSnapshot().context).toEqual(before.context);
      expect(h.invalidations).toEqual([]);
    },
  );
});

describe('updateJobMachine: helpers', () => {
  const ctx = (over: Partial<UpdateJobContext>): UpdateJobContext => ({
    ...createActor(updateJobMachine, { input: JOB_INPUT }).getSnapshot().context,
    ...over,
  });

  it('should give the download percentage with one decimal, rounded down', () => {
    expect(jobPercentage(ctx({ bytesDone: 0 }))).toBe(0);
    expect(jobPercentage(ctx({ bytesDone: 1 }))).toBe(0.1);
    expect(jobPercentage(ctx({ bytesDone: 999 }))).toBe(99.9);
    expect(jobPercentage(ctx({ totalBytes: 3, bytesDone: 2 }))).toBe(66.6);
    expect(jobPercentage(ctx({ totalBytes: 100, bytesDone: 57 }))).toBe(57);
    expect(jobPercentage(ctx({ totalBytes: 10_000, bytesDone: 9_999 }))).toBe(99.9);
    expect(jobPercentage(ctx({ bytesDone: 2_000 }))).toBe(100);
    expect(jobPercentage(ctx({ totalBytes: 0, bytesDone: 0 }))).toBe(0);
    expect(jobPercentage(ctx({ totalBytes: 0, downloadedAt: 5 }))).toBe(100);
    expect(jobPercentage(ctx({ bytesDone: 10, downloadedAt: 5 }))).toBe(100);
  });

  it('should flatten every state name', () => {
    expect(jobStateName({ value: 'pending' })).toBe('pending');
    expect(jobStateName({ value: { installing: 'preparing' } })).toBe('installing');
    expect(jobStateName({ value: { installing: 'awaiting_reboot' } })).toBe('awaiting_reboot');
    expect(jobStateName({ value: { installing: 'rebooting' } })).toBe('rebooting');
    expect(jobStateName({ value: { installing: 'installed' } })).toBe('installed');
    expect(jobStateName({ value: { installing: 'activating' } })).toBe('activating');
    expect(isFinalJobState('installed')).toBe(false);
    expect(isFinalJobState('activating')).toBe(false);
    expect(jobStateName({ value: 'cancelled' })).toBe('cancelled');
    expect(isFinalJobState('complete')).toBe(true);
    expect(isFinalJobState('awaiting_reboot')).toBe(false);
  });
});

describe('updateJobMachine: persistence and RESUME', () => {
  it('should pin what XState does on restore: it restarts an in-flight child with its first input', async () => {
    const h = new JobHarness();
    const actor = h.start();
    actor.send({ type: 'START', at: 2_000 });
    h.liveTransfer().sendBack({ type: 'PROGRESS', bytesDone: 400, speedBps: 100, at: 2_100 });
    const persisted = roundTrip(actor);
    actor.stop();

    // Without prepareForRestore: the restored transfer starts by itself from offset 0 (stale input),
    // and RESUME then starts another: two starts. This is why prepareForRestore exists.
    const h2 = new JobHarness();
    const raw = h2.listen(createActor(h2.machine, { snapshot: persisted, input: undefined }).start());
    expect(h2.transfers.map((t) => t.input.offset)).toEqual([0]);
    raw.send({ type: 'RESUME', at: 3_000 });
    expect(h2.transfers).toHaveLength(2);
    expect(h2.transfers[0]!.stopped).toBe(true);
    raw.stop();
  });

  it('should resume a download from bytesDone, starting the transfer exactly once', async () => {
    const h = new JobHarness();
    const actor = h.start();
    actor.send({ type: 'START', at: 2_000 });
    h.liveTransfer().sendBack({ type: 'PROGRESS', bytesDone: 400, speedBps: 100, at: 2_100 });
    const persisted = roundTrip(actor);
    actor.stop();
    expect(h.transfers[0]!.stopped).toBe(true);

    const h2 = new JobHarness();
    const restored = h2.listen(createActor(h2.machine, restoreOptions(persisted)).start());
    expect(restored.getSnapshot().value).toBe('downloading');
    expect(restored.getSnapshot().context.bytesDone).toBe(400);
    expect(h2.transfers).toHaveLength(0);

    restored.send({ type: 'RESUME', at: 3_000 });
    expect(h2.transfers).toHaveLength(1);
    expect(h2.liveTransfer().input).toEqual({
      jobId: 'job-1',
      targetSlot: 'B',
      offset: 400,
      totalBytes: 1000,
      resumed: true,
    });

    h2.liveTransfer().sendBack({ type: 'PROGRESS', bytesDone: 900, speedBps: 100, at: 3_100 });
    expect(jobPercentage(restored.getSnapshot().context)).toBe(90);
    h2.liveTransfer().sendBack({ type: 'TRANSFER_DONE', at: 3_200 });
    expect(restored.getSnapshot().value).toBe('verifying');
    // The next phase's actor is a normal start, not a resumed one.
    expect(h2.verifies[0]!.input.resumed).toBe(false);
    expect(h2.transfers).toHaveLength(1);
  });

  it.each([
    ['verifying', 'verifies'],
    ['installing', 'installs'],
    ['rebooting', 'reboots'],
  ] as const)('should re-run the %s actor once after RESUME and carry on', async (state, list) => {
    const h = new JobHarness();
    const actor = await driveTo(h, state);
    const persisted = roundTrip(actor);
    actor.stop();

    const h2 = new JobHarness();
    const restored = h2.listen(createActor(h2.machine, restoreOptions(persisted)).start());
    expect(jobStateName(restored.getSnapshot())).toBe(state);
    expect(h2[list]).toHaveLength(0);

    restored.send({ type: 'RESUME', at: 9_000 });
    expect(h2[list]).toHaveLength(1);
    expect(h2[list][0]!.input.resumed).toBe(true);

    h2[list][0]!.done.resolve({ at: 9_500 });
    await flush();
    const next = jobStateName(restored.getSnapshot());
    expect(next).toBe({ verifying: 'downloaded', installing: 'rebooting', rebooting: 'activating' }[state]);
    if (state === 'installing') expect(h2.reboots[0]!.input.resumed).toBe(false);
    expect(h2[list]).toHaveLength(1);
  });

  it('should restore awaiting_reboot and reboot once safety clears', async () => {
    const h = new JobHarness();
    const actor = await driveTo(h, 'awaiting_reboot');
    const persisted = roundTrip(actor);
    actor.stop();

    const h2 = new JobHarness();
    const restored = h2.listen(createActor(h2.machine, restoreOptions(persisted)).start());
    restored.send({ type: 'RESUME', at: 9_000 }); // harmless where nothing is invoked
    expect(jobStateName(restored.getSnapshot())).toBe('awaiting_reboot');
    expect(restored.getSnapshot().context.blockedBy).toEqual(['crane_moving']);
    restored.send({ type: 'SAFETY_CHANGED', blocking: [], at: 9_100 });
    expect(jobStateName(restored.getSnapshot())).toBe('rebooting');
    expect(h2.reboots).toHaveLength(1);
    expect(h2.reboots[0]!.input.resumed).toBe(false);
  });

  it.each(['installed', 'activating'] as const)(
    'should restore %s after a JSON round trip and still take the boot outcome',
    async (state) => {
      const h = new JobHarness();
      const actor = await driveTo(h, state);
      const persisted = roundTrip(actor);
      actor.stop();

      const h2 = new JobHarness();
      const restored = h2.listen(createActor(h2.machine, restoreOptions(persisted)).start());
      restored.send({ type: 'RESUME', at: 9_000 });
      expect(jobStateName(restored.getSnapshot())).toBe(state);
      expect(restored.getSnapshot().context).toEqual(actor.getSnapshot().context);
      // Nothing is invoked while waiting on a boot: a restart starts no install or reboot again.
      expect([h2.installs, h2.reboots, h2.verifies, h2.transfers].map((l) => l.length)).toEqual([0, 0, 0, 0]);
      restored.send({ type: 'COMMITTED', at: 9_500 });
      expect(restored.getSnapshot().value).toBe('complete');
    },
  );

  it.each(['pending', 'downloaded'] as const)('should treat RESUME as a no-op in %s', async (state) => {
    const h = new JobHarness();
    const actor = await driveTo(h, state);
    const before = actor.getSnapshot();
    actor.send({ type: 'RESUME', at: 9_000 });
    expect(actor.getSnapshot().value).toEqual(before.value);
    expect(actor.getSnapshot().context).toEqual(before.context);
  });

  it('should restart a live transfer on RESUME without leaving the old one running', () => {
    const h = new JobHarness();
    const actor = h.start();
    actor.send({ type: 'START', at: 2_000 });
    h.liveTransfer().sendBack({ type: 'PROGRESS', bytesDone: 700, speedBps: 100, at: 2_100 });
    actor.send({ type: 'RESUME', at: 2_200 });
    expect(h.transfers).toHaveLength(2);
    expect(h.liveTransfer().input.offset).toBe(700);
    // The stopped transfer can no longer move the job.
    h.transfers[0]!.sendBack({ type: 'TRANSFER_DONE', at: 2_300 });
    expect(actor.getSnapshot().value).toBe('downloading');
  });

  it('should ignore a stale promise settling after a resume restarted it', async () => {
    const h = new JobHarness();
    const actor = await driveTo(h, 'verifying');
    actor.send({ type: 'RESUME', at: 3_500 });
    expect(h.verifies).toHaveLength(2);
    expect(h.verifies[0]!.signal.aborted).toBe(true);
    h.verifies[0]!.done.reject(new Error('aborted'));
    await flush();
    expect(actor.getSnapshot().value).toBe('verifying');
    h.verifies[1]!.done.resolve({ at: 3_600 });
    await flush();
    expect(actor.getSnapshot().value).toBe('downloaded');
  });

  it.each(['complete', 'error', 'cancelled'] as const)('should restore a %s job as done', async (final) => {
    const h = new JobHarness();
    let actor: JobActor;
    if (final === 'complete') {
      actor = await toInstalled(h);
      actor.send({ type: 'COMMITTED', at: 7_000 });
    } else {
      actor = h.start();
      const code: ErrorCode = 'INTERNAL_ERROR';
      actor.send(
        final === 'error'
          ? { type: 'FAIL', code, message: 'x', at: 2 }
          : { type: 'CANCEL', reason: 'r', at: 2 },
      );
    }
    const restored = createActor(new JobHarness().machine, restoreOptions(roundTrip(actor))).start();
    expect(restored.getSnapshot().value).toBe(final);
    expect(restored.getSnapshot().status).toBe('done');
    expect(restored.getSnapshot().context).toEqual(actor.getSnapshot().context);
  });
});

describe('updateJobMachine: untyped input at runtime', () => {
  it('should replace an undocumented error code from the transfer or the service', () => {
    const h = new JobHarness();
    const actor = h.start();
    actor.send({ type: 'START', at: 2_000 });
    h.liveTransfer().sendBack({
      type: 'TRANSFER_FAILED',
      code: 'ECONNRESET' as ErrorCode,
      message: 'x',
      at: 2_100,
    });
    expect(actor.getSnapshot().context.errorCode).toBe('OTA_DOWNLOAD_FAILED');

    const other = new JobHarness().start();
    other.send({ type: 'FAIL', code: 'SIGTERM' as ErrorCode, message: 'y', at: 2_100 });
    expect(other.getSnapshot().context.errorCode).toBe('INTERNAL_ERROR');
  });
});
