import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { LinuxDevice, type LinuxDeviceOptions } from '../../device/linux.js';
import type { DeviceEvent, SlotRecord } from '../../device/types.js';
import { makeTempDir } from '../helpers/temp.js';

/**
 * LinuxDevice on a fake board in a temp dir: regular files as slots (reached through
 * /dev/disk/by-partlabel-style symlinks), a fake /proc, and the fake fw_printenv/fw_setenv of
 * test/fixtures/fake-uboot found on PATH, keeping the U-Boot environment in a file.
 */

const FAKE_UBOOT = fileURLToPath(new URL('../fixtures/fake-uboot', import.meta.url));
const SLOT_BYTES = 64 * 1024;
const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Board {
  root: string;
  proc: string;
  dev: string;
  envFile: string;
  log: string;
  safetyFile: string;
  slotFile: { A: string; B: string };
  env: NodeJS.ProcessEnv;
  warnings: string[];
  setCmdline(text: string): void;
  setMountinfo(lines: string[]): void;
  setUbootEnv(vars: Record<string, string>): void;
  ubootEnv(): Record<string, string>;
  logLines(): string[];
  writeSafety(readings: Record<string, unknown>): void;
  device(extra?: Partial<LinuxDeviceOptions>): LinuxDevice;
}

function mountLine(id: number, devno: string, point: string, source: string, fsType = 'ext4'): string {
  return `${id} 1 ${devno} / ${point} rw,relatime shared:1 - ${fsType} ${source} rw`;
}

function makeBoard(): Board {
  const root = makeTempDir('gantry-linux-');
  const proc = path.join(root, 'proc');
  const dev = path.join(root, 'dev');
  const byLabel = path.join(dev, 'disk', 'by-partlabel');
  fs.mkdirSync(path.join(proc, 'self'), { recursive: true });
  fs.mkdirSync(byLabel, { recursive: true });
  fs.mkdirSync(path.join(root, 'slots'));
  fs.mkdirSync(path.join(root, 'etc'));
  const slotFile = { A: path.join(root, 'slots', 'p2.img'), B: path.join(root, 'slots', 'p3.img') };
  fs.writeFileSync(slotFile.A, Buffer.alloc(SLOT_BYTES, 0xaa));
  fs.writeFileSync(slotFile.B, Buffer.alloc(SLOT_BYTES, 0xbb));
  // Two names per partition, as udev makes them: the kernel name and the GPT label.
  fs.symlinkSync(slotFile.A, path.join(dev, 'mmcblk0p2'));
  fs.symlinkSync(slotFile.B, path.join(dev, 'mmcblk0p3'));
  fs.symlinkSync('../../mmcblk0p2', path.join(byLabel, 'rootfs_a'));
  fs.symlinkSync('../../mmcblk0p3', path.join(byLabel, 'rootfs_b'));
  fs.writeFileSync(
    path.join(proc, 'cmdline'),
    'console=ttymxc0,115200 root=PARTLABEL=rootfs_a rootwait ro\n',
  );
  fs.writeFileSync(path.join(proc, 'uptime'), '5400.25 10000.00\n');
  fs.writeFileSync(
    path.join(proc, 'loadavg'),
    `${(0.5 * os.cpus().length).toFixed(2)} 0.40 0.30 1/123 4567\n`,
  );
  fs.writeFileSync(path.join(proc, 'self', 'mountinfo'), mountLine(20, '179:2', '/', '/dev/root') + '\n');
  fs.writeFileSync(
    path.join(root, 'etc', 'os-release'),
    'NAME="Gantry Linux"\nVERSION="5.0.4 (yard)"\nVERSION_ID=5.0.4\nID=gantry\n',
  );
  const envFile = path.join(root, 'uboot.env');
  const log = path.join(root, 'uboot.log');
  const safetyFile = path.join(root, 'run', 'gantry', 'safety.json');
  const warnings: string[] = [];
  const env = {
    ...process.env,
    PATH: `${FAKE_UBOOT}${path.delimiter}${process.env.PATH ?? '/usr/bin:/bin'}`,
    FAKE_UBOOT_ENV: envFile,
    FAKE_UBOOT_LOG: log,
  };
  const devices: LinuxDevice[] = [];
  cleanups.push(async () => {
    for (const d of devices) await d.close();
    fs.rmSync(root, { recursive: true, force: true });
  });
  const board: Board = {
    root,
    proc,
    dev,
    envFile,
    log,
    safetyFile,
    slotFile,
    env,
    warnings,
    setCmdline: (text) => fs.writeFileSync(path.join(proc, 'cmdline'), `${text}\n`),
    setMountinfo: (lines) => fs.writeFileSync(path.join(proc, 'self', 'mountinfo'), `${lines.join('\n')}\n`),
    setUbootEnv: (vars) =>
      fs.writeFileSync(
        envFile,
        Object.entries(vars)
          .map(([k, v]) => `${k}=${v}\n`)
          .join(''),
      ),
    ubootEnv: () =>
      Object.fromEntries(
        fs
          .readFileSync(envFile, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      ),
    logLines: () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean) : []),
    writeSafety: (readings) => {
      fs.mkdirSync(path.dirname(safetyFile), { recursive: true });
      const tmp = `${safetyFile}.tmp`;
      fs.writeFileSync(tmp, JSON.stringify(readings));
      fs.renameSync(tmp, safetyFile);
    },
    device: (extra = {}) => {
      const d = new LinuxDevice({
        gatewayId: 'GW-L1',
        model: 'Univa-GW-Pro',
        dir: path.join(root, 'data', 'gateways', 'GW-L1', 'device'),
        slots: { A: path.join(byLabel, 'rootfs_a'), B: path.join(byLabel, 'rootfs_b') },
        procRoot: proc,
        devRoot: dev,
        sysRoot: path.join(root, 'sys'),
        osReleaseFile: path.join(root, 'etc', 'os-release'),
        safetyFile,
        env,
        toolTimeoutMs: 10_000,
        warn: (m) => warnings.push(m),
        rebootCommand: ['sh', '-c', 'exit 99'],
        ...extra,
      });
      devices.push(d);
      return d;
    },
  };
  board.setUbootEnv({
    bootcmd: 'run distro_bootcmd',
    boot_slot: 'A',
    upgrade_available: '0',
    bootcount: '0',
    bootlimit: '3',
  });
  return board;
}

async function writeAll(stream: Writable, data: Buffer): Promise<void> {
  stream.end(data);
  await finished(stream);
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function nextEvent(device: LinuxDevice): Promise<DeviceEvent> {
  return new Promise((resolve) => {
    const off = device.onEvent((e) => {
      off();
      resolve(e);
    });
  });
}

const SAFE = {
  crane_motion: 'idle',
  acs_collision: 'clear',
  ups_battery_percent: 85,
  network_connected: true,
};

/** A block device that exists here to stat (never opened), for device-number matching. */
function someBlockDevice(): string | null {
  for (const name of ['loop7', 'loop6', 'loop0', 'sda', 'vda', 'nvme0n1']) {
    try {
      if (fs.statSync(`/dev/${name}`).isBlockDevice()) return `/dev/${name}`;
    } catch {
      // next
    }
  }
  return null;
}

describe('LinuxDevice', () => {
  describe('booted slot (from the running system)', () => {
    it('should take gantry.slot=A|B from the kernel command line first', async () => {
      const board = makeBoard();
      board.setCmdline('root=PARTLABEL=rootfs_a gantry.slot=B rootwait');
      expect(await board.device().bootedSlot()).toBe('B');
    });

    it('should resolve root=PARTLABEL=… against the configured slots', async () => {
      const board = makeBoard();
      board.setCmdline('console=ttyS0 root=PARTLABEL=rootfs_b rootwait');
      expect(await board.device().bootedSlot()).toBe('B');
    });

    it('should resolve root=/dev/… through symlinks to the same device as a slot', async () => {
      const board = makeBoard();
      board.setCmdline('root=/dev/mmcblk0p3 rootfstype=ext4 -- init args root=/dev/mmcblk0p2');
      expect(await board.device().bootedSlot()).toBe('B');
    });

    it('should fall back to the device mounted at / in mountinfo', async () => {
      const board = makeBoard();
      board.setCmdline('console=ttyS0 quiet');
      board.setMountinfo([
        mountLine(1, '0:21', '/proc', 'proc', 'proc'),
        mountLine(20, '179:3', '/', '/dev/mmcblk0p3'),
        mountLine(21, '179:5', '/data', '/dev/mmcblk0p5'),
      ]);
      expect(await board.device().bootedSlot()).toBe('B');
    });

    it('should use mountinfo when root= names a device that is no slot (e.g. an initramfs)', async () => {
      const board = makeBoard();
      board.setCmdline('root=/dev/ram0');
      board.setMountinfo([mountLine(20, '179:2', '/', '/dev/mmcblk0p2')]);
      expect(await board.device().bootedSlot()).toBe('A');
    });

    it.skipIf(someBlockDevice() === null)(
      'should match a block device slot by device number when mountinfo says /dev/root',
      async () => {
        const board = makeBoard();
        const blockDev = someBlockDevice()!;
        const rdev = fs.statSync(blockDev).rdev;
        const devno = `${Math.floor(rdev / 256) & 0xfff}:${(rdev & 0xff) | ((rdev >> 12) & 0xfff00)}`;
        board.setCmdline('console=ttyS0');
        board.setMountinfo([mountLine(20, devno, '/', '/dev/root')]);
        const name = path.basename(blockDev);
        fs.mkdirSync(path.join(board.root, 'sys', 'class', 'block', name), { recursive: true });
        fs.writeFileSync(path.join(board.root, 'sys', 'class', 'block', name, 'size'), '2048\n');
        const device = board.device({ slots: { A: board.slotFile.A, B: blockDev } });
        expect(await device.bootedSlot()).toBe('B');
        // Capacity of a partition comes from sysfs (512-byte sectors).
        expect((await device.slots()).B.capacityBytes).toBe(2048 * 512);
        // The booted block device is refused before anything opens it.
        await expect(device.openSlotWriter('B', { offset: 0 })).rejects.toThrow(/booted slot/);
      },
    );

    it('should refuse to guess when nothing matches, naming what it saw', async () => {
      const board = makeBoard();
      board.setCmdline('root=/dev/nfs nfsroot=10.0.0.1:/srv');
      board.setMountinfo([mountLine(20, '0:30', '/', '10.0.0.1:/srv', 'nfs')]);
      const device = board.device();
      await expect(device.bootedSlot()).rejects.toThrow(/cannot tell which slot is booted.*root=\/dev\/nfs/);
      // Not knowing which slot runs means writing neither.
      await expect(device.openSlotWriter('B', { offset: 0 })).rejects.toThrow(/cannot tell/);
    });

    it('should reject a gantry.slot value that is neither A nor B', async () => {
      const board = makeBoard();
      board.setCmdline('gantry.slot=C root=PARTLABEL=rootfs_a');
      await expect(board.device().bootedSlot()).rejects.toThrow(/gantry.slot="C"/);
    });

    it('should follow the system, not its own memory, when the booted slot changes', async () => {
      const board = makeBoard();
      const device = board.device();
      expect(await device.bootedSlot()).toBe('A');
      board.setCmdline('root=PARTLABEL=rootfs_b');
      expect(await device.bootedSlot()).toBe('B');
    });
  });

  describe('configuration checks', () => {
    it('should refuse two slot names for the same device', () => {
      const board = makeBoard();
      expect(() =>
        board.device({ slots: { A: path.join(board.dev, 'mmcblk0p2'), B: board.slotFile.A } }),
      ).toThrow(/same device/);
    });

    it('should refuse a slot that does not exist, instead of creating a file in its place', () => {
      const board = makeBoard();
      const missing = path.join(board.dev, 'disk', 'by-partlabel', 'rootfs_c');
      expect(() => board.device({ slots: { A: board.slotFile.A, B: missing } })).toThrow(
        /slot B: .*rootfs_c is not there/,
      );
      expect(fs.existsSync(missing)).toBe(false);
    });
  });

  describe('slot writes', () => {
    it('should refuse to open the booted slot and leave its bytes alone', async () => {
      const board = makeBoard();
      const device = board.device();
      await expect(device.openSlotWriter('A', { offset: 0 })).rejects.toThrow(/booted slot/);
      expect(fs.readFileSync(board.slotFile.A).equals(Buffer.alloc(SLOT_BYTES, 0xaa))).toBe(true);
    });

    it('should write exactly the image bytes to the other slot, through its symlinks', async () => {
      const board = makeBoard();
      const device = board.device();
      const image = randomBytes(3 * 1024 * 1024 + 17);
      await writeAll(await device.openSlotWriter('B', { offset: 0 }), image);
      expect(fs.readFileSync(board.slotFile.B).equals(image)).toBe(true);
      expect(fs.lstatSync(path.join(board.dev, 'mmcblk0p3')).isSymbolicLink()).toBe(true);
      const back = await readAll(device.openSlotReader('B', { start: 0, end: image.length - 1 }));
      expect(back.equals(image)).toBe(true);
      expect(fs.readFileSync(board.slotFile.A).equals(Buffer.alloc(SLOT_BYTES, 0xaa))).toBe(true);
    });

    it('should resume at a checkpointed offset', async () => {
      const board = makeBoard();
      const device = board.device();
      const image = randomBytes(200_000);
      const writer = await device.openSlotWriter('B', { offset: 0 });
      writer.write(image.subarray(0, 120_000));
      expect(await writer.checkpoint()).toBe(120_000);
      writer.destroy();
      await new Promise((resolve) => writer.once('close', resolve));
      await writeAll(await device.openSlotWriter('B', { offset: 120_000 }), image.subarray(120_000));
      expect(fs.readFileSync(board.slotFile.B).equals(image)).toBe(true);
    });

    it('should write the booted slot only when explicitly allowed (in-place strategy)', async () => {
      const board = makeBoard();
      const device = board.device();
      const data = randomBytes(1000);
      await writeAll(await device.openSlotWriter('A', { offset: 0, allowBooted: true }), data);
      expect(fs.readFileSync(board.slotFile.A).equals(data)).toBe(true);
    });

    it('should refuse a slot that is mounted somewhere else', async () => {
      const board = makeBoard();
      board.setMountinfo([
        mountLine(20, '179:2', '/', '/dev/mmcblk0p2'),
        mountLine(30, '179:3', '/mnt/other\\040slot', '/dev/mmcblk0p3'),
      ]);
      await expect(board.device().openSlotWriter('B', { offset: 0 })).rejects.toThrow(
        /mounted at \/mnt\/other slot/,
      );
    });

    it('should report a file slot’s capacity as its size plus the free space it can grow into', async () => {
      const board = makeBoard();
      const slots = await board.device().slots();
      expect(slots.B.capacityBytes).toBeGreaterThanOrEqual(SLOT_BYTES);
    });
  });

  describe('slot records', () => {
    const record: SlotRecord = {
      state: 'bootable',
      version: 'v5.1.0',
      kernel: '6.6.20',
      sha256: 'ab'.repeat(32),
      imageBytes: 4096,
      installedAt: 1_700_000_000_000,
    };

    it('should keep slot records in status files that survive a new instance', async () => {
      const board = makeBoard();
      await board.device().writeSlotRecord('B', record);
      const again = board.device();
      expect((await again.slots()).B).toMatchObject({ id: 'B', ...record });
      const file = path.join(board.root, 'data', 'gateways', 'GW-L1', 'device', 'slot-B.status.json');
      expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual(record);
    });

    it('should keep status files in the configured directory', async () => {
      const board = makeBoard();
      const statusDir = path.join(board.root, 'data', 'rauc-like');
      await board.device({ slotStatusDir: statusDir }).writeSlotRecord('B', record);
      expect(fs.existsSync(path.join(statusDir, 'slot-B.status.json'))).toBe(true);
    });

    it('should describe an unrecorded booted slot from the OS and leave the other empty', async () => {
      const board = makeBoard();
      const slots = await board.device().slots();
      expect(slots.A).toMatchObject({
        state: 'bootable',
        version: '5.0.4',
        kernel: os.release(),
        sha256: null,
        imageBytes: 0,
      });
      expect(slots.B).toMatchObject({ state: 'empty', version: null });
    });

    it('should treat a damaged status file as invalid, never bootable', async () => {
      const board = makeBoard();
      const device = board.device();
      await device.writeSlotRecord('B', record);
      const file = path.join(board.root, 'data', 'gateways', 'GW-L1', 'device', 'slot-B.status.json');
      fs.writeFileSync(file, '{"state": "bootable"');
      expect((await device.slots()).B.state).toBe('invalid');
      expect(board.warnings.join('\n')).toMatch(/slot B status file/);
    });

    it('should refuse to write a malformed record', async () => {
      const board = makeBoard();
      const bad = { ...record, state: 'maybe' } as unknown as SlotRecord;
      await expect(board.device().writeSlotRecord('B', bad)).rejects.toThrow();
    });
  });

  describe('boot environment (fw_printenv / fw_setenv)', () => {
    it('should read the four variables through fw_printenv', async () => {
      const board = makeBoard();
      board.setUbootEnv({ boot_slot: 'B', upgrade_available: '1', bootcount: '2', bootlimit: '3' });
      expect(await board.device().readBootEnv()).toEqual({
        bootSlot: 'B',
        upgradeAvailable: true,
        bootCount: 2,
        bootLimit: 3,
      });
    });

    it('should read unset upgrade_available/bootcount/bootlimit as 0', async () => {
      const board = makeBoard();
      board.setUbootEnv({ boot_slot: 'A' });
      expect(await board.device().readBootEnv()).toEqual({
        bootSlot: 'A',
        upgradeAvailable: false,
        bootCount: 0,
        bootLimit: 0,
      });
    });

    it('should write several variables in one atomic fw_setenv -s call and read them back', async () => {
      const board = makeBoard();
      const device = board.device();
      const env = await device.writeBootEnv({
        bootSlot: 'B',
        upgradeAvailable: true,
        bootCount: 0,
        bootLimit: 5,
      });
      expect(env).toEqual({ bootSlot: 'B', upgradeAvailable: true, bootCount: 0, bootLimit: 5 });
      expect(await device.readBootEnv()).toEqual(env);
      expect(board.ubootEnv()).toMatchObject({
        bootcmd: 'run distro_bootcmd',
        boot_slot: 'B',
        upgrade_available: '1',
        bootcount: '0',
        bootlimit: '5',
      });
      const setenvCalls = board.logLines().filter((l) => l.startsWith('fw_setenv'));
      expect(setenvCalls).toHaveLength(1);
      expect(setenvCalls[0]).toMatch(/^fw_setenv -s \S+$/);
      expect(board.logLines().filter((l) => l.startsWith('  | '))).toEqual([
        '  | boot_slot=B',
        '  | upgrade_available=1',
        '  | bootcount=0',
        '  | bootlimit=5',
      ]);
      // The script is scratch: nothing is left behind.
      const deviceDir = path.join(board.root, 'data', 'gateways', 'GW-L1', 'device');
      expect(fs.readdirSync(deviceDir).filter((f) => f.startsWith('gantry-setenv-'))).toEqual([]);
    });

    it('should write U-Boot’s own script format when configured', async () => {
      const board = makeBoard();
      const device = board.device({
        fwSetenvScriptFormat: 'u-boot',
        env: { ...board.env, FAKE_UBOOT_SCRIPT_FORMAT: 'u-boot' },
      });
      await device.writeBootEnv({ bootSlot: 'B', upgradeAvailable: true });
      expect(board.ubootEnv()).toMatchObject({ boot_slot: 'B', upgrade_available: '1' });
      expect(board.logLines().filter((l) => l.startsWith('  | '))).toEqual([
        '  | boot_slot B',
        '  | upgrade_available 1',
      ]);
    });

    it('should turn a script format the tool silently skips into an error', async () => {
      const board = makeBoard();
      // libubootenv skips "name value" lines and exits 0 having changed nothing.
      const device = board.device({ fwSetenvScriptFormat: 'u-boot' });
      await expect(device.writeBootEnv({ bootSlot: 'B' })).rejects.toThrow(
        /did not take effect: boot_slot reads A after writing B .*"u-boot" scripts/,
      );
    });

    it('should merge a partial patch with what is in the environment', async () => {
      const board = makeBoard();
      board.setUbootEnv({ boot_slot: 'B', upgrade_available: '1', bootcount: '2', bootlimit: '3' });
      const device = board.device();
      expect(await device.writeBootEnv({ upgradeAvailable: false, bootCount: 0 })).toEqual({
        bootSlot: 'B',
        upgradeAvailable: false,
        bootCount: 0,
        bootLimit: 3,
      });
    });

    it('should use renamed variables and pass -c to both tools', async () => {
      const board = makeBoard();
      board.setUbootEnv({ mender_boot_part: 'A', upgrade_available: '0', bc: '0' });
      const device = board.device({
        ubootVars: {
          bootSlot: 'mender_boot_part',
          upgradeAvailable: 'upgrade_available',
          bootCount: 'bc',
          bootLimit: 'bl',
        },
        fwEnvConfig: '/etc/fw_env.config',
      });
      await device.writeBootEnv({ bootSlot: 'B', bootLimit: 2 });
      expect(board.ubootEnv()).toMatchObject({ mender_boot_part: 'B', bl: '2' });
      expect(await device.readBootEnv()).toMatchObject({ bootSlot: 'B', bootLimit: 2 });
      for (const line of board.logLines().filter((l) => l.startsWith('fw_'))) {
        expect(line).toMatch(/^fw_(print|set)env -c \/etc\/fw_env\.config/);
      }
    });

    it('should surface a failing tool’s exit status and message', async () => {
      const board = makeBoard();
      const message = 'Cannot access MTD device /dev/mtd1: No such file or directory';
      const device = board.device({ env: { ...board.env, FAKE_UBOOT_FAIL: message } });
      await expect(device.readBootEnv()).rejects.toThrow(`fw_printenv failed (exit 1): ${message}`);
      await expect(device.writeBootEnv({ bootSlot: 'B' })).rejects.toThrow(message);
      await expect(device.systemInfo()).rejects.toThrow(message);
    });

    it('should leave the environment untouched when fw_setenv fails', async () => {
      const board = makeBoard();
      const before = fs.readFileSync(board.envFile, 'utf8');
      const failing = path.join(board.root, 'fw_setenv_broken');
      fs.writeFileSync(failing, '#!/bin/sh\necho "Error: environment not initialized" >&2\nexit 1\n', {
        mode: 0o755,
      });
      const device = board.device({ fwSetenv: failing });
      await expect(device.writeBootEnv({ bootSlot: 'B', upgradeAvailable: true })).rejects.toThrow(
        /exit 1\): Error: environment not initialized/,
      );
      expect(fs.readFileSync(board.envFile, 'utf8')).toBe(before);
    });

    it('should notice a fw_setenv that exits 0 but changes nothing', async () => {
      const board = makeBoard();
      const device = board.device({ fwSetenv: 'true' });
      await expect(device.writeBootEnv({ bootSlot: 'B' })).rejects.toThrow(
        /did not take effect: boot_slot reads A/,
      );
    });

    it('should say so when the tool is not installed', async () => {
      const board = makeBoard();
      const device = board.device({ fwPrintenv: 'fw_printenv_not_installed' });
      await expect(device.readBootEnv()).rejects.toThrow(/fw_printenv_not_installed not found/);
    });

    it('should pass on what a successful tool said on stderr', async () => {
      const board = makeBoard();
      const device = board.device({
        env: { ...board.env, FAKE_UBOOT_WARN: 'Warning: Bad CRC, using default environment' },
      });
      await device.readBootEnv();
      expect(board.warnings.join('\n')).toMatch(/Bad CRC/);
    });

    it('should refuse an environment without boot_slot or with a bad value', async () => {
      const board = makeBoard();
      const device = board.device();
      board.setUbootEnv({ bootcount: '0' });
      await expect(device.readBootEnv()).rejects.toThrow(/boot_slot is not set/);
      board.setUbootEnv({ boot_slot: 'A', bootcount: 'lots' });
      await expect(device.readBootEnv()).rejects.toThrow(/bootcount="lots" is not a count/);
      await expect(device.writeBootEnv({ bootCount: -1 })).rejects.toThrow(/non-negative/);
    });

    it('should serialize concurrent patches so none is lost', async () => {
      const board = makeBoard();
      const device = board.device();
      await Promise.all([device.writeBootEnv({ bootCount: 7 }), device.writeBootEnv({ bootLimit: 9 })]);
      expect(await device.readBootEnv()).toMatchObject({ bootCount: 7, bootLimit: 9 });
    });
  });

  describe('system', () => {
    it('should report the OS, kernel, uptime and bootloader of the running system', async () => {
      const board = makeBoard();
      const device = board.device();
      expect(await device.systemInfo()).toEqual({
        model: 'Univa-GW-Pro',
        osVersion: '5.0.4',
        kernel: os.release(),
        bootloader: 'U-Boot',
        uptimeSeconds: 5400.25,
      });
    });

    it('should prefer the booted slot record’s version, then a version file, then os-release', async () => {
      const board = makeBoard();
      const versionFile = path.join(board.root, 'etc', 'gantry-version');
      fs.writeFileSync(versionFile, 'v5.0.4-factory\n');
      board.setUbootEnv({ boot_slot: 'A', ver: 'U-Boot 2024.01 (Mar 01 2024)' });
      const device = board.device({ osVersionFile: versionFile });
      expect(await device.systemInfo()).toMatchObject({
        osVersion: 'v5.0.4-factory',
        bootloader: 'U-Boot 2024.01 (Mar 01 2024)',
      });
      await device.writeSlotRecord('A', {
        state: 'bootable',
        version: 'v5.1.0',
        kernel: null,
        sha256: null,
        imageBytes: 10,
        installedAt: null,
      });
      expect((await device.systemInfo()).osVersion).toBe('v5.1.0');
    });

    it('should report the data dir’s space', async () => {
      const space = await makeBoard().device().storageSpace();
      expect(space.totalBytes).toBeGreaterThan(0);
      expect(space.freeBytes).toBeGreaterThan(0);
      expect(space.freeBytes).toBeLessThanOrEqual(space.totalBytes);
    });

    it('should reboot with the configured command and surface its failure', async () => {
      const board = makeBoard();
      const marker = path.join(board.root, 'rebooted');
      await board.device({ rebootCommand: ['sh', '-c', 'echo "$0" > "$1"', 'now', marker] }).reboot();
      expect(fs.readFileSync(marker, 'utf8')).toBe('now\n');
      await expect(
        board.device({ rebootCommand: ['sh', '-c', 'echo "Failed to connect to bus" >&2; exit 1'] }).reboot(),
      ).rejects.toThrow(/exit 1\): Failed to connect to bus/);
    });
  });

  describe('self-test', () => {
    it('should pass when no command is configured and the slot is the booted one', async () => {
      const device = makeBoard().device();
      expect(await device.selfTest('A')).toEqual({ ok: true, reason: null });
    });

    it('should fail a slot that is not the one running (the bootloader fell back)', async () => {
      const device = makeBoard().device();
      expect(await device.selfTest('B')).toEqual({
        ok: false,
        reason: 'slot B is not the booted slot (A is)',
      });
    });

    it('should run the configured command with the slot in its environment', async () => {
      const board = makeBoard();
      const ok = board.device({ selfTestCommand: ['sh', '-c', 'test "$GANTRY_SLOT" = A'] });
      expect(await ok.selfTest('A')).toEqual({ ok: true, reason: null });
      const degraded = board.device({ selfTestCommand: ['sh', '-c', 'echo degraded; exit 1'] });
      expect(await degraded.selfTest('A')).toEqual({
        ok: false,
        reason: expect.stringMatching(/^self-test sh -c .* failed \(exit 1\): degraded$/),
      });
    });

    it('should fail a self-test that outlives its timeout', async () => {
      const board = makeBoard();
      const device = board.device({ selfTestCommand: ['sleep', '30'], selfTestTimeoutSeconds: 1 });
      const result = await device.selfTest('A');
      expect(result.ok).toBe(false);
      expect(result.reason).toMatch(/timed out after 1000 ms/);
    });
  });

  describe('safety readings', () => {
    it('should read the integration’s file plus the load per CPU from /proc/loadavg', async () => {
      const board = makeBoard();
      board.writeSafety({ ...SAFE, crane_estimated_clear_seconds: null });
      expect(await board.device().readSafety()).toEqual({
        craneMotion: 'idle',
        acsCollision: 'clear',
        upsBatteryPercent: 85,
        networkConnected: true,
        craneEstimatedClearSeconds: null,
        systemLoad: 0.5,
      });
    });

    it('should emit a safety event when the file is replaced', async () => {
      const board = makeBoard();
      board.writeSafety(SAFE);
      const device = board.device({ safetyDebounceMs: 10 });
      const event = nextEvent(device);
      board.writeSafety({ ...SAFE, crane_motion: 'moving', crane_estimated_clear_seconds: 90 });
      expect(await event).toEqual({
        type: 'safety',
        readings: expect.objectContaining({ craneMotion: 'moving', craneEstimatedClearSeconds: 90 }),
      });
      const second = nextEvent(device);
      board.writeSafety({ ...SAFE, acs_collision: 'warning' });
      expect(await second).toMatchObject({ readings: { acsCollision: 'warning', craneMotion: 'idle' } });
    });

    it('should start watching once the directory of a file not yet written appears', async () => {
      const board = makeBoard();
      const device = board.device({ safetyDebounceMs: 10 });
      const event = nextEvent(device);
      await expect(device.readSafety()).rejects.toThrow(/does not exist/);
      fs.mkdirSync(path.dirname(board.safetyFile), { recursive: true });
      await expect(device.readSafety()).rejects.toThrow(/does not exist/); // the poll re-arms the watch
      board.writeSafety(SAFE);
      expect(await event).toMatchObject({ type: 'safety', readings: { craneMotion: 'idle' } });
    });

    it('should fail safe when the file is missing, malformed or stale: no made-up readings', async () => {
      const board = makeBoard();
      const device = board.device({ safetyMaxAgeSeconds: 30 });
      await expect(device.readSafety()).rejects.toThrow(/safety readings file .* does not exist/);

      board.writeSafety({ ...SAFE, crane_motion: 'parked' });
      await expect(device.readSafety()).rejects.toThrow(/crane_motion/);
      board.writeSafety({ crane_motion: 'idle' });
      await expect(device.readSafety()).rejects.toThrow(/acs_collision/);
      fs.writeFileSync(board.safetyFile, '{"crane_motion": "idle",');
      await expect(device.readSafety()).rejects.toThrow(/not JSON/);

      board.writeSafety(SAFE);
      const old = new Date(Date.now() - 120_000);
      fs.utimesSync(board.safetyFile, old, old);
      await expect(device.readSafety()).rejects.toThrow(/stale: written 120 s ago/);
      expect((await board.device({ safetyMaxAgeSeconds: 0 }).readSafety()).craneMotion).toBe('idle');
    });

    it('should emit only real readings across a removal and a rewrite', async () => {
      const board = makeBoard();
      board.writeSafety(SAFE);
      const device = board.device({ safetyDebounceMs: 10 });
      const events: DeviceEvent[] = [];
      device.onEvent((e) => events.push(e));
      // No event can carry readings for a removed file; the safety service's periodic read fails
      // instead and turns every constraint unknown.
      fs.rmSync(board.safetyFile);
      const next = nextEvent(device);
      board.writeSafety({ ...SAFE, ups_battery_percent: 20 });
      await next;
      expect(events.map((e) => (e.type === 'safety' ? e.readings.upsBatteryPercent : null))).toEqual([20]);
    });
  });
});

describe('LinuxDevice component slot classes', () => {
  it('should write the inactive slot of a class and switch it with its own U-Boot variable', async () => {
    const board = makeBoard();
    board.setUbootEnv({ boot_slot: 'A' });
    const app = {
      A: path.join(board.root, 'slots', 'app_a.img'),
      B: path.join(board.root, 'slots', 'app_b.img'),
    };
    fs.writeFileSync(app.A, Buffer.alloc(4096, 1));
    fs.writeFileSync(app.B, Buffer.alloc(4096, 2));
    const device = board.device({ componentSlots: { app } });
    expect(device.componentSlots('plc')).toBeNull();
    const pair = device.componentSlots('app')!;
    // Unset variable: the factory layout, A in use; the active slot is never written.
    expect(await pair.activeSlot()).toBe('A');
    await expect(pair.openWriter('A', { offset: 0 })).rejects.toThrow(/active one/);
    const writer = await pair.openWriter('B', { offset: 0 });
    await new Promise<void>((resolve, reject) => {
      writer.once('error', reject);
      writer.end(Buffer.from('new app image'), () => resolve());
    });
    expect(fs.readFileSync(app.B, 'utf8')).toBe('new app image');
    await pair.setActiveSlot('B');
    expect(board.ubootEnv()).toMatchObject({ boot_slot: 'A', app_slot: 'B' });
    expect(await pair.activeSlot()).toBe('B');
    await expect(pair.openWriter('B', { offset: 0 })).rejects.toThrow(/active one/);
  });
});
