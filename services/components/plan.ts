import type { Component, Manifest } from '../../bundle/manifest.js';
import { GantryError } from '../../core/errors.js';
import { unmetRequirements, type InstalledVersions } from '../../machines/component-constraints.js';
import { compareVersions } from '../../machines/version.js';

/**
 * What a bundle installs, as components in install order. A bundle without `components` is one
 * `rootfs` component (every bundle before multi-component ones): it keeps the single-image path.
 */
export function orderedComponents(manifest: Manifest): Component[] {
  const list = manifest.components ?? [];
  return list
    .map((c, i) => ({ c, i }))
    .sort((a, b) => a.c.order - b.c.order || a.i - b.i)
    .map(({ c }) => c);
}

export function isComponentBundle(manifest: Pick<Manifest, 'components'>): boolean {
  return manifest.components !== undefined;
}

export interface PlanContext {
  /** Installed version of every component the gateway knows (rootfs: the running slot's). */
  installed: InstalledVersions;
  /** Anti-rollback floor per component. */
  floors: Readonly<Record<string, string | null | undefined>>;
  allowDowngrade: boolean;
  /** Why a component's target is not there on this gateway (no such slot class, plugin or handler). */
  targetProblem(component: Component): string | null;
}

/**
 * Refuses (OTA_INVALID_IMAGE) a component bundle this gateway could not install consistently,
 * before a payload byte is written: a target missing, a version below its component's floor, or
 * an install order in which some step would leave a committed component's requirements unmet
 * (each prefix of the order is checked, with the components not reached yet at their installed
 * versions). That last check is what lets a failed rolling update stop where it failed: the
 * components committed before it already satisfied every requirement.
 */
export function checkPlan(manifest: Manifest, ctx: PlanContext): void {
  const problems: string[] = [];
  const components = orderedComponents(manifest);
  if (!components.some((c) => c.handler === 'ab-slot' && c.target === 'rootfs')) {
    problems.push('a component bundle must carry its rootfs component (ab-slot, target rootfs)');
  }
  for (const c of components) {
    const problem = ctx.targetProblem(c);
    if (problem) problems.push(`${c.name}: ${problem}`);
    const floor = ctx.floors[c.name];
    if (!ctx.allowDowngrade && floor && compareVersions(c.version, floor) < 0) {
      problems.push(`${c.name}: downgrade refused (${c.version} is below ${floor})`);
    }
  }
  const versions: Record<string, string | null | undefined> = { ...ctx.installed };
  components.forEach((c, i) => {
    versions[c.name] = c.version;
    for (const done of components.slice(0, i + 1)) {
      const unmet = unmetRequirements(done.requires, versions);
      if (unmet) problems.push(`${done.name} ${done.version} ${unmet} after ${c.name} is installed`);
    }
  });
  if (problems.length) {
    throw new GantryError(
      'OTA_INVALID_IMAGE',
      `Bundle components refused: ${[...new Set(problems)].join('; ')}`,
      {
        problems: [...new Set(problems)],
      },
    );
  }
}
