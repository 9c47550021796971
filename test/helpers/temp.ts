import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, onTestFinished } from 'vitest';

/**
 * The one way tests make temporary directories: under `os.tmpdir()` (the run's TMPDIR), removed
 * when the test that made it finishes, or, made outside a test (beforeAll, module scope), when its
 * file's tests are done. `.ci/run` fails when anything is left under TMPDIR after the suite.
 */

/** Directories made outside a test: removed after the file's last afterAll. */
const fileScoped: string[] = [];

// Registered when a test file imports this module (its collection), so it is the file's first
// afterAll and, hooks running in reverse, its last: servers stopped by the file's own afterAll
// first, then their directories removed.
// Scripts that share the test helpers but are not vitest files (the VM scenario, run by tsx) have
// no suite to hook into: there, whoever makes a directory removes it.
try {
  afterAll(() => {
    for (const dir of fileScoped.splice(0).reverse()) removeDir(dir);
  });
} catch {
  /* not under vitest */
}

export function makeTempDir(prefix = 'gantry-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  try {
    // After the test's afterEach hooks: what runs on the directory is stopped by then.
    onTestFinished(() => removeDir(dir));
  } catch {
    fileScoped.push(dir);
  }
  return dir;
}

function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}

/**
 * Environment for a child process running TypeScript through tsx: tsx's compile cache goes to
 * `$TMPDIR/tsx-<uid>` and is never removed; without it nothing of the child's stays there.
 */
export function tsxChildEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...env, TSX_DISABLE_CACHE: '1' };
}
