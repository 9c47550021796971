import { createActor, type Actor } from 'xstate';
import {
  partitionMachine,
  type PartitionEmitted,
  type PartitionInput,
  type RetargetCause,
} from '../../machines/partition.js';
import type { SlotId } from '../../device/types.js';

export type BootAction =
  | { name: 'armBootloader'; slot: SlotId; nextBoot: SlotId }
  | { name: 'commitBootloader'; slot: SlotId; nextBoot: SlotId }
  | { name: 'rollbackBootloader'; slot: SlotId; cause: RetargetCause; nextBoot: SlotId };

export const BASE_INPUT: PartitionInput = {
  booted: 'A',
  nextBoot: 'A',
  slots: { A: { content: 'bootable', version: 'v5.0.9' }, B: { content: 'empty', version: null } },
  committed: true,
  autoRollback: true,
  rollbackRetries: 2,
  versionFloor: 'v5.0.9',
};

export type InputOverrides = Omit<Partial<PartitionInput>, 'slots'> & {
  slots?: Partial<PartitionInput['slots']>;
};

export function partitionInput(over: InputOverrides = {}): PartitionInput {
  return { ...BASE_INPUT, ...over, slots: { ...BASE_INPUT.slots, ...over.slots } };
}

/**
 * Records the bootloader actions the machine asks for (with the `context.nextBoot` they see, as the
 * service's implementations read it) and everything it emits.
 */
export class PartitionHarness {
  readonly actions: BootAction[] = [];
  readonly emitted: PartitionEmitted[] = [];

  readonly machine = partitionMachine.provide({
    actions: {
      armBootloader: ({ context }, { slot }) => {
        this.actions.push({ name: 'armBootloader', slot, nextBoot: context.nextBoot });
      },
      commitBootloader: ({ context }, { slot }) => {
        this.actions.push({ name: 'commitBootloader', slot, nextBoot: context.nextBoot });
      },
      rollbackBootloader: ({ context }, { slot, cause }) => {
        this.actions.push({ name: 'rollbackBootloader', slot, cause, nextBoot: context.nextBoot });
      },
    },
  });

  start(input: PartitionInput = BASE_INPUT): Actor<typeof this.machine> {
    return this.listen(createActor(this.machine, { input }).start());
  }

  listen(actor: Actor<typeof this.machine>): Actor<typeof this.machine> {
    actor.on('*', (event) => {
      this.emitted.push(event);
    });
    return actor;
  }

  /** Clears what was recorded so far (to look at one step). */
  take(): { actions: BootAction[]; emitted: PartitionEmitted[] } {
    return { actions: this.actions.splice(0), emitted: this.emitted.splice(0) };
  }
}
