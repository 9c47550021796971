import fs from 'node:fs';
import path from 'node:path';
import { SLOT_IDS, type SlotId } from '../types.js';

/**
 * Which slot the running system booted from, from what the kernel says (never from Gantry's own
 * records: after a bootloader fallback those are exactly what is wrong). In order:
 * `gantry.slot=A|B` on the kernel command line (set by the boot script), then `root=` on the
 * command line, then the device mounted at `/` in /proc/self/mountinfo. Device paths are compared
 * after resolving symlinks (/dev/disk/by-partlabel/rootfs_a → /dev/mmcblk0p2), and block devices
 * also by device number (mountinfo often names the root device `/dev/root`).
 */

export interface SystemPaths {
  /** Where /proc is (tests point it at a directory of fakes). */
  procRoot: string;
  /** Where /dev is: `root=/dev/…` and `root=PARTLABEL=…` are looked up below it. */
  devRoot: string;
}

export interface MountEntry {
  /** major:minor of the mounted device. */
  device: string;
  mountPoint: string;
  fsType: string;
  source: string;
}

/** Kernel parameters, before any `--` (what follows goes to init, not to the kernel). */
export function parseCmdline(text: string): Map<string, string> {
  const params = new Map<string, string>();
  const tokens = text.trim().match(/(?:[^\s"]+|"[^"]*")+/g) ?? [];
  for (const raw of tokens) {
    if (raw === '--') break;
    const token = raw.replace(/"/g, '');
    const eq = token.indexOf('=');
    if (eq < 0) params.set(token, '');
    else params.set(token.slice(0, eq), token.slice(eq + 1));
  }
  return params;
}

/** mountinfo escapes space, tab, newline and backslash as octal (`\040`). */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountinfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(' ');
    const sep = fields.indexOf('-');
    if (sep < 6 || fields.length < sep + 3) continue;
    entries.push({
      device: fields[2]!,
      mountPoint: unescapeMount(fields[4]!),
      fsType: fields[sep + 1]!,
      source: unescapeMount(fields[sep + 2]!),
    });
  }
  return entries;
}

const TAGS: Record<string, string> = {
  PARTLABEL: 'disk/by-partlabel',
  PARTUUID: 'disk/by-partuuid',
  LABEL: 'disk/by-label',
  UUID: 'disk/by-uuid',
};

/** `root=` value → a path below devRoot, or null for forms we cannot resolve (e.g. `/dev/nfs`, `0x0802`). */
export function rootDevicePath(root: string, devRoot: string): string | null {
  const tag = /^([A-Z]+)=(.+)$/.exec(root);
  if (tag) {
    const dir = TAGS[tag[1]!];
    // by-partuuid links are lower case; the kernel accepts either.
    const value = tag[1] === 'PARTUUID' ? tag[2]!.toLowerCase() : tag[2]!;
    return dir ? path.join(devRoot, dir, value) : null;
  }
  if (root.startsWith('/dev/')) return path.join(devRoot, root.slice('/dev/'.length));
  return null;
}

interface Identity {
  real: string | null;
  /** major:minor when a block device. */
  devno: string | null;
}

function devno(rdev: bigint): string {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

function identify(file: string): Identity {
  let real: string | null = null;
  try {
    real = fs.realpathSync(file);
  } catch {
    return { real: null, devno: null };
  }
  try {
    const st = fs.statSync(real, { bigint: true });
    return { real, devno: st.isBlockDevice() ? devno(st.rdev) : null };
  } catch {
    return { real, devno: null };
  }
}

function matchSlot(
  slots: Record<SlotId, string>,
  candidate: { path?: string | null; devno?: string | null },
): SlotId | null {
  const want = candidate.path ? identify(candidate.path) : { real: null, devno: null };
  const wantDevno = candidate.devno ?? want.devno;
  for (const id of SLOT_IDS) {
    const slot = identify(slots[id]);
    if (want.real && slot.real && want.real === slot.real) return id;
    if (wantDevno && slot.devno && wantDevno === slot.devno) return id;
  }
  return null;
}

export function readMountinfo(paths: SystemPaths): MountEntry[] {
  return parseMountinfo(fs.readFileSync(path.join(paths.procRoot, 'self', 'mountinfo'), 'utf8'));
}

/** Resolves the booted slot, or throws saying what the system reported and why it matched nothing. */
export function detectBootedSlot(slots: Record<SlotId, string>, paths: SystemPaths): SlotId {
  const seen: string[] = [];
  let cmdline: Map<string, string> | null = null;
  try {
    cmdline = parseCmdline(fs.readFileSync(path.join(paths.procRoot, 'cmdline'), 'utf8'));
  } catch (err) {
    seen.push(`${path.join(paths.procRoot, 'cmdline')} unreadable (${(err as Error).message})`);
  }
  const explicit = cmdline?.get('gantry.slot');
  if (explicit !== undefined) {
    const id = explicit.toUpperCase();
    if (id === 'A' || id === 'B') return id;
    // A wrong explicit value is a broken boot script: refuse rather than guess from root=.
    throw new Error(`kernel command line has gantry.slot="${explicit}", which is neither A nor B`);
  }
  const root = cmdline?.get('root');
  if (root) {
    const dev = rootDevicePath(root, paths.devRoot);
    const id = dev ? matchSlot(slots, { path: dev }) : null;
    if (id) return id;
    seen.push(`root=${root} on the kernel command line`);
  }
  try {
    const mounts = readMountinfo(paths);
    // The last mount on / is the one visible (an overlay or bind mount may stack on the first).
    const rootMounts = mounts.filter((m) => m.mountPoint === '/').reverse();
    for (const m of rootMounts) {
      const source = m.source.startsWith('/dev/') ? path.join(paths.devRoot, m.source.slice(5)) : m.source;
      const id = matchSlot(slots, { path: path.isAbsolute(source) ? source : null, devno: m.device });
      if (id) return id;
      seen.push(`${m.source} (${m.device}, ${m.fsType}) mounted at /`);
    }
    if (!rootMounts.length) seen.push('nothing mounted at / in mountinfo');
  } catch (err) {
    seen.push(`mountinfo unreadable (${(err as Error).message})`);
  }
  throw new Error(
    `cannot tell which slot is booted: ${seen.join('; ')} match neither slot ` +
      `(A=${slots.A}, B=${slots.B}); add gantry.slot=A|B to the kernel command line`,
  );
}

/** Where `slot` is mounted, if anywhere (a slot mounted at /mnt is in use too). */
export function mountPointsOf(slotPath: string, paths: SystemPaths): string[] {
  const target = identify(slotPath);
  if (!target.real) return [];
  const points: string[] = [];
  for (const m of readMountinfo(paths)) {
    const source = m.source.startsWith('/dev/') ? path.join(paths.devRoot, m.source.slice(5)) : m.source;
    const mounted = path.isAbsolute(source) ? identify(source) : { real: null, devno: null };
    if ((mounted.real && mounted.real === target.real) || (target.devno && target.devno === m.device)) {
      points.push(m.mountPoint);
    }
  }
  return points;
}
