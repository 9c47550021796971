import fs from 'node:fs';
import path from 'node:path';
import { formatBytes } from '../core/format.js';
import { ATOMIC_WRITE_TEMP, DELETING_PREFIX } from '../core/fsutil.js';
import type { JobStore } from './jobs.js';

/**
 * The start-up sweep of the data dir: every kind of file a writer leaves half-made when Gantry is
 * killed mid-write (kill -9, power loss, OOM), removed before anything lists or resumes. Without it
 * a kill during an upload leaves a `.part` file of up to the upload limit on the data partition
 * for good, since nothing else ever looks at it again.
 *
 * What is NOT here is kept on purpose: a slot written by a download or an install (its job resumes
 * from the offset it recorded, or marks the slot invalid), finished snapshots, bundles and uploads
 * their jobs recorded, the recovery image recovery.json names, configuration and plugins in place.
 * Jobs are settled before the sweep by their kind's restart policy (services/job-restart.ts:
 * snapshot and debug-bundle jobs left running are failed, interrupted ZIP swaps undone; update jobs
 * to resume keep their artifacts, which name their files), so what it removes is what no job will
 * claim.
 */

/** One kind of partial file: where a writer puts it and how it is named. */
export interface PartialFileKind {
  /** What it is, for the log. */
  what: string;
  /** Under each gateway's dir (`gateways/<id>`) or under the data dir itself. */
  scope: 'gateway' | 'data';
  /** Directory relative to the scope's root; a `*` segment stands for each sub-directory. */
  dir: string;
  /** Names (files or directories) of this kind in that directory. */
  match: RegExp;
  /**
   * A file of this name may be a finished one a record names (a job's artifact, recovery.json):
   * kept when it is in use, removed when nothing names it (the writer was killed between putting
   * the file in place and recording it).
   */
  keepWhenInUse?: true;
}

export const PARTIAL_FILE_KINDS: readonly PartialFileKind[] = [
  // services/updates/uploads.ts receiveFile: manual and recovery uploads while their body arrives
  // or until verified. An upload is one request: nothing resumes it after a restart.
  { what: 'upload body', scope: 'gateway', dir: 'uploads/incoming', match: /\.part$/ },
  // UploadStore.verify renames a verified upload into place, then records its job.
  {
    what: 'unrecorded upload',
    scope: 'gateway',
    dir: 'uploads',
    match: /^[0-9a-f]{64}\.bundle$/,
    keepWhenInUse: true,
  },
  // RecoveryService.storeRecoveryImage: the new image is in place before recovery.json names it,
  // and the previous one stays while a factory reset still reads it.
  {
    what: 'unreferenced recovery image',
    scope: 'gateway',
    dir: 'recovery',
    match: /\.bundle$/,
    keepWhenInUse: true,
  },
  // services/snapshots.ts: a copy in progress (its job is marked failed: a snapshot is not
  // resumed, the slot may have changed since).
  { what: 'snapshot in progress', scope: 'gateway', dir: 'snapshots', match: /^\.staging-/ },
  // services/debug-bundle.ts: collected files and the archive being packed (job marked failed).
  {
    what: 'debug bundle in progress',
    scope: 'gateway',
    dir: 'debug',
    match: /^\.staging-|\.tar\.gz\.part$/,
  },
  // ...renamed into place, then recorded as complete.
  {
    what: 'unrecorded debug bundle',
    scope: 'gateway',
    dir: 'debug',
    match: /^debug-.*\.tar\.gz$/,
    keepWhenInUse: true,
  },
  // services/provisioning.ts: a ZIP extracted beside what it replaces, and the swap's leftovers
  // (what an interrupted swap needs was put back by ProvisioningService.recover before).
  { what: 'configuration ZIP staging', scope: 'gateway', dir: 'config', match: /^\.(staging|trash|failed)-/ },
  { what: 'plugin ZIP staging', scope: 'gateway', dir: 'plugins', match: /^\.staging-/ },
  { what: 'plugin ZIP staging', scope: 'gateway', dir: 'plugins/*', match: /^\.(staging|trash|failed)-/ },
  // services/components: a job's staged component payloads, removed when it ends; kept while the
  // job is unfinished (it resumes from them), swept when it ended while Gantry was down.
  {
    what: 'component payloads of an ended job',
    scope: 'gateway',
    dir: 'components/staging',
    match: /^[A-Z]+(?:-[A-Z]+)*-[0-9A-F]+$/,
    keepWhenInUse: true,
  },
  // core/fsutil.ts removeTreeSync: a tree renamed aside to be removed (snapshots pruned or reset,
  // configuration, plugins and uploads wiped by a factory reset).
  { what: 'interrupted removal', scope: 'gateway', dir: '.', match: new RegExp(`^${DELETING_PREFIX}`) },
  {
    what: 'interrupted removal',
    scope: 'gateway',
    dir: 'snapshots',
    match: new RegExp(`^${DELETING_PREFIX}`),
  },
  // core/fsutil.ts writeFileAtomicSync: the sibling written before its rename.
  { what: 'atomic-write temp', scope: 'gateway', dir: 'device', match: ATOMIC_WRITE_TEMP },
  { what: 'atomic-write temp', scope: 'gateway', dir: 'feed/metadata', match: ATOMIC_WRITE_TEMP },
  { what: 'atomic-write temp', scope: 'gateway', dir: 'recovery', match: ATOMIC_WRITE_TEMP },
  { what: 'atomic-write temp', scope: 'data', dir: 'secrets', match: ATOMIC_WRITE_TEMP },
  // server/bundle-loader.ts: the server bundle's V8 code cache.
  { what: 'atomic-write temp', scope: 'data', dir: 'cache', match: ATOMIC_WRITE_TEMP },
  // device/linux/uboot.ts: the fw_setenv script of the Linux device, in its device dir.
  { what: 'fw_setenv script', scope: 'gateway', dir: 'device', match: /^gantry-setenv-/ },
  // rest-compat/routes/zip.ts: ZIP bodies (multer's random names); ZIP operations are not resumed.
  { what: 'ZIP upload', scope: 'data', dir: 'uploads', match: /\.upload$/ },
];

/** Something the sweep removed. */
export interface SweptFile {
  what: string;
  /** The gateway whose dir held it; null for the data dir's own. */
  gatewayId: string | null;
  path: string;
  /** Bytes it held (a directory: everything under it). */
  bytes: number;
}

export interface SweepInput {
  dataDir: string;
  gatewayIds: readonly string[];
  gatewayDir(gatewayId: string): string;
  /** Whether a record names this file of the gateway, or of the data dir (null). See {@link filesInUse}. */
  inUse(gatewayId: string | null, name: string): boolean;
}

/**
 * Removes every partial file of `kinds` from the data dir. Synchronous, and run before anything
 * writes there (no request served, no job resumed), so it never races a writer of this process.
 */
export function sweepDataDir(
  input: SweepInput,
  kinds: readonly PartialFileKind[] = PARTIAL_FILE_KINDS,
): SweptFile[] {
  const swept: SweptFile[] = [];
  for (const kind of kinds) {
    const roots: Array<[string | null, string]> =
      kind.scope === 'data'
        ? [[null, input.dataDir]]
        : input.gatewayIds.map((id) => [id, input.gatewayDir(id)] as [string, string]);
    for (const [gatewayId, root] of roots) {
      for (const dir of expand(root, kind.dir)) {
        for (const name of entries(dir)) {
          if (!kind.match.test(name)) continue;
          if (kind.keepWhenInUse && input.inUse(gatewayId, name)) continue;
          const file = path.join(dir, name);
          const bytes = diskBytes(file);
          fs.rmSync(file, { recursive: true, force: true });
          swept.push({ what: kind.what, gatewayId, path: file, bytes });
        }
      }
    }
  }
  return swept;
}

/**
 * What the store's records name, by gateway and file name: every job's artifact (`path`: a
 * verified upload, a finished debug bundle; `source.path`: the file a deployment or factory reset
 * reads) plus `extra` (the recovery image recovery.json names). By name, not by full path: a
 * relative data dir recorded from another working directory still names the same files. The jobs
 * are read only if the sweep meets such a file: a start with nothing to sweep does not pay for it.
 */
export function filesInUse(
  jobs: Pick<JobStore, 'artifactPaths'>,
  extra: Iterable<{ gatewayId: string; path: string }> = [],
): SweepInput['inUse'] {
  let names: Set<string> | undefined;
  const load = () => {
    const found = new Set<string>();
    for (const e of [...jobs.artifactPaths(), ...extra])
      found.add(`${e.gatewayId}\0${path.basename(e.path)}`);
    return found;
  };
  return (gatewayId, name) => gatewayId !== null && (names ??= load()).has(`${gatewayId}\0${name}`);
}

/** One log line per gateway and kind: what was removed, its names and the space it freed. */
export function describeSwept(
  swept: readonly SweptFile[],
): Array<{ gatewayId: string | null; message: string }> {
  const groups = new Map<string, SweptFile[]>();
  for (const s of swept) {
    const key = `${s.gatewayId ?? ''}\0${s.what}`;
    groups.set(key, [...(groups.get(key) ?? []), s]);
  }
  return [...groups.values()].map((files) => {
    const bytes = files.reduce((n, f) => n + f.bytes, 0);
    const names = files.map((f) => path.basename(f.path)).join(', ');
    return {
      gatewayId: files[0]!.gatewayId,
      message: `Start-up sweep: removed ${files[0]!.what} left by an interrupted run (${files.length}, ${formatBytes(bytes)}): ${names}`,
    };
  });
}

function expand(root: string, rel: string): string[] {
  let dirs = [root];
  for (const segment of rel.split('/')) {
    if (segment === '.' || segment === '') continue;
    dirs =
      segment === '*'
        ? dirs.flatMap((d) =>
            entries(d)
              .filter((n) => !n.startsWith('.'))
              .map((n) => path.join(d, n))
              .filter(isDirectory),
          )
        : dirs.map((d) => path.join(d, segment));
  }
  return dirs;
}

function entries(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw err;
  }
}

function isDirectory(p: string): boolean {
  return fs.lstatSync(p, { throwIfNoEntry: false })?.isDirectory() ?? false;
}

function diskBytes(p: string): number {
  const st = fs.lstatSync(p, { throwIfNoEntry: false });
  if (!st) return 0;
  if (!st.isDirectory()) return st.size;
  return entries(p).reduce((n, name) => n + diskBytes(path.join(p, name)), 0);
}
