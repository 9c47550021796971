import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** `writeFileAtomicSync`'s sibling of `file`, named after the writing process. */
function atomicTempName(file: string): string {
  return `.${path.basename(file)}.${process.pid}.tmp`;
}

/** Names of `writeFileAtomicSync` siblings a kill left before their rename (the start-up sweep's). */
export const ATOMIC_WRITE_TEMP = /^\..+\.\d+\.tmp$/;

/** Prefix of a tree `removeTreeSync` is removing (the start-up sweep finishes what a kill stopped). */
export const DELETING_PREFIX = '.deleting-';

/**
 * Replaces `file` so that after a crash it holds either the old or the new content, never a torn
 * mix: write a sibling, fsync it, rename over, fsync the directory (the rename itself is only
 * durable once the directory entry is). write-file-atomic skips the directory fsync, hence by hand.
 */
export function writeFileAtomicSync(file: string, data: string | Uint8Array, mode = 0o644): void {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true });
  const tmp = path.join(dir, atomicTempName(file));
  const fd = fs.openSync(tmp, 'w', mode);
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  fsyncDirSync(dir);
}

export function fsyncDirSync(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export function readJsonFile<T>(file: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Removes a directory tree so that a kill never leaves half of it looking whole (a snapshot
 * directory with its metadata but without its image, a configuration missing files): it is first
 * renamed aside to `.deleting-…` in the same directory (one atomic step), and only then removed;
 * the start-up sweep removes what a kill left of such a tree.
 */
export function removeTreeSync(dir: string): void {
  const aside = path.join(
    path.dirname(dir),
    `${DELETING_PREFIX}${path.basename(dir)}-${randomBytes(4).toString('hex')}`,
  );
  try {
    fs.renameSync(dir, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  fs.rmSync(aside, { recursive: true, force: true });
}
