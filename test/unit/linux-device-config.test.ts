import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../core/config.js';
import { LinuxDevice } from '../../device/linux.js';
import { SimulatedDevice } from '../../device/simulated.js';
import { openDatabase } from '../../drizzle/db.js';
import { GatewayRegistry } from '../../services/gateways.js';
import { makeTempDir } from '../helpers/temp.js';

/** GANTRY_DEVICE=linux: its configuration (validated at start-up) and its selection by the registry. */

const SLOTS = 'A=/dev/disk/by-partlabel/rootfs_a,B=/dev/disk/by-partlabel/rootfs_b';
const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(env)}`);
}

describe('Linux device configuration', () => {
  it('should read component slot classes from GANTRY_LINUX_COMPONENT_SLOTS and refuse a malformed one', () => {
    const config = loadConfig({
      GANTRY_DEVICE: 'linux',
      GANTRY_LINUX_SLOTS: SLOTS,
      GANTRY_LINUX_COMPONENT_SLOTS: 'app:A=/dev/disk/by-partlabel/app_a,app:B=/dev/disk/by-partlabel/app_b',
    });
    expect(config.gateways[0]!.linux?.componentSlots).toEqual({
      app: { A: '/dev/disk/by-partlabel/app_a', B: '/dev/disk/by-partlabel/app_b' },
    });
    for (const bad of [
      'app:A=/dev/x',
      'app=/dev/x',
      'rootfs:A=/dev/a,rootfs:B=/dev/b',
      'app:A=rel,app:B=/dev/b',
    ]) {
      const err = configError({
        GANTRY_DEVICE: 'linux',
        GANTRY_LINUX_SLOTS: SLOTS,
        GANTRY_LINUX_COMPONENT_SLOTS: bad,
      });
      expect(err.problems.join('\n')).toContain('GANTRY_LINUX_COMPONENT_SLOTS');
    }
  });

  it('should attach the Linux device configuration, with its defaults, to the one gateway', () => {
    const config = loadConfig({ GANTRY_DEVICE: 'linux', GANTRY_LINUX_SLOTS: SLOTS });
    expect(config.gateways).toHaveLength(1);
    expect(config.gateways[0]!.linux).toEqual({
      slots: { A: '/dev/disk/by-partlabel/rootfs_a', B: '/dev/disk/by-partlabel/rootfs_b' },
      componentSlots: {},
      slotStatusDir: null,
      fwPrintenv: 'fw_printenv',
      fwSetenv: 'fw_setenv',
      fwEnvConfig: null,
      fwSetenvScriptFormat: 'libubootenv',
      ubootVars: {
        bootSlot: 'boot_slot',
        upgradeAvailable: 'upgrade_available',
        bootCount: 'bootcount',
        bootLimit: 'bootlimit',
      },
      rebootCommand: ['systemctl', 'reboot'],
      selfTestCommand: null,
      selfTestTimeoutSeconds: 300,
      safetyFile: '/run/gantry/safety.json',
      safetyMaxAgeSeconds: 30,
      osVersionFile: null,
    });
  });

  it('should read every Linux variable', () => {
    const config = loadConfig({
      GANTRY_DEVICE: 'linux',
      GANTRY_GATEWAYS: 'GW-RTG-07:Univa-GW-Max:Europe/Amsterdam',
      GANTRY_LINUX_SLOTS: ' B=/dev/mmcblk0p3 , A=/dev/mmcblk0p2 ',
      GANTRY_SLOT_STATUS_DIR: '/data/gantry/slots',
      GANTRY_FW_PRINTENV: '/usr/bin/fw_printenv',
      GANTRY_FW_SETENV: '/usr/bin/fw_setenv',
      GANTRY_FW_ENV_CONFIG: '/etc/fw_env.config',
      GANTRY_FW_SETENV_SCRIPT_FORMAT: 'u-boot',
      GANTRY_UBOOT_VARS: 'boot_slot=mender_boot_part, bootcount=bc',
      GANTRY_REBOOT_COMMAND: '/sbin/reboot  -f',
      GANTRY_SELF_TEST_COMMAND: 'systemctl is-system-running --wait',
      GANTRY_SELF_TEST_TIMEOUT_SECONDS: '120',
      GANTRY_SAFETY_FILE: '/run/crane/gantry.json',
      GANTRY_SAFETY_MAX_AGE_SECONDS: '0',
      GANTRY_OS_VERSION_FILE: '/etc/gantry-version',
    });
    expect(config.gateways[0]).toMatchObject({
      id: 'GW-RTG-07',
      linux: {
        slots: { A: '/dev/mmcblk0p2', B: '/dev/mmcblk0p3' },
        slotStatusDir: '/data/gantry/slots',
        fwPrintenv: '/usr/bin/fw_printenv',
        fwSetenv: '/usr/bin/fw_setenv',
        fwEnvConfig: '/etc/fw_env.config',
        fwSetenvScriptFormat: 'u-boot',
        ubootVars: {
          bootSlot: 'mender_boot_part',
          upgradeAvailable: 'upgrade_available',
          bootCount: 'bc',
          bootLimit: 'bootlimit',
        },
        rebootCommand: ['/sbin/reboot', '-f'],
        selfTestCommand: ['systemctl', 'is-system-running', '--wait'],
        selfTestTimeoutSeconds: 120,
        safetyFile: '/run/crane/gantry.json',
        safetyMaxAgeSeconds: 0,
        osVersionFile: '/etc/gantry-version',
      },
    });
  });

  it('should take the JSON config file’s object and argv forms', () => {
    const dir = makeTempDir('gantry-linux-config-');
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'gantry.json');
    fs.writeFileSync(
      file,
      JSON.stringify({
        device: 'linux',
        linuxSlots: { A: '/dev/sda2', B: '/dev/sda3' },
        rebootCommand: ['/usr/local/bin/reboot with spaces'],
        ubootVars: { bootlimit: 'bl' },
      }),
    );
    const linux = loadConfig({ GANTRY_CONFIG: file }).gateways[0]!.linux!;
    expect(linux.slots).toEqual({ A: '/dev/sda2', B: '/dev/sda3' });
    expect(linux.rebootCommand).toEqual(['/usr/local/bin/reboot with spaces']);
    expect(linux.ubootVars.bootLimit).toBe('bl');
  });

  it('should leave the gateways alone with the simulated device', () => {
    const config = loadConfig({ GANTRY_LINUX_SLOTS: SLOTS });
    expect(config.gateways[0]!.linux).toBeUndefined();
  });

  it('should require GANTRY_LINUX_SLOTS with GANTRY_DEVICE=linux', () => {
    expect(configError({ GANTRY_DEVICE: 'linux' }).problems).toEqual([
      expect.stringMatching(/^GANTRY_LINUX_SLOTS: required with GANTRY_DEVICE=linux/),
    ]);
  });

  it('should refuse more than one gateway with the Linux device, saying why', () => {
    const err = configError({
      GANTRY_DEVICE: 'linux',
      GANTRY_LINUX_SLOTS: SLOTS,
      GANTRY_GATEWAYS: 'GW-1,GW-2',
    });
    expect(err.problems).toEqual([
      'GANTRY_GATEWAYS: GANTRY_DEVICE=linux manages the board Gantry runs on, so exactly one gateway ' +
        'can be configured (got 2: GW-1, GW-2)',
    ]);
  });

  it.each([
    ['A=/dev/sda2', /GANTRY_LINUX_SLOTS/],
    ['A=/dev/sda2,B=/dev/sda3,C=/dev/sda4', /GANTRY_LINUX_SLOTS/],
    ['A=dev/sda2,B=/dev/sda3', /GANTRY_LINUX_SLOTS \[A\]: must be an absolute path/],
    ['A=/dev/sda2,B=/dev/sda2', /GANTRY_LINUX_SLOTS: slots A and B must be different devices/],
  ])('should reject GANTRY_LINUX_SLOTS=%s', (slots, problem) => {
    const err = configError({ GANTRY_DEVICE: 'linux', GANTRY_LINUX_SLOTS: slots });
    expect(err.message).toMatch(problem);
  });

  it('should reject bad U-Boot names, commands and paths, naming the variable', () => {
    const base = { GANTRY_DEVICE: 'linux', GANTRY_LINUX_SLOTS: SLOTS };
    expect(configError({ ...base, GANTRY_UBOOT_VARS: 'boot_slot=has space' }).message).toMatch(
      /GANTRY_UBOOT_VARS/,
    );
    expect(configError({ ...base, GANTRY_UBOOT_VARS: 'bootslot=x' }).message).toMatch(/GANTRY_UBOOT_VARS/);
    // A renaming without "=", or with a second one, is an error, not dropped or cut short.
    expect(configError({ ...base, GANTRY_UBOOT_VARS: 'boot_slot' }).message).toMatch(/GANTRY_UBOOT_VARS/);
    expect(configError({ ...base, GANTRY_UBOOT_VARS: 'boot_slot=a=b' }).message).toMatch(/GANTRY_UBOOT_VARS/);
    expect(configError({ ...base, GANTRY_REBOOT_COMMAND: '   ' }).message).toMatch(
      /GANTRY_REBOOT_COMMAND: must name a command/,
    );
    expect(configError({ ...base, GANTRY_SAFETY_FILE: 'safety.json' }).message).toMatch(
      /GANTRY_SAFETY_FILE: must be an absolute path/,
    );
  });
});

describe('GatewayRegistry with GANTRY_DEVICE=linux', () => {
  function setup() {
    const root = makeTempDir('gantry-linux-registry-');
    const db = openDatabase(path.join(root, 'gantry.db'));
    const registry = new GatewayRegistry(db, path.join(root, 'data'), Date.now);
    cleanups.push(async () => {
      await registry.close();
      db.$client.close();
      fs.rmSync(root, { recursive: true, force: true });
    });
    for (const slot of ['a', 'b']) fs.writeFileSync(path.join(root, `rootfs_${slot}.img`), 'x');
    return { root, registry };
  }

  it('should create a LinuxDevice for the gateway from its configuration', () => {
    const { root, registry } = setup();
    const config = loadConfig({
      GANTRY_DEVICE: 'linux',
      GANTRY_GATEWAYS: 'GW-L1',
      GANTRY_LINUX_SLOTS: `A=${root}/rootfs_a.img,B=${root}/rootfs_b.img`,
    });
    registry.load(config.gateways, config.device);
    const device = registry.get('GW-L1')!.device;
    expect(device).toBeInstanceOf(LinuxDevice);
    expect((device as LinuxDevice).slotPath('B')).toBe(`${root}/rootfs_b.img`);
  });

  it('should refuse several gateways on the Linux device', () => {
    const { registry } = setup();
    expect(() =>
      registry.load(
        [
          { id: 'GW-1', model: 'M', timezone: 'UTC' },
          { id: 'GW-2', model: 'M', timezone: 'UTC' },
        ],
        'linux',
      ),
    ).toThrow(/exactly one gateway can be configured \(GANTRY_GATEWAYS has 2: GW-1, GW-2\)/);
  });

  it('should refuse a gateway without Linux configuration', () => {
    const { registry } = setup();
    expect(() => registry.load([{ id: 'GW-1', model: 'M', timezone: 'UTC' }], 'linux')).toThrow(
      /GW-1 has no Linux device configuration/,
    );
  });

  it('should still create simulated devices by default', () => {
    const { registry } = setup();
    registry.load(loadConfig({ GANTRY_GATEWAYS: 'GW-S1,GW-S2' }).gateways, 'simulated');
    expect(registry.all().map((r) => r.device)).toEqual([
      expect.any(SimulatedDevice),
      expect.any(SimulatedDevice),
    ]);
  });
});
