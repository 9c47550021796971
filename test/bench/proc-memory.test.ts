import { describe, expect, it } from 'vitest';
import { procMemory } from '../../bench/lib/gantry-child.js';

/**
 * The benches' memory reading (bench/lib/gantry-child.ts): VmRSS, VmHWM and VmRSS's anonymous and
 * file-backed parts, which the foundation bench reports for the idle server and the floor.
 */
describe('procMemory', () => {
  it("should split this process's VmRSS into its anonymous and file-backed parts", () => {
    const before = procMemory(process.pid)!;
    // 32 MiB touched page by page: anonymous memory, resident while `held` lives.
    const held = Buffer.alloc(32 * 1024 * 1024, 1);
    const after = procMemory(process.pid)!;
    expect(held[held.length - 1]).toBe(1);

    for (const m of [before, after]) {
      expect(m.anonymous).toBeGreaterThan(0);
      // The node binary's own pages are mapped from its file.
      expect(m.fileBacked).toBeGreaterThan(1024 * 1024);
      // VmRSS is the two parts and shared memory (none here beyond a few pages).
      expect(Math.abs(m.rss - m.anonymous - m.fileBacked)).toBeLessThan(4 * 1024 * 1024);
      expect(m.hwm).toBeGreaterThanOrEqual(m.rss);
    }
    expect(after.anonymous - before.anonymous).toBeGreaterThanOrEqual(30 * 1024 * 1024);
    expect(Math.abs(after.fileBacked - before.fileBacked)).toBeLessThan(8 * 1024 * 1024);
  });

  it('should answer null for a process that does not exist', () => {
    expect(procMemory(2 ** 22 + 1)).toBeNull();
  });
});
