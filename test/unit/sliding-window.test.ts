import { describe, expect, it } from 'vitest';
import { SlidingWindow } from '../../services/updates/transfer.js';

/** Feeds one running byte count per period; the tick at which the window first reports `< floor`. */
function firstSlowTick(window: SlidingWindow, floorBytes: number, countAt: (tick: number) => number): number {
  for (let tick = 1; tick <= 1000; tick++) {
    const moved = window.sample(countAt(tick));
    if (moved !== null && moved < floorBytes) return tick;
  }
  return -1;
}

describe('slow-retrieval window (SlidingWindow)', () => {
  it('should sample a 60 s window every second, and short test windows in ten steps', () => {
    expect(new SlidingWindow(60_000)).toMatchObject({ periodMs: 1000, spanMs: 60_000 });
    expect(new SlidingWindow(300)).toMatchObject({ periodMs: 30, spanMs: 300 });
  });

  it('should report nothing until a whole window has been observed', () => {
    const w = new SlidingWindow(10_000); // 10 periods of 1 s
    for (let tick = 1; tick < 10; tick++) expect(w.sample(0)).toBeNull();
    expect(w.sample(0)).toBe(0);
  });

  // Regression (issue 11.6): with one fixed window after another, a first burst of 64 KiB carried
  // a stalled feed through the whole first window and part of the next (first abort at ~120 s).
  it('should forget a first burst once it is a window old: a stalled feed is slow one period after the window', () => {
    const floor = 1024 * 60; // 1 KiB/s over 60 s
    const burst = 64 * 1024;
    expect(firstSlowTick(new SlidingWindow(60_000), floor, () => burst)).toBe(61);
    // The same with no burst at all: the burst costs at most that one period.
    expect(firstSlowTick(new SlidingWindow(60_000), floor, () => 0)).toBe(60);
  });

  it('should measure the bytes of the last window only, not the average since the start', () => {
    const floor = 1024 * 60;
    // 1 MiB in the first 10 s, then 512 B/s: below the floor over the last minute at tick 70.
    const count = (tick: number) => Math.min(tick, 10) * 100 * 1024 + Math.max(0, tick - 10) * 512;
    expect(firstSlowTick(new SlidingWindow(60_000), floor, count)).toBe(70);
    // 2 KiB/s throughout is never slow.
    expect(firstSlowTick(new SlidingWindow(60_000), floor, (t) => t * 2048)).toBe(-1);
  });
});
