import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { readJsonFile, writeFileAtomicSync } from '../core/fsutil.js';
import { LendingFileReader } from '../core/lending.js';
import { SlotWriter } from './slot-writer.js';
import type { ComponentSlotPair, SlotId } from './types.js';

/**
 * A simulated component slot class: two image files `slot-<class>-A.img`/`-B.img` beside the
 * rootfs slots and the active one in `slots-<class>.json` (replaced atomically, as a bootloader
 * variable would be). Every class exists in the simulator; A is active until switched.
 */
export class SimulatedComponentSlots implements ComponentSlotPair {
  constructor(
    readonly slotClass: string,
    private readonly dir: string,
    private readonly capacity: () => number,
  ) {}

  imagePath(slot: SlotId): string {
    return path.join(this.dir, `slot-${this.slotClass}-${slot}.img`);
  }

  private stateFile(): string {
    return path.join(this.dir, `slots-${this.slotClass}.json`);
  }

  async activeSlot(): Promise<SlotId> {
    return readJsonFile<{ active: SlotId }>(this.stateFile())?.active ?? 'A';
  }

  async setActiveSlot(slot: SlotId): Promise<void> {
    writeFileAtomicSync(this.stateFile(), JSON.stringify({ active: slot }));
  }

  async capacityBytes(): Promise<number> {
    return this.capacity();
  }

  async openWriter(slot: SlotId, opts: { offset: number; allowActive?: boolean }): Promise<SlotWriter> {
    if (slot === (await this.activeSlot()) && !opts.allowActive) {
      throw new Error(`refusing to write ${this.slotClass} slot ${slot}: it is the active one`);
    }
    fs.mkdirSync(this.dir, { recursive: true });
    return new SlotWriter(this.imagePath(slot), opts.offset, opts.offset === 0);
  }

  openReader(slot: SlotId, range: { start?: number; end?: number } = {}): Readable {
    return new LendingFileReader(this.imagePath(slot), range);
  }
}
