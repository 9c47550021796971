import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareVersions, maxVersion } from '../../machines/version.js';

describe('compareVersions', () => {
  it.each([
    ['v5.0.10', 'v5.0.9', 1],
    ['5.0.10', 'v5.0.10', 0],
    ['v5.1', 'v5.1.0', 0],
    ['v5.0.10-rc.1', 'v5.0.10', -1],
    ['v5.0.10-rc.2', 'v5.0.10-rc.10', -1],
    ['v5.0.10-alpha', 'v5.0.10-beta', -1],
    ['v5.0.10-1', 'v5.0.10-alpha', -1],
    ['v5.0.10-rc', 'v5.0.10-rc.1', -1],
    ['v5.0.10+build.9', 'v5.0.10+build.1', 0],
    ['v10.0.0', 'v9.99.99', 1],
    ['v5.0.010', 'v5.0.10', 0],
    ['v5.0.99999999999999999999', 'v5.0.99999999999999999998', 1],
    ['v5.x', 'v5.9', 1],
  ] as const)('should order %s against %s as %i', (a, b, expected) => {
    expect(compareVersions(a, b)).toBe(expected);
    expect(compareVersions(b, a)).toBe(expected === 0 ? 0 : -expected);
  });

  const part = fc.oneof(fc.nat(30).map(String), fc.constantFrom('0', '007', 'x', 'rc', 'beta'));
  const version = fc
    .record({
      v: fc.boolean(),
      core: fc.array(part, { minLength: 1, maxLength: 4 }),
      pre: fc.array(part, { maxLength: 3 }),
      build: fc.option(fc.constantFrom('b1', 'build.7')),
    })
    .map(
      ({ v, core, pre, build }) =>
        `${v ? 'v' : ''}${core.join('.')}${pre.length ? `-${pre.join('.')}` : ''}${build ? `+${build}` : ''}`,
    );

  it('should be a total order (antisymmetric, transitive, reflexive)', () => {
    fc.assert(
      fc.property(version, version, version, (a, b, c) => {
        expect(compareVersions(a, a)).toBe(0);
        expect(compareVersions(a, b)).toBe(-compareVersions(b, a) || 0);
        if (compareVersions(a, b) <= 0 && compareVersions(b, c) <= 0) {
          expect(compareVersions(a, c)).toBeLessThanOrEqual(0);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('should keep the higher version in maxVersion, null losing to anything', () => {
    expect(maxVersion(null, null)).toBeNull();
    expect(maxVersion(null, 'v1')).toBe('v1');
    expect(maxVersion('v1', null)).toBe('v1');
    expect(maxVersion('v5.0.9', 'v5.0.10')).toBe('v5.0.10');
    expect(maxVersion('v5.1.0', 'v5.1.0-rc.1')).toBe('v5.1.0');
    fc.assert(
      fc.property(fc.option(version), fc.option(version), (a, b) => {
        const m = maxVersion(a, b);
        if (a !== null) expect(compareVersions(m!, a)).toBeGreaterThanOrEqual(0);
        if (b !== null) expect(compareVersions(m!, b)).toBeGreaterThanOrEqual(0);
      }),
    );
  });
});
