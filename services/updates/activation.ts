import type { SlotId } from '../../device/types.js';
import { partitionStateName, type PartitionSnapshot } from '../../machines/partition.js';

/** Where a staged slot stands on its way to running committed, as the A/B statechart tells it. */
export type Activation =
  /** Still the next boot, not tried yet: nobody rebooted the gateway. */
  | { kind: 'staged' }
  /** Booted, on trial: the health check (and its retries) decides. */
  | { kind: 'trial' }
  /** Running and committed. */
  | { kind: 'committed' }
  /** It will not run: the bootloader or the health check went back, or it stopped being staged. */
  | { kind: 'failed'; message: string };

/**
 * Read from the statechart's state, not from its events, so the same answer comes whenever it is
 * asked: right after the boot, or at a start-up after a reboot that happened while Gantry was down.
 *
 * Only meaningful for a job that staged `slot` and still waits on it. Such a job holds the gateway's
 * operation, so nothing else staged or wrote a slot since; from `staged` the statechart reaches a
 * committed `slot` only through a trial boot of it and a health check, which makes a committed
 * booted `slot` this job's commit, never an older one.
 */
export function activationOf(
  partition: Pick<PartitionSnapshot, 'value' | 'context'>,
  slot: SlotId,
): Activation {
  const state = partitionStateName(partition);
  const ctx = partition.context;
  if (state === 'staged' && ctx.trial?.slot === slot) return { kind: 'staged' };
  if (state === 'trial' && ctx.booted === slot) return { kind: 'trial' };
  if (state === 'stable' && ctx.booted === slot && ctx.committed && ctx.lastCommit?.slot === slot) {
    return { kind: 'committed' };
  }
  const back = ctx.lastRollback;
  if (back && back.from === slot) {
    const message =
      back.initiatedBy === 'bootloader'
        ? `Slot ${slot} did not boot: the bootloader went back to slot ${back.to}`
        : back.initiatedBy === 'health_check'
          ? `Slot ${slot} failed its health check (${back.reason}): rolled back to slot ${back.to}`
          : `Slot ${slot} was rolled back to slot ${back.to} by an operator (${back.reason})`;
    return { kind: 'failed', message };
  }
  return {
    kind: 'failed',
    message: `Slot ${slot} is no longer staged as the next boot (slot ${ctx.nextBoot} is); it will not run`,
  };
}
