import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { LendingFileReader } from '../../core/lending.js';
import { SlotWriter } from '../slot-writer.js';
import type { ComponentSlotPair, SlotId } from '../types.js';
import type { UBootEnv } from './uboot.js';

/**
 * A component slot class on the board: two block devices (or image files) configured in
 * GANTRY_LINUX_COMPONENT_SLOTS, the active one named by U-Boot's `<class>_slot` (so the boot script
 * or the init system mounts the right one; `A` while the variable is unset).
 */
export class LinuxComponentSlots implements ComponentSlotPair {
  constructor(
    readonly slotClass: string,
    private readonly paths: Record<SlotId, string>,
    private readonly uboot: UBootEnv,
    private readonly mountedAt: (file: string) => string[],
  ) {}

  private get variable(): string {
    return `${this.slotClass.replace(/-/g, '_')}_slot`;
  }

  async activeSlot(): Promise<SlotId> {
    const value = await this.uboot.get(this.variable);
    return value === 'B' ? 'B' : 'A';
  }

  setActiveSlot(slot: SlotId): Promise<void> {
    return this.uboot.setVar(this.variable, slot);
  }

  async capacityBytes(slot: SlotId): Promise<number> {
    const file = fs.realpathSync(this.paths[slot]);
    const stats = fs.statSync(file);
    if (stats.isBlockDevice()) {
      const sizeFile = path.join('/sys/class/block', path.basename(file), 'size');
      return Number(fs.readFileSync(sizeFile, 'utf8').trim()) * 512;
    }
    const fsStats = fs.statfsSync(path.dirname(file));
    return stats.size + fsStats.bavail * fsStats.bsize;
  }

  async openWriter(slot: SlotId, opts: { offset: number; allowActive?: boolean }): Promise<SlotWriter> {
    if (slot === (await this.activeSlot()) && !opts.allowActive) {
      throw new Error(`refusing to write ${this.slotClass} slot ${slot}: it is the active one`);
    }
    const file = this.paths[slot];
    const mounted = this.mountedAt(file);
    if (mounted.length && !opts.allowActive) {
      throw new Error(
        `refusing to write ${this.slotClass} slot ${slot}: ${file} is mounted at ${mounted.join(', ')}`,
      );
    }
    const block = fs.statSync(fs.realpathSync(file)).isBlockDevice();
    return new SlotWriter(file, opts.offset, !block && opts.offset === 0);
  }

  openReader(slot: SlotId, range: { start?: number; end?: number } = {}): Readable {
    return new LendingFileReader(this.paths[slot], range);
  }
}
