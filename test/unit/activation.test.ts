import { describe, expect, it } from 'vitest';
import { activationOf } from '../../services/updates/activation.js';
import { PartitionHarness, partitionInput } from '../machines/partition-harness.js';

/** What a waiting job reads from the A/B statechart, driven through the real partition machine. */
function stagedOnB() {
  const actor = new PartitionHarness().start(partitionInput({ rollbackRetries: 2 }));
  actor.send({ type: 'WRITE_STARTED', slot: 'B' });
  actor.send({ type: 'WRITE_VERIFIED', slot: 'B', version: 'v5.0.10' });
  actor.send({ type: 'STAGE', slot: 'B', at: 1_000 });
  return actor;
}

describe('activationOf', () => {
  it('should follow a staged slot through its trial boot to the commit', () => {
    const actor = stagedOnB();
    expect(activationOf(actor.getSnapshot(), 'B')).toEqual({ kind: 'staged' });
    // A service restart without a reboot: the staged slot was not tried yet.
    actor.send({ type: 'BOOTED', slot: 'A', at: 1_500, bootCount: 0, upgradeAvailable: true });
    expect(activationOf(actor.getSnapshot(), 'B')).toEqual({ kind: 'staged' });
    actor.send({ type: 'BOOTED', slot: 'B', at: 2_000, bootCount: 1 });
    expect(activationOf(actor.getSnapshot(), 'B')).toEqual({ kind: 'trial' });
    actor.send({ type: 'HEALTH_OK', at: 3_000 });
    expect(activationOf(actor.getSnapshot(), 'B')).toEqual({ kind: 'committed' });
  });

  it('should report a bootloader fallback', () => {
    const actor = stagedOnB();
    actor.send({ type: 'BOOTED', slot: 'A', at: 2_000, bootCount: 0, upgradeAvailable: false });
    expect(activationOf(actor.getSnapshot(), 'B')).toEqual({
      kind: 'failed',
      message: 'Slot B did not boot: the bootloader went back to slot A',
    });
  });

  it('should report a failed health check as soon as the rollback is decided (before the reboot back)', () => {
    const actor = stagedOnB();
    actor.send({ type: 'BOOTED', slot: 'B', at: 2_000, bootCount: 1 });
    actor.send({ type: 'HEALTH_FAILED', at: 2_100, reason: 'service x down' });
    // One failed boot of two allowed: a retry, still on trial.
    expect(activationOf(actor.getSnapshot(), 'B')).toEqual({ kind: 'trial' });
    actor.send({ type: 'HEALTH_FAILED', at: 2_200, reason: 'service x down' });
    expect(actor.getSnapshot().value).toBe('rolling_back');
    expect(activationOf(actor.getSnapshot(), 'B')).toEqual({
      kind: 'failed',
      message: 'Slot B failed its health check (service x down): rolled back to slot A',
    });
  });

  it('should report an operator rollback from the trial', () => {
    const actor = stagedOnB();
    actor.send({ type: 'BOOTED', slot: 'B', at: 2_000, bootCount: 1 });
    actor.send({ type: 'ROLLBACK', to: 'A', at: 2_100, reason: 'looks wrong' });
    expect(activationOf(actor.getSnapshot(), 'B')).toEqual({
      kind: 'failed',
      message: 'Slot B was rolled back to slot A by an operator (looks wrong)',
    });
  });

  it('should report a slot that stopped being staged', () => {
    const actor = stagedOnB();
    actor.send({ type: 'INVALIDATE', slot: 'B' });
    expect(activationOf(actor.getSnapshot(), 'B')).toEqual({
      kind: 'failed',
      message: 'Slot B is no longer staged as the next boot (slot A is); it will not run',
    });
  });

  it('should not take an older commit of the same slot for this one', () => {
    // B was committed once, then the gateway went back to A; B is staged again and falls back.
    const actor = stagedOnB();
    actor.send({ type: 'BOOTED', slot: 'B', at: 2_000, bootCount: 1 });
    actor.send({ type: 'HEALTH_OK', at: 3_000 });
    actor.send({ type: 'ROLLBACK', to: 'A', at: 4_000, reason: 'back' });
    actor.send({ type: 'BOOTED', slot: 'A', at: 5_000, bootCount: 0 });
    actor.send({ type: 'WRITE_STARTED', slot: 'B' });
    actor.send({ type: 'WRITE_VERIFIED', slot: 'B', version: 'v5.0.11' });
    actor.send({ type: 'STAGE', slot: 'B', at: 6_000 });
    expect(actor.getSnapshot().context.lastCommit?.slot).toBe('B');
    expect(activationOf(actor.getSnapshot(), 'B')).toEqual({ kind: 'staged' });
    actor.send({ type: 'BOOTED', slot: 'A', at: 7_000, bootCount: 0, upgradeAvailable: false });
    expect(activationOf(actor.getSnapshot(), 'B').kind).toBe('failed');
  });

  it('should follow an in-place rewrite of the running slot, proven only by a counted boot', () => {
    const actor = new PartitionHarness().start(
      partitionInput({ slots: { B: { content: 'bootable', version: 'v5.0.10' } } }),
    );
    actor.send({ type: 'WRITE_STARTED', slot: 'A', inPlace: true });
    actor.send({ type: 'WRITE_VERIFIED', slot: 'A', version: 'v5.0.10' });
    actor.send({ type: 'STAGE', slot: 'A', at: 1_000 });
    expect(activationOf(actor.getSnapshot(), 'A')).toEqual({ kind: 'staged' });
    actor.send({ type: 'BOOTED', slot: 'A', at: 1_500, bootCount: 0, upgradeAvailable: true });
    expect(activationOf(actor.getSnapshot(), 'A')).toEqual({ kind: 'staged' });
    actor.send({ type: 'BOOTED', slot: 'A', at: 2_000, bootCount: 1 });
    expect(activationOf(actor.getSnapshot(), 'A')).toEqual({ kind: 'trial' });
    actor.send({ type: 'HEALTH_OK', at: 3_000 });
    expect(activationOf(actor.getSnapshot(), 'A')).toEqual({ kind: 'committed' });
  });
});
