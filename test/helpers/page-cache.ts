import { execFileSync } from 'node:child_process';
import fs, { constants } from 'node:fs';
import path from 'node:path';

/** Can files in `dir` be opened for direct I/O (not every file system allows it)? */
export function directIoSupported(dir: string): boolean {
  const probe = path.join(dir, `direct-probe-${process.pid}`);
  try {
    fs.closeSync(fs.openSync(probe, constants.O_CREAT | constants.O_WRONLY | constants.O_DIRECT));
    return true;
  } catch {
    return false;
  } finally {
    fs.rmSync(probe, { force: true });
  }
}

/** Bytes of `file` in the page cache (util-linux fincore), or null without the tool. */
export function cachedBytes(file: string): number | null {
  try {
    return Number(execFileSync('fincore', ['-b', '-n', '-o', 'RES', file], { encoding: 'utf8' }).trim());
  } catch {
    return null;
  }
}
