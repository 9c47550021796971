import { compareVersions } from './version.js';

/**
 * Version constraints between components (`app v2.x needs rootfs >= v5.1.0`), as pure functions
 * shared by the bundle check at download (services/components/plan.ts) and the component
 * sequence statechart's rollback rule (machines/component-sequence.ts).
 */

export interface Requirement {
  component: string;
  min_version?: string | undefined;
  below_version?: string | undefined;
}

/** Installed version of each component by name; absent or null: not installed. */
export type InstalledVersions = Readonly<Record<string, string | null | undefined>>;

/** Why `requirement` does not hold for these versions, or null when it does. */
export function unmetRequirement(requirement: Requirement, versions: InstalledVersions): string | null {
  const have = versions[requirement.component] ?? null;
  const wanted = [
    requirement.min_version ? `>= ${requirement.min_version}` : null,
    requirement.below_version ? `< ${requirement.below_version}` : null,
  ]
    .filter(Boolean)
    .join(' and ');
  if (have === null) return `needs ${requirement.component} ${wanted}, which is not installed`;
  const tooLow = requirement.min_version !== undefined && compareVersions(have, requirement.min_version) < 0;
  const tooHigh =
    requirement.below_version !== undefined && compareVersions(have, requirement.below_version) >= 0;
  return tooLow || tooHigh ? `needs ${requirement.component} ${wanted}, has ${have}` : null;
}

/** Every unmet requirement of a list, joined for a message; null when all hold. */
export function unmetRequirements(
  requirements: readonly Requirement[],
  versions: InstalledVersions,
): string | null {
  const unmet = requirements.map((r) => unmetRequirement(r, versions)).filter((m) => m !== null);
  return unmet.length ? unmet.join('; ') : null;
}
