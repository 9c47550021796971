import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import { writeFileAtomicSync } from '../core/fsutil.js';
import { HostResourceSampler } from './host-resources.js';
import { runTool, ToolError } from './linux/exec.js';
import { detectBootedSlot, mountPointsOf, type SystemPaths } from './linux/proc.js';
import { readSafetyFile, SafetyFileWatcher } from './linux/safety-file.js';
import { LinuxComponentSlots } from './linux/component-slots.js';
import { DEFAULT_UBOOT_VARS, UBootEnv, type SetenvScriptFormat, type UBootVarNames } from './linux/uboot.js';
import { SlotWriter } from './slot-writer.js';
import { LendingFileReader, openFileReadAt, type FileReadAt } from '../core/lending.js';
import {
  SLOT_IDS,
  type BootEnv,
  type ComponentSlotPair,
  type DeviceEvent,
  type GatewayDevice,
  type ResourceUsage,
  type SafetyReadings,
  type SlotId,
  type SlotInfo,
  type SlotRecord,
  type StorageSpace,
  type SystemInfo,
} from './types.js';

/**
 * The gateway Gantry runs on: two slots that are block devices (or image files), U-Boot's
 * environment through fw_printenv/fw_setenv, the booted slot and uptime from /proc, safety
 * readings from the file the crane controller integration writes. Slot records live in one status
 * file per slot on the data partition (RAUC keeps its status file the same way), never on the
 * slots themselves, which are overwritten whole.
 */

export interface LinuxDeviceOptions {
  gatewayId: string;
  model: string;
  /** The gateway's directory on the data partition (status files by default; free space). */
  dir: string;
  slots: Record<SlotId, string>;
  /** Component slot classes other than the root filesystem: class → its two devices. */
  componentSlots?: Record<string, Record<SlotId, string>>;
  slotStatusDir?: string | null;
  fwPrintenv?: string;
  fwSetenv?: string;
  fwEnvConfig?: string | null;
  fwSetenvScriptFormat?: SetenvScriptFormat;
  ubootVars?: UBootVarNames;
  rebootCommand?: string[];
  selfTestCommand?: string[] | null;
  selfTestTimeoutSeconds?: number;
  safetyFile?: string;
  safetyMaxAgeSeconds?: number;
  osVersionFile?: string | null;

  // Seams for tests; the defaults are the real system.
  procRoot?: string;
  devRoot?: string;
  sysRoot?: string;
  osReleaseFile?: string;
  /** Environment of every command run (PATH picks the fw_* tools). */
  env?: NodeJS.ProcessEnv;
  /** Bound on fw_printenv/fw_setenv and the reboot command. */
  toolTimeoutMs?: number;
  now?: () => number;
  /** Tools that succeed but print on stderr ("Warning: Bad CRC, using default environment"). */
  warn?: (message: string) => void;
  safetyDebounceMs?: number;
}

const slotRecordSchema = z.lazy(() =>
  z.object({
    state: z.enum(['empty', 'invalid', 'bootable']),
    version: z.string().nullable(),
    kernel: z.string().nullable(),
    sha256: z.string().nullable(),
    imageBytes: z.int().min(0),
    installedAt: z.number().nullable(),
  }),
);

const EMPTY_RECORD: SlotRecord = {
  state: 'empty',
  version: null,
  kernel: null,
  sha256: null,
  imageBytes: 0,
  installedAt: null,
};

const DEFAULT_TOOL_TIMEOUT_MS = 30_000;

type SlotKind = 'block' | 'file';

/** `KEY=value` / `KEY="value"` lines of os-release(5). */
export function parseOsRelease(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (!m) continue;
    let v = m[2]!;
    if (/^(".*"|'.*')$/.test(v)) v = v.slice(1, -1).replace(/\\(["\\$`])/g, '$1');
    out.set(m[1]!, v);
  }
  return out;
}

export class LinuxDevice implements GatewayDevice {
  readonly gatewayId: string;
  private readonly model: string;
  private readonly dir: string;
  private readonly slotPaths: Record<SlotId, string>;
  private readonly componentSlotPaths: Record<string, Record<SlotId, string>>;
  private readonly statusDir: string;
  private readonly paths: SystemPaths;
  private readonly sysRoot: string;
  private readonly osReleaseFile: string;
  private readonly osVersionFile: string | null;
  private readonly env: NodeJS.ProcessEnv;
  private readonly toolTimeoutMs: number;
  private readonly rebootCommand: string[];
  private readonly selfTestCommand: string[] | null;
  private readonly selfTestTimeoutMs: number;
  private readonly safetyFile: string;
  private readonly safetyMaxAgeSeconds: number;
  private readonly safetyDebounceMs: number;
  private readonly now: () => number;
  private readonly warn: (message: string) => void;
  private readonly uboot: UBootEnv;
  private readonly events = new EventEmitter();
  private readonly sampler = new HostResourceSampler();
  private watcher: SafetyFileWatcher | null = null;
  /** U-Boot's `ver` only changes with a new bootloader and a reboot, so it is read once. */
  private bootloader: string | null = null;

  constructor(opts: LinuxDeviceOptions) {
    this.gatewayId = opts.gatewayId;
    this.model = opts.model;
    this.dir = opts.dir;
    this.slotPaths = { ...opts.slots };
    this.componentSlotPaths = { ...opts.componentSlots };
    this.statusDir = opts.slotStatusDir ?? opts.dir;
    this.paths = { procRoot: opts.procRoot ?? '/proc', devRoot: opts.devRoot ?? '/dev' };
    this.sysRoot = opts.sysRoot ?? '/sys';
    this.osReleaseFile = opts.osReleaseFile ?? '/etc/os-release';
    this.osVersionFile = opts.osVersionFile ?? null;
    this.env = opts.env ?? process.env;
    this.toolTimeoutMs = opts.toolTimeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
    this.rebootCommand = opts.rebootCommand ?? ['systemctl', 'reboot'];
    this.selfTestCommand = opts.selfTestCommand ?? null;
    this.selfTestTimeoutMs = (opts.selfTestTimeoutSeconds ?? 300) * 1000;
    this.safetyFile = opts.safetyFile ?? '/run/gantry/safety.json';
    this.safetyMaxAgeSeconds = opts.safetyMaxAgeSeconds ?? 30;
    this.safetyDebounceMs = opts.safetyDebounceMs ?? 50;
    this.now = opts.now ?? Date.now;
    this.warn = opts.warn ?? ((message) => process.emitWarning(message, 'GantryLinuxDevice'));
    if (this.rebootCommand.length === 0) throw new Error('the reboot command is empty');

    fs.mkdirSync(this.dir, { recursive: true });
    fs.mkdirSync(this.statusDir, { recursive: true });
    // Fail at start-up, not at the first install: both slots exist, are of a writable kind, and
    // are not the same device under two names (writing "B" would then overwrite the running A).
    const [a, b] = SLOT_IDS.map((id) => {
      this.slotKind(id);
      return fs.realpathSync(this.slotPaths[id]);
    });
    if (a === b) throw new Error(`slots A and B are the same device (${a})`);

    this.uboot = new UBootEnv({
      fwPrintenv: opts.fwPrintenv ?? 'fw_printenv',
      fwSetenv: opts.fwSetenv ?? 'fw_setenv',
      fwEnvConfig: opts.fwEnvConfig ?? null,
      scriptFormat: opts.fwSetenvScriptFormat ?? 'libubootenv',
      vars: opts.ubootVars ?? DEFAULT_UBOOT_VARS,
      tool: { env: this.env, timeoutMs: this.toolTimeoutMs },
      scratchDir: this.dir,
      warn: this.warn,
    });
  }

  /** The slot's device path as configured. */
  slotPath(slot: SlotId): string {
    return this.slotPaths[slot];
  }

  private slotKind(slot: SlotId): SlotKind {
    const file = this.slotPaths[slot];
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch (err) {
      throw new Error(`slot ${slot}: ${file} is not there (${(err as NodeJS.ErrnoException).code ?? err})`);
    }
    if (st.isBlockDevice()) return 'block';
    if (st.isFile()) return 'file';
    throw new Error(`slot ${slot}: ${file} is neither a block device nor a regular file`);
  }

  private statusFile(slot: SlotId): string {
    return path.join(this.statusDir, `slot-${slot}.status.json`);
  }

  // --- system ----------------------------------------------------------------------------------

  async bootedSlot(): Promise<SlotId> {
    return detectBootedSlot(this.slotPaths, this.paths);
  }

  /** The OS's own idea of its version, for a slot nobody recorded (the factory image). */
  private osVersion(): string {
    if (this.osVersionFile) {
      try {
        const v = fs.readFileSync(this.osVersionFile, 'utf8').split('\n')[0]!.trim();
        if (v) return v;
      } catch {
        // Fall through to os-release.
      }
    }
    for (const file of [this.osReleaseFile, '/usr/lib/os-release']) {
      try {
        const rel = parseOsRelease(fs.readFileSync(file, 'utf8'));
        const v = rel.get('VERSION_ID') ?? rel.get('VERSION');
        if (v) return v;
      } catch {
        // Next candidate.
      }
    }
    return 'unknown';
  }

  private uptimeSeconds(): number {
    const text = fs.readFileSync(path.join(this.paths.procRoot, 'uptime'), 'utf8');
    const up = Number.parseFloat(text.trim().split(/\s+/)[0] ?? '');
    if (!Number.isFinite(up)) throw new Error(`cannot read uptime from ${text.trim()}`);
    return up;
  }

  async systemInfo(): Promise<SystemInfo> {
    if (this.bootloader === null) {
      const ver = (await this.uboot.list()).get('ver');
      this.bootloader = ver?.trim() || 'U-Boot';
    }
    let version: string | null = null;
    try {
      version = (await this.slots())[await this.bootedSlot()].version;
    } catch {
      // The booted slot cannot be told: the OS's own version still can.
    }
    return {
      model: this.model,
      osVersion: version ?? this.osVersion(),
      kernel: os.release(),
      bootloader: this.bootloader,
      uptimeSeconds: this.uptimeSeconds(),
    };
  }

  // --- slots -----------------------------------------------------------------------------------

  private readSlotRecord(slot: SlotId): SlotRecord | null {
    let text: string;
    try {
      text = fs.readFileSync(this.statusFile(slot), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    try {
      return slotRecordSchema.parse(JSON.parse(text));
    } catch (err) {
      // Written atomically, so this is damage, not a torn write. Never bootable on a guess.
      this.warn(`slot ${slot} status file ${this.statusFile(slot)} is unreadable: ${(err as Error).message}`);
      return { ...EMPTY_RECORD, state: 'invalid' };
    }
  }

  /** Bytes the slot can hold: the partition's size, or for an image file what the file system allows. */
  private capacity(slot: SlotId): number {
    const file = this.slotPaths[slot];
    if (this.slotKind(slot) === 'block') {
      const name = path.basename(fs.realpathSync(file));
      const sizeFile = path.join(this.sysRoot, 'class', 'block', name, 'size');
      const sectors = Number(fs.readFileSync(sizeFile, 'utf8').trim());
      if (!Number.isSafeInteger(sectors)) throw new Error(`slot ${slot}: bad size in ${sizeFile}`);
      return sectors * 512; // sysfs counts 512-byte sectors whatever the logical block size.
    }
    const stats = fs.statfsSync(path.dirname(fs.realpathSync(file)));
    return fs.statSync(file).size + stats.bavail * stats.bsize;
  }

  async slots(): Promise<Record<SlotId, SlotInfo>> {
    let booted: SlotId | null = null;
    try {
      booted = detectBootedSlot(this.slotPaths, this.paths);
    } catch {
      // Reported by bootedSlot(); the records can still be shown.
    }
    const info = (id: SlotId): SlotInfo => {
      let record = this.readSlotRecord(id);
      // The running system came from its slot, so it is bootable even if nobody recorded what it
      // is (the factory image): described from the OS, with no hash or size to claim.
      if (!record && id === booted) {
        record = { ...EMPTY_RECORD, state: 'bootable', version: this.osVersion(), kernel: os.release() };
      }
      return { id, capacityBytes: this.capacity(id), ...(record ?? EMPTY_RECORD) };
    };
    return { A: info('A'), B: info('B') };
  }

  async writeSlotRecord(slot: SlotId, record: SlotRecord): Promise<void> {
    const valid = slotRecordSchema.parse(record);
    writeFileAtomicSync(this.statusFile(slot), JSON.stringify(valid, null, 2));
  }

  async openSlotWriter(slot: SlotId, opts: { offset: number; allowBooted?: boolean }): Promise<SlotWriter> {
    const kind = this.slotKind(slot);
    const file = this.slotPaths[slot];
    // Asked of the kernel every time: if it cannot be told, nothing is written.
    const booted = detectBootedSlot(this.slotPaths, this.paths);
    if (slot === booted && !opts.allowBooted) {
      throw new Error(`refusing to write slot ${slot}: it is the booted slot`);
    }
    if (!opts.allowBooted) {
      const mounted = mountPointsOf(file, this.paths);
      if (mounted.length) {
        throw new Error(`refusing to write slot ${slot}: ${file} is mounted at ${mounted.join(', ')}`);
      }
      if (kind === 'block') await this.assertNotInUse(slot, file);
    }
    if (!Number.isSafeInteger(opts.offset) || opts.offset < 0) throw new Error(`bad offset ${opts.offset}`);
    // A block device is opened r+ (never created, never truncated); an image file restarts empty.
    return new SlotWriter(file, opts.offset, kind === 'file' && opts.offset === 0);
  }

  /** O_EXCL on a block device fails with EBUSY while the kernel uses it (mounted, dm, swap, md). */
  private async assertNotInUse(slot: SlotId, file: string): Promise<void> {
    let handle: fs.promises.FileHandle;
    try {
      handle = await fs.promises.open(file, fs.constants.O_RDONLY | fs.constants.O_EXCL);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EBUSY') {
        throw new Error(`refusing to write slot ${slot}: ${file} is in use by the kernel (mounted or held)`);
      }
      throw err;
    }
    await handle.close();
  }

  openSlotReader(slot: SlotId, range: { start?: number; end?: number } = {}): Readable {
    return new LendingFileReader(this.slotPaths[slot], range);
  }

  openSlotReadAt(slot: SlotId): Promise<FileReadAt> {
    return openFileReadAt(this.slotPaths[slot]);
  }

  componentSlots(slotClass: string): ComponentSlotPair | null {
    const paths = this.componentSlotPaths[slotClass];
    if (!paths) return null;
    return new LinuxComponentSlots(slotClass, paths, this.uboot, (file) => mountPointsOf(file, this.paths));
  }

  // --- bootloader ------------------------------------------------------------------------------

  readBootEnv(): Promise<BootEnv> {
    return this.uboot.read();
  }

  writeBootEnv(patch: Partial<BootEnv>): Promise<BootEnv> {
    return this.uboot.write(patch);
  }

  /** Asks the OS to reboot; resolves once the command accepted it (the process ends soon after). */
  async reboot(): Promise<void> {
    const [cmd, ...args] = this.rebootCommand;
    await runTool(cmd!, args, { env: this.env, timeoutMs: this.toolTimeoutMs });
  }

  async bootId(): Promise<string> {
    const id = fs.readFileSync(path.join(this.paths.procRoot, 'sys/kernel/random/boot_id'), 'utf8').trim();
    if (!id) throw new Error('the kernel reported an empty boot_id');
    return id;
  }

  async selfTest(slot: SlotId): Promise<{ ok: boolean; reason: string | null }> {
    let booted: SlotId;
    try {
      booted = await this.bootedSlot();
    } catch (err) {
      return { ok: false, reason: (err as Error).message };
    }
    // After a bootloader fallback the system runs the other slot: that is no pass for this one.
    if (booted !== slot) return { ok: false, reason: `slot ${slot} is not the booted slot (${booted} is)` };
    if (!this.selfTestCommand) return { ok: true, reason: null };
    const [cmd, ...args] = this.selfTestCommand;
    try {
      await runTool(cmd!, args, {
        env: this.env,
        timeoutMs: this.selfTestTimeoutMs,
        extraEnv: { GANTRY_SLOT: slot, GANTRY_GATEWAY_ID: this.gatewayId },
      });
      return { ok: true, reason: null };
    } catch (err) {
      if (err instanceof ToolError) return { ok: false, reason: `self-test ${err.message}` };
      throw err;
    }
  }

  // --- resources and safety --------------------------------------------------------------------

  async storageSpace(): Promise<StorageSpace> {
    const stats = await fs.promises.statfs(this.dir);
    return { totalBytes: stats.blocks * stats.bsize, freeBytes: stats.bavail * stats.bsize };
  }

  private loadPerCpu(): number {
    const text = fs.readFileSync(path.join(this.paths.procRoot, 'loadavg'), 'utf8');
    const load = Number.parseFloat(text.trim().split(/\s+/)[0] ?? '');
    if (!Number.isFinite(load)) throw new Error(`cannot read the load average from "${text.trim()}"`);
    return Math.round((load / Math.max(1, os.cpus().length)) * 100) / 100;
  }

  async readSafety(): Promise<SafetyReadings> {
    this.watcher?.poke();
    const file = readSafetyFile({
      file: this.safetyFile,
      maxAgeSeconds: this.safetyMaxAgeSeconds,
      now: this.now,
    });
    return { ...file, systemLoad: this.loadPerCpu() };
  }

  private safetyFileChanged(): void {
    // A file that became unreadable emits nothing: the safety service's next periodic read fails
    // and every constraint turns unknown (blocking). Only real readings are pushed.
    this.readSafety().then(
      (readings) => this.events.emit('event', { type: 'safety', readings } satisfies DeviceEvent),
      () => undefined,
    );
  }

  async resources(): Promise<ResourceUsage> {
    return this.sampler.sample();
  }

  onEvent(listener: (event: DeviceEvent) => void): () => void {
    this.watcher ??= new SafetyFileWatcher(
      this.safetyFile,
      () => this.safetyFileChanged(),
      this.safetyDebounceMs,
    );
    this.events.on('event', listener);
    return () => this.events.off('event', listener);
  }

  async close(): Promise<void> {
    this.watcher?.stop();
    this.watcher = null;
    this.events.removeAllListeners();
  }
}
