import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { LinuxDevice, type LinuxDeviceOptions } from '../../device/linux.js';
import { makeTempDir } from '../helpers/temp.js';

/**
 * LinuxDevice against the real fw_printenv/fw_setenv of libubootenv (Debian's libubootenv-tool),
 * on a redundant environment kept in two files, as U-Boot lays it out in flash: per copy a CRC32,
 * a flag byte (the higher one is current) and `name=value\0` pairs. Skipped where the tools are
 * not installed; the fake tools cover the same calls everywhere.
 */

const ENV_SIZE = 0x4000;
const DATA_OFFSET = 5; // crc32 (4) + flags (1)
const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function libubootenvVersion(): string | null {
  try {
    const out = execFileSync('fw_printenv', ['-V'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    return /^\d+\.\d+/.test(out.trim()) ? out.trim() : null;
  } catch {
    return null;
  }
}

function envImage(vars: Record<string, string>, flags: number): Buffer {
  const image = Buffer.alloc(ENV_SIZE, 0);
  let off = DATA_OFFSET;
  for (const [k, v] of Object.entries(vars)) off += image.write(`${k}=${v}\0`, off, 'latin1');
  image[4] = flags;
  image.writeUInt32LE(zlib.crc32(image.subarray(DATA_OFFSET)), 0);
  return image;
}

function readImage(file: string): { crcOk: boolean; flags: number; vars: Record<string, string> } {
  const image = fs.readFileSync(file).subarray(0, ENV_SIZE);
  const crcOk = image.readUInt32LE(0) === zlib.crc32(image.subarray(DATA_OFFSET));
  const vars: Record<string, string> = {};
  for (const pair of image.subarray(DATA_OFFSET).toString('latin1').split('\0\0')[0]!.split('\0')) {
    const eq = pair.indexOf('=');
    if (eq > 0) vars[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return { crcOk, flags: image[4]!, vars };
}

const FACTORY = {
  boot_slot: 'A',
  bootcmd: 'run boot_rootfs',
  bootcount: '0',
  bootlimit: '3',
  upgrade_available: '0',
};

function makeBoard() {
  const root = makeTempDir('gantry-libubootenv-');
  cleanups.push(() => fs.rmSync(root, { recursive: true, force: true }));
  const copies = [path.join(root, 'uboot-env.0'), path.join(root, 'uboot-env.1')] as const;
  fs.writeFileSync(copies[0], envImage(FACTORY, 1));
  fs.writeFileSync(copies[1], envImage(FACTORY, 0));
  const config = path.join(root, 'fw_env.config');
  fs.writeFileSync(config, copies.map((c) => `${c} 0x0 0x${ENV_SIZE.toString(16)}\n`).join(''));
  const proc = path.join(root, 'proc');
  fs.mkdirSync(path.join(proc, 'self'), { recursive: true });
  fs.writeFileSync(path.join(proc, 'cmdline'), 'gantry.slot=A\n');
  for (const s of ['a', 'b']) fs.writeFileSync(path.join(root, `rootfs_${s}.img`), 'x');
  const devices: LinuxDevice[] = [];
  cleanups.push(async () => {
    for (const d of devices) await d.close();
  });
  const device = (extra: Partial<LinuxDeviceOptions> = {}) => {
    const d = new LinuxDevice({
      gatewayId: 'GW-L1',
      model: 'Univa-GW-Pro',
      dir: path.join(root, 'data'),
      slots: { A: path.join(root, 'rootfs_a.img'), B: path.join(root, 'rootfs_b.img') },
      procRoot: proc,
      devRoot: path.join(root, 'dev'),
      fwEnvConfig: config,
      warn: () => undefined,
      ...extra,
    });
    devices.push(d);
    return d;
  };
  return { root, copies, config, device };
}

describe.skipIf(libubootenvVersion() === null)(`LinuxDevice with libubootenv ${libubootenvVersion()}`, () => {
  it('should read the boot variables from the current copy', async () => {
    const board = makeBoard();
    expect(await board.device().readBootEnv()).toEqual({
      bootSlot: 'A',
      upgradeAvailable: false,
      bootCount: 0,
      bootLimit: 3,
    });
  });

  it('should write a change into the other copy only, so a torn write leaves the old environment whole', async () => {
    const board = makeBoard();
    const device = board.device();
    const armed = { bootSlot: 'B' as const, upgradeAvailable: true, bootCount: 0, bootLimit: 5 };
    expect(await device.writeBootEnv(armed)).toEqual(armed);

    const [first, second] = board.copies.map(readImage);
    // The new environment went to copy 1 with a higher flag; copy 0 still holds the old one.
    expect(second).toMatchObject({
      crcOk: true,
      flags: 2,
      vars: { ...FACTORY, boot_slot: 'B', upgrade_available: '1', bootlimit: '5' },
    });
    expect(first).toMatchObject({ crcOk: true, flags: 1, vars: FACTORY });

    // Power cut mid-write: the new copy's CRC fails, and the tools (like U-Boot) use the old one,
    // with every variable as before, not a mix.
    const torn = fs.readFileSync(board.copies[1]);
    torn.writeUInt8(torn.readUInt8(DATA_OFFSET + 3) ^ 0xff, DATA_OFFSET + 3);
    fs.writeFileSync(board.copies[1], torn);
    expect(await device.readBootEnv()).toEqual({
      bootSlot: 'A',
      upgradeAvailable: false,
      bootCount: 0,
      bootLimit: 3,
    });
  });

  it('should commit a trial the way the partition manager does', async () => {
    const board = makeBoard();
    const device = board.device();
    await device.writeBootEnv({ bootSlot: 'B', upgradeAvailable: true, bootCount: 0, bootLimit: 3 });
    await device.writeBootEnv({ upgradeAvailable: false, bootCount: 0 });
    expect(await device.readBootEnv()).toEqual({
      bootSlot: 'B',
      upgradeAvailable: false,
      bootCount: 0,
      bootLimit: 3,
    });
    expect(readImage(board.copies[0]).flags).toBe(3);
  });

  it('should catch the U-Boot script format, which libubootenv skips without an error', async () => {
    const board = makeBoard();
    await expect(
      board.device({ fwSetenvScriptFormat: 'u-boot' }).writeBootEnv({ bootSlot: 'B' }),
    ).rejects.toThrow(/did not take effect: boot_slot reads A after writing B/);
  });

  it('should surface the tool’s own error for a bad configuration', async () => {
    const board = makeBoard();
    const device = board.device({ fwEnvConfig: path.join(board.root, 'missing.config') });
    await expect(device.readBootEnv()).rejects.toThrow(
      /fw_printenv -c \S+missing\.config failed \(exit \d+\): .+/,
    );
  });
});
