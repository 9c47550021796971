import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createActor, type Snapshot } from 'xstate';
import { otherSlot, SLOT_IDS, type SlotId } from '../../device/types.js';
import { restoreOptions } from '../../machines/persist.js';
import {
  partitionStateName,
  type PartitionEvent,
  type PartitionInput,
  type PartitionSnapshot,
  type PartitionStateName,
  type SlotContent,
} from '../../machines/partition.js';
import { compareVersions } from '../../machines/version.js';
import { PartitionHarness } from './partition-harness.js';

const slot = fc.constantFrom<SlotId>(...SLOT_IDS);
const version = fc.constantFrom('v4.9.0', 'v5.0.9', 'v5.0.10', 'v5.1.0-rc.1', 'v5.1.0', 'v6.0.0');
const content = fc.constantFrom<SlotContent>('empty', 'invalid', 'writing', 'bootable');
const at = fc.nat(1_000_000);

const input: fc.Arbitrary<PartitionInput> = fc.record(
  {
    booted: slot,
    nextBoot: slot,
    slots: fc.record({
      A: fc.record({ content, version: fc.option(version) }),
      B: fc.record({ content, version: fc.option(version) }),
    }),
    committed: fc.boolean(),
    autoRollback: fc.boolean(),
    rollbackRetries: fc.nat(3),
    versionFloor: fc.option(version),
    upgradeAvailable: fc.boolean(),
    failedBoots: fc.nat(3),
  },
  {
    requiredKeys: [
      'booted',
      'nextBoot',
      'slots',
      'committed',
      'autoRollback',
      'rollbackRetries',
      'versionFloor',
    ],
  },
);

const event: fc.Arbitrary<PartitionEvent | { type: 'RESTART' }> = fc.oneof(
  fc.record({
    type: fc.constant('WRITE_STARTED' as const),
    slot,
    inPlace: fc.option(fc.boolean(), { nil: undefined }),
  }),
  fc.record({ type: fc.constant('WRITE_FAILED' as const), slot }),
  { weight: 2, arbitrary: fc.record({ type: fc.constant('WRITE_VERIFIED' as const), slot, version }) },
  { weight: 2, arbitrary: fc.record({ type: fc.constant('STAGE' as const), slot, at }) },
  {
    weight: 3,
    arbitrary: fc.record(
      {
        type: fc.constant('BOOTED' as const),
        slot,
        at,
        bootCount: fc.nat(4),
        upgradeAvailable: fc.boolean(),
      },
      { requiredKeys: ['type', 'slot', 'at', 'bootCount'] },
    ),
  },
  { weight: 2, arbitrary: fc.record({ type: fc.constant('HEALTH_OK' as const), at }) },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constant('HEALTH_FAILED' as const),
      at,
      reason: fc.constant('unhealthy'),
    }),
  },
  fc.record({ type: fc.constant('ROLLBACK' as const), to: slot, at, reason: fc.constant('operator') }),
  fc.record(
    { type: fc.constant('SETTINGS' as const), autoRollback: fc.boolean(), rollbackRetries: fc.nat(3) },
    { requiredKeys: ['type'] },
  ),
  fc.record({ type: fc.constant('INVALIDATE' as const), slot }),
  fc.constant({ type: 'RESTART' as const }),
);

const bootable = (s: PartitionSnapshot, id: SlotId) => s.context.slots[id].content === 'bootable';

/** What must hold in every snapshot. */
function checkSnapshot(s: PartitionSnapshot): void {
  const c = s.context;
  const name = partitionStateName(s);
  expect(SLOT_IDS).toContain(c.booted);
  expect(SLOT_IDS).toContain(c.nextBoot);
  // The next boot is the running slot or a bootable one.
  if (c.nextBoot !== c.booted) expect(bootable(s, c.nextBoot)).toBe(true);
  // One write at a time.
  expect(SLOT_IDS.filter((id) => c.slots[id].content === 'writing').length).toBeLessThanOrEqual(1);
  // A committed booted slot holds a bootable image.
  if (c.committed) expect(bootable(s, c.booted)).toBe(true);
  expect(c.rollbackRetries).toBeGreaterThanOrEqual(0);
  switch (name) {
    case 'stable':
      expect(c.trial).toBeNull();
      // Committed and stable: the next boot stays on the running slot.
      if (c.committed) expect(c.nextBoot).toBe(c.booted);
      break;
    case 'staged':
      expect(c.trial).not.toBeNull();
      expect(c.trial!.slot).toBe(c.nextBoot);
      expect(c.trial!.previous).toBe(otherSlot(c.trial!.slot));
      expect(bootable(s, c.nextBoot)).toBe(true);
      break;
    case 'trial':
      expect(c.trial).not.toBeNull();
      expect(c.trial!.slot).toBe(c.booted);
      expect(c.nextBoot).toBe(c.booted);
      expect(c.committed).toBe(false);
      expect(bootable(s, c.booted)).toBe(true);
      break;
    case 'rolling_back':
      expect(c.trial).toBeNull();
      expect(c.nextBoot).not.toBe(c.booted);
      break;
  }
}

describe('partitionMachine properties', () => {
  it('should keep its invariants over any sequence of events, including restarts', () => {
    const reached = new Set<PartitionStateName>();
    fc.assert(
      fc.property(input, fc.array(event, { maxLength: 50, size: 'max' }), (start, events) => {
        const h = new PartitionHarness();
        let actor = h.start(start);
        let prev = actor.getSnapshot();
        checkSnapshot(prev);
        // The boot env as the bootloader actions leave it; starts as the machine's view of it.
        const env = { bootSlot: prev.context.nextBoot, upgradeAvailable: prev.value === 'staged' };

        for (const e of events) {
          if (e.type === 'RESTART') {
            const persisted = JSON.parse(JSON.stringify(actor.getPersistedSnapshot())) as Snapshot<unknown>;
            actor.stop();
            actor = h.listen(createActor(h.machine, restoreOptions(persisted)).start());
            expect(actor.getSnapshot().value).toEqual(prev.value);
            expect(actor.getSnapshot().context).toEqual(prev.context);
            prev = actor.getSnapshot();
            continue;
          }
          const couldTake = prev.can(e);
          actor.send(e);
          const next = actor.getSnapshot();
          const { actions, emitted } = h.take();
          checkSnapshot(next);
          reached.add(partitionStateName(next));
          const p = prev.context;
          const n = next.context;
          const changed = next.value !== prev.value || JSON.stringify(n) !== JSON.stringify(p);

          // can() tells the truth: a refused event changes nothing and asks for nothing.
          if (!couldTake) {
            expect(changed).toBe(false);
            expect(actions).toEqual([]);
            expect(emitted).toEqual([]);
          }

          // A seamless write never targets the booted slot: refused outright.
          if (e.type === 'WRITE_STARTED' && e.slot === p.booted && e.inPlace !== true) {
            expect(couldTake).toBe(false);
            expect(changed).toBe(false);
          }

          // The bootloader follows nextBoot: every env write the machine asks for mirrors it.
          for (const a of actions) {
            if (a.name === 'armBootloader') Object.assign(env, { bootSlot: a.slot, upgradeAvailable: true });
            if (a.name === 'rollbackBootloader')
              Object.assign(env, { bootSlot: a.slot, upgradeAvailable: false });
            if (a.name === 'commitBootloader') env.upgradeAvailable = false;
            expect(a.slot).toBe(a.name === 'commitBootloader' ? n.booted : n.nextBoot);
            expect(a.nextBoot).toBe(n.nextBoot);
          }
          if (actions.length > 0 || n.nextBoot !== p.nextBoot) expect(env.bootSlot).toBe(n.nextBoot);
          if (actions.some((a) => a.name === 'armBootloader')) expect(e.type).toBe('STAGE');
          if (actions.some((a) => a.name === 'commitBootloader')) expect(e.type).toBe('HEALTH_OK');

          // A committed slot is never rolled back by the machine: from stable, only the operator
          // (ROLLBACK) or a boot report of what the bootloader did moves away from it.
          if (prev.value === 'stable') {
            if (e.type !== 'ROLLBACK' && e.type !== 'BOOTED') {
              expect(n.lastRollback).toEqual(p.lastRollback);
              expect(emitted.filter((x) => x.type === 'rollback')).toEqual([]);
              expect(
                actions.filter((a) => a.name === 'rollbackBootloader' && a.cause === 'rollback'),
              ).toEqual([]);
            }
            if (p.committed && !['ROLLBACK', 'STAGE', 'BOOTED'].includes(e.type)) {
              if (bootable(next, p.booted)) expect(n.nextBoot).toBe(p.booted);
            }
          }
          // Machine-decided rollbacks come only from a failed health check on trial.
          const rolledBack = JSON.stringify(n.lastRollback) !== JSON.stringify(p.lastRollback);
          if (rolledBack && n.lastRollback?.initiatedBy === 'health_check') {
            expect(prev.value).toBe('trial');
            expect(e.type).toBe('HEALTH_FAILED');
            expect(p.autoRollback).toBe(true);
          }

          // The version floor only rises, and only on HEALTH_OK.
          if (n.versionFloor !== p.versionFloor) {
            expect(e.type).toBe('HEALTH_OK');
            if (p.versionFloor !== null) expect(compareVersions(n.versionFloor!, p.versionFloor)).toBe(1);
          }
          prev = next;
        }
        actor.stop();
      }),
      {
        numRuns: 1000,
        // Walked first: an update, a failed trial and its automatic rollback reach every state.
        examples: [
          [
            {
              booted: 'A',
              nextBoot: 'A',
              slots: {
                A: { content: 'bootable', version: 'v5.0.9' },
                B: { content: 'empty', version: null },
              },
              committed: true,
              autoRollback: true,
              rollbackRetries: 2,
              versionFloor: 'v5.0.9',
            },
            [
              { type: 'WRITE_STARTED', slot: 'B' },
              { type: 'WRITE_VERIFIED', slot: 'B', version: 'v5.0.10' },
              { type: 'STAGE', slot: 'B', at: 1 },
              { type: 'RESTART' },
              { type: 'BOOTED', slot: 'B', at: 2, bootCount: 1 },
              { type: 'HEALTH_FAILED', at: 3, reason: 'unhealthy' },
              { type: 'HEALTH_FAILED', at: 4, reason: 'unhealthy' },
              { type: 'RESTART' },
              { type: 'BOOTED', slot: 'A', at: 5, bootCount: 0 },
            ],
          ],
        ],
      },
    );
    expect([...reached].sort()).toEqual(['rolling_back', 'stable', 'staged', 'trial']);
  });
});
