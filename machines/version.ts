/**
 * Firmware version ordering, used for the anti-downgrade floor (`versionFloor` of the partition
 * machine). Semver-like, but lenient about what gateways actually ship:
 *
 * - an optional leading `v`/`V` is ignored (`v5.0.10` = `5.0.10`);
 * - core parts compare numerically (`5.0.10` > `5.0.9`); missing parts count as 0 (`5.1` = `5.1.0`);
 * - a pre-release (`-rc.1`) is lower than the release (`5.0.10-rc.1` < `5.0.10`), and pre-release
 *   identifiers compare as semver says (numeric < alphanumeric, numeric by value, fewer is lower);
 * - build metadata (`+build.7`) is ignored.
 *
 * Non-numeric core parts (`5.x`) are tolerated: they sort above numeric ones, lexically among
 * themselves, so the order stays total and never throws on odd input.
 */

export type VersionOrder = -1 | 0 | 1;

interface ParsedVersion {
  core: string[];
  pre: string[];
}

function parse(version: string): ParsedVersion {
  let v = version.trim();
  if (v.startsWith('v') || v.startsWith('V')) v = v.slice(1);
  const plus = v.indexOf('+');
  if (plus >= 0) v = v.slice(0, plus);
  const dash = v.indexOf('-');
  const core = dash >= 0 ? v.slice(0, dash) : v;
  const pre = dash >= 0 ? v.slice(dash + 1) : '';
  return { core: core.split('.'), pre: pre === '' ? [] : pre.split('.') };
}

const NUMERIC = /^\d+$/;

/** Compares decimal digit strings of any length without losing precision. */
function compareDigits(a: string, b: string): VersionOrder {
  const x = a.replace(/^0+(?=\d)/, '');
  const y = b.replace(/^0+(?=\d)/, '');
  if (x.length !== y.length) return x.length < y.length ? -1 : 1;
  return x === y ? 0 : x < y ? -1 : 1;
}

function compareIdentifier(a: string, b: string): VersionOrder {
  const an = NUMERIC.test(a);
  const bn = NUMERIC.test(b);
  if (an && bn) return compareDigits(a, b);
  if (an) return -1;
  if (bn) return 1;
  return a === b ? 0 : a < b ? -1 : 1;
}

export function compareVersions(a: string, b: string): VersionOrder {
  const pa = parse(a);
  const pb = parse(b);
  const coreLength = Math.max(pa.core.length, pb.core.length);
  for (let i = 0; i < coreLength; i++) {
    const order = compareIdentifier(pa.core[i] ?? '0', pb.core[i] ?? '0');
    if (order !== 0) return order;
  }
  if (pa.pre.length === 0 || pb.pre.length === 0) {
    if (pa.pre.length === pb.pre.length) return 0;
    return pa.pre.length === 0 ? 1 : -1;
  }
  const preLength = Math.max(pa.pre.length, pb.pre.length);
  for (let i = 0; i < preLength; i++) {
    const x = pa.pre[i];
    const y = pb.pre[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const order = compareIdentifier(x, y);
    if (order !== 0) return order;
  }
  return 0;
}

/** The higher of two versions; `null` means "none" and loses to any version. Ties keep `a`. */
export function maxVersion(a: string | null, b: string | null): string | null {
  if (a === null) return b;
  if (b === null) return a;
  return compareVersions(b, a) > 0 ? b : a;
}
