import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * Comments send the reader to the README by a section's title (`README "How it runs in
 * production"`), and the README sends them on (`see "Bundle format"`). A renamed or removed
 * section leaves those pointing nowhere; this keeps every such reference on a heading.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

const headings = [...README.matchAll(/^#+ (.+)$/gm)].map(([, title]) => title!.trim());

/** A reference names a section by its title or the title's start ("Components" for "Components: …"). */
function isHeading(title: string): boolean {
  return headings.some((heading) => heading.startsWith(title));
}

/** `README "Title"` and `README, "Title"` in the tracked sources, with where each is. */
function sourceReferences(): { title: string; where: string }[] {
  const files = execFileSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8' })
    .split('\0')
    .filter((file) => /\.(ts|js|cjs|mjs|sh)$/.test(file) || file.startsWith('bin/'))
    // This file writes the pattern out to describe it.
    .filter((file) => file !== 'test/unit/readme-references.test.ts');
  return files.flatMap((file) => {
    const full = path.join(ROOT, file);
    if (!fs.existsSync(full)) return [];
    const text = fs.readFileSync(full, 'utf8');
    return [...text.matchAll(/README,? "([^"\n]+)"/g)].map(([, title]) => ({ title: title!, where: file }));
  });
}

describe('README references', () => {
  it('should find the sections the sources name', () => {
    const references = sourceReferences();
    // The scan itself must see the references this test exists for.
    expect(references.map((r) => r.title)).toContain('How it runs in production');
    const dangling = references.filter((r) => !isHeading(r.title));
    expect(dangling).toEqual([]);
  });

  it('should find the sections the README itself points to', () => {
    const titles = [...README.matchAll(/[Ss]ee "([^"\n]+)"/g)].map(([, title]) => title!);
    expect(titles).toContain('Bundle format');
    expect(titles.filter((title) => !isHeading(title))).toEqual([]);
  });

  it('should tell a missing section from a heading', () => {
    expect(isHeading('How it runs in production')).toBe(true);
    expect(isHeading('Roles')).toBe(false);
  });
});
