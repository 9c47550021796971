import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createActor, type Snapshot } from 'xstate';
import { restoreOptions } from '../../machines/persist.js';
import {
  JOB_STATE_NAMES,
  jobPercentage,
  jobStateName,
  type JobStateName,
  type UpdateJobSnapshot,
} from '../../machines/update-job.js';
import { flush, JobHarness, type PendingCall } from './job-harness.js';

const CONSTRAINTS = ['crane_moving', 'acs_collision', 'ups_low', 'network_down'];
const blocking = fc.oneof(fc.constant<string[]>([]), fc.subarray(CONSTRAINTS, { minLength: 1 }));

type Command =
  | { t: 'START' }
  | { t: 'PROGRESS'; bytes: number; speed: number }
  | { t: 'TRANSFER_DONE' }
  | { t: 'TRANSFER_FAILED' }
  | { t: 'INSTALL'; blocking: string[]; rebootAfter: boolean }
  | { t: 'SAFETY'; blocking: string[] }
  | { t: 'CANCEL' }
  | { t: 'FAIL' }
  | { t: 'RESUME' }
  | { t: 'SETTLE'; which: 'verifies' | 'installs' | 'reboots'; ok: boolean }
  | { t: 'RESTART' }
  | { t: 'BOOT'; outcome: 'TRIAL_STARTED' | 'COMMITTED' | 'ACTIVATION_FAILED' };

const rare = 1;
const often = 5;
// Weighted so runs get past verification: ending commands (cancel, failures) are rare.
const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ t: 'START' as const }) },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('PROGRESS' as const),
      bytes: fc.integer({ min: 0, max: 1200 }),
      speed: fc.nat(500),
    }),
  },
  { weight: 3, arbitrary: fc.constant({ t: 'TRANSFER_DONE' as const }) },
  { weight: rare, arbitrary: fc.constant({ t: 'TRANSFER_FAILED' as const }) },
  {
    weight: often,
    arbitrary: fc.record({ t: fc.constant('INSTALL' as const), blocking, rebootAfter: fc.boolean() }),
  },
  { weight: often, arbitrary: fc.record({ t: fc.constant('SAFETY' as const), blocking }) },
  { weight: 2, arbitrary: fc.constant({ t: 'CANCEL' as const }) },
  { weight: rare, arbitrary: fc.constant({ t: 'FAIL' as const }) },
  { weight: 2, arbitrary: fc.constant({ t: 'RESUME' as const }) },
  {
    weight: often * 2,
    arbitrary: fc.record({
      t: fc.constant('SETTLE' as const),
      which: fc.constantFrom('verifies' as const, 'installs' as const, 'reboots' as const),
      ok: fc.oneof({ weight: 6, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    }),
  },
  // Service restart: persist (JSON), stop, restore, RESUME.
  { weight: 2, arbitrary: fc.constant({ t: 'RESTART' as const }) },
  // What the A/B statechart says about the new slot (the service sends it whenever it changes).
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('BOOT' as const),
      outcome: fc.constantFrom('TRIAL_STARTED' as const, 'COMMITTED' as const, 'ACTIVATION_FAILED' as const),
    }),
  },
);

const isInstalling = (s: UpdateJobSnapshot) => typeof s.value === 'object';

describe('updateJobMachine properties', () => {
  it('should never install while blocked, never reboot while blocked, never cancel once installing, never run an effect twice, never complete before a commit', async () => {
    const reached = new Set<JobStateName>();
    await fc.assert(
      fc.asyncProperty(
        // Most runs begin with START so they get somewhere; some exercise pending.
        fc.boolean(),
        fc.array(command, { maxLength: 60, size: 'max' }),
        async (startFirst, rest) => {
          const commands: Command[] = startFirst ? [{ t: 'START' }, ...rest] : rest;
          const h = new JobHarness();
          const settled = new Set<PendingCall<unknown>>();
          let current: Command | null = null;
          let last: UpdateJobSnapshot | null = null;
          let at = 2_000;

          const check = (next: UpdateJobSnapshot) => {
            const prev = last;
            last = next;
            reached.add(jobStateName(next));
            const ctx = next.context;
            expect(ctx.bytesDone).toBeGreaterThanOrEqual(0);
            expect(ctx.bytesDone).toBeLessThanOrEqual(ctx.totalBytes);
            const pct = jobPercentage(ctx);
            expect(pct).toBeGreaterThanOrEqual(0);
            expect(pct).toBeLessThanOrEqual(100);
            // awaiting_reboot is only ever visible while something blocks the reboot.
            if (jobStateName(next) === 'awaiting_reboot') expect(ctx.blockedBy.length).toBeGreaterThan(0);
            if (!prev) return;
            if (!isInstalling(prev) && isInstalling(next)) {
              // Only an INSTALL whose `blocking` was empty enters installing.
              expect(current?.t).toBe('INSTALL');
              expect(current?.t === 'INSTALL' && current.blocking).toEqual([]);
              expect(prev.value).toBe('downloaded');
            }
            if (jobStateName(next) === 'rebooting' && jobStateName(prev) !== 'rebooting') {
              expect(ctx.blockedBy).toEqual([]);
            }
            const entered = (name: JobStateName) =>
              jobStateName(next) === name && jobStateName(prev) !== name;
            // Complete only when the new slot was committed, never straight from an install or a
            // reboot (issue 11.2).
            if (entered('complete')) {
              expect(current?.t === 'BOOT' && current.outcome).toBe('COMMITTED');
              expect(['installed', 'activating', 'awaiting_reboot']).toContain(jobStateName(prev));
            }
            // Installed (waiting for someone else's reboot) only when no reboot was asked for.
            if (entered('installed')) expect(ctx.install?.rebootAfter).toBe(false);
            if (entered('installed') || entered('awaiting_reboot')) expect(ctx.installedAt).not.toBeNull();
            if (entered('error') && current?.t === 'BOOT') {
              expect(ctx.errorCode).toBe('OTA_INSTALL_FAILED');
            }
            if (prev.status === 'done') {
              expect(next.value).toEqual(prev.value);
              expect(next.context).toEqual(prev.context);
            }
          };

          let actor = h.start();
          let unsubscribe = actor.subscribe(check).unsubscribe;
          check(actor.getSnapshot());

          const live = <I>(list: PendingCall<I>[]) =>
            list.filter((c) => !c.signal.aborted && !settled.has(c as PendingCall<unknown>));

          /** At most one effect runs at a time, and it is the one the state invokes. */
          const checkEffects = () => {
            const name = jobStateName(actor.getSnapshot());
            const transfers = h.transfers.filter((t) => !t.stopped).length;
            const verifies = live(h.verifies).length;
            const installs = live(h.installs).length;
            const reboots = live(h.reboots).length;
            expect({ transfers, verifies, installs, reboots }).toEqual({
              transfers: name === 'downloading' ? 1 : 0,
              verifies: name === 'verifying' ? 1 : 0,
              installs: name === 'installing' ? 1 : 0,
              reboots: name === 'rebooting' ? 1 : 0,
            });
          };

          for (const cmd of commands) {
            if (actor.getSnapshot().status === 'done') {
              // Final states absorb everything (can() agrees); nothing left to drive.
              expect(actor.getSnapshot().can({ type: 'CANCEL', reason: 'x', at })).toBe(false);
              expect(
                actor.getSnapshot().can({ type: 'FAIL', code: 'INTERNAL_ERROR', message: 'x', at }),
              ).toBe(false);
              break;
            }
            current = cmd;
            at += 10;
            const before = actor.getSnapshot();
            const transfer = h.transfers.find((t) => !t.stopped);
            switch (cmd.t) {
              case 'START':
                actor.send({ type: 'START', at });
                break;
              case 'PROGRESS': {
                const event = { type: 'PROGRESS', bytesDone: cmd.bytes, speedBps: cmd.speed, at } as const;
                if (transfer) transfer.sendBack(event);
                else actor.send(event);
                break;
              }
              case 'TRANSFER_DONE':
                if (transfer) transfer.sendBack({ type: 'TRANSFER_DONE', at });
                else actor.send({ type: 'TRANSFER_DONE', at });
                break;
              case 'TRANSFER_FAILED': {
                const event = {
                  type: 'TRANSFER_FAILED',
                  code: 'OTA_DOWNLOAD_FAILED',
                  message: 'reset',
                  at,
                } as const;
                if (transfer) transfer.sendBack(event);
                else actor.send(event);
                break;
              }
              case 'INSTALL':
                actor.send({
                  type: 'INSTALL',
                  at,
                  strategy: 'seamless',
                  rebootAfter: cmd.rebootAfter,
                  createSnapshot: false,
                  blocking: cmd.blocking,
                });
                break;
              case 'SAFETY':
                actor.send({ type: 'SAFETY_CHANGED', blocking: cmd.blocking, at });
                break;
              case 'CANCEL': {
                const cancel = { type: 'CANCEL', reason: 'operator', at } as const;
                actor.send(cancel);
                if (isInstalling(before)) {
                  expect(before.can(cancel)).toBe(false);
                  expect(actor.getSnapshot().value).toEqual(before.value);
                  expect(actor.getSnapshot().context).toEqual(before.context);
                }
                break;
              }
              case 'FAIL':
                actor.send({ type: 'FAIL', code: 'INTERNAL_ERROR', message: 'shutdown', at });
                break;
              case 'RESUME':
                actor.send({ type: 'RESUME', at });
                break;
              case 'SETTLE': {
                const call = live(h[cmd.which] as PendingCall<unknown>[]).at(-1);
                if (!call) break;
                settled.add(call);
                if (cmd.ok) call.done.resolve({ at });
                else call.done.reject(new Error('fake failure'));
                await flush();
                break;
              }
              case 'BOOT':
                actor.send(
                  cmd.outcome === 'ACTIVATION_FAILED'
                    ? { type: cmd.outcome, message: 'fell back', at }
                    : { type: cmd.outcome, at },
                );
                break;
              case 'RESTART': {
                const persisted = JSON.parse(
                  JSON.stringify(actor.getPersistedSnapshot()),
                ) as Snapshot<unknown>;
                unsubscribe();
                actor.stop();
                actor = h.listen(createActor(h.machine, restoreOptions(persisted)).start());
                unsubscribe = actor.subscribe(check).unsubscribe;
                expect(actor.getSnapshot().value).toEqual(before.value);
                expect(actor.getSnapshot().context).toEqual(before.context);
                actor.send({ type: 'RESUME', at });
                break;
              }
            }
            checkEffects();
          }
          unsubscribe();
          actor.stop();
        },
      ),
      {
        numRuns: 300,
        // Walked first, so every state (awaiting_reboot above all) is reached whatever the seed.
        examples: [
          [
            true,
            [
              { t: 'PROGRESS', bytes: 400, speed: 100 },
              { t: 'RESTART' },
              { t: 'TRANSFER_DONE' },
              { t: 'SETTLE', which: 'verifies', ok: true },
              { t: 'INSTALL', blocking: ['crane_moving'], rebootAfter: true },
              { t: 'INSTALL', blocking: [], rebootAfter: true },
              { t: 'CANCEL' },
              { t: 'SAFETY', blocking: ['crane_moving'] },
              { t: 'SETTLE', which: 'installs', ok: true },
              { t: 'RESTART' },
              { t: 'SAFETY', blocking: [] },
              { t: 'RESTART' },
              { t: 'SETTLE', which: 'reboots', ok: true },
              { t: 'RESTART' },
              { t: 'BOOT', outcome: 'COMMITTED' },
            ],
          ],
          [
            true,
            [
              { t: 'TRANSFER_DONE' },
              { t: 'SETTLE', which: 'verifies', ok: true },
              { t: 'INSTALL', blocking: [], rebootAfter: false },
              { t: 'SETTLE', which: 'installs', ok: true },
              { t: 'RESTART' },
              { t: 'BOOT', outcome: 'TRIAL_STARTED' },
              { t: 'RESTART' },
              { t: 'BOOT', outcome: 'ACTIVATION_FAILED' },
            ],
          ],
        ],
      },
    );
    // The generator explores the whole chart, so the properties above are not vacuous.
    expect([...reached].sort()).toEqual([...JOB_STATE_NAMES].sort());
  });
});
