import { describe, expect, it } from 'vitest';
import { youngGenerationSweeper } from '../../core/young-gc.js';

describe('youngGenerationSweeper', () => {
  it('should ask for a minor collection each time the bytes passed reach the step, and never a major one', () => {
    const calls: string[] = [];
    const sweep = youngGenerationSweeper(100, ({ type }) => calls.push(type));
    for (const n of [60, 30, 9]) sweep(n); // 99: not yet
    expect(calls).toEqual([]);
    sweep(1); // 100
    expect(calls).toEqual(['minor']);
    sweep(250); // one request however far past the step
    sweep(99);
    expect(calls).toEqual(['minor', 'minor']);
    sweep(1);
    expect(calls).toEqual(['minor', 'minor', 'minor']);
  });

  it('should do nothing when the collector is not exposed', () => {
    const sweep = youngGenerationSweeper(1, undefined);
    expect(() => sweep(10)).not.toThrow();
  });
});
