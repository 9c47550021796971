import path from 'node:path';
import { z } from 'zod';
import { DEFAULT_UBOOT_VARS, type SetenvScriptFormat, type UBootVarNames } from './uboot.js';

/**
 * Configuration of the Linux device (GANTRY_DEVICE=linux), part of Gantry's start-up config:
 * these fields are spread into core/config.ts's schema and environment map, and checked together
 * once the device kind is known.
 */

export const DEFAULT_SAFETY_FILE = '/run/gantry/safety.json';

/**
 * "A=x,B=y" as `{ A: 'x', B: 'y' }`: each entry split at its first "=", both sides trimmed. An entry
 * without "=" keeps its name with an empty value, so the field's schema names it in its error
 * rather than the entry being dropped.
 */
function keyValueList(list: string): Record<string, string> {
  return Object.fromEntries(
    list
      .split(',')
      .map((e) => e.trim())
      .filter(Boolean)
      .map((e) => {
        const eq = e.indexOf('=');
        return eq < 0 ? [e, ''] : [e.slice(0, eq).trim(), e.slice(eq + 1).trim()];
      }),
  );
}

/**
 * The Linux device's fields of the start-up configuration, as zod schemas: built when the
 * configuration is read (core/config.ts loadConfig), then garbage. Held at module level, the
 * configuration's schemas (these and core/config.ts's, ~250 zod instances: zod keeps every step of
 * a chain such as `.int().min(1).max(3600).default(300)` as the next one's parent) stayed resident
 * for the life of a server that reads its configuration once.
 */
export function linuxConfigFields() {
  const absolutePath = z
    .string()
    .min(1)
    .refine((p) => path.isAbsolute(p), 'must be an absolute path');

  const slotsObject = z.strictObject({ A: absolutePath, B: absolutePath });

  /** "A=/dev/disk/by-partlabel/rootfs_a,B=/dev/disk/by-partlabel/rootfs_b" (or that object in JSON). */
  const slotsField = z
    .union([z.string().transform(keyValueList), z.record(z.string(), z.unknown())])
    .pipe(slotsObject)
    .refine((s) => path.resolve(s.A) !== path.resolve(s.B), 'slots A and B must be different devices');

  /**
   * Component slot classes: "app:A=/dev/disk/by-partlabel/app_a,app:B=/dev/disk/by-partlabel/app_b"
   * (or `{ "app": { "A": …, "B": … } }` in JSON). The active slot of class C is U-Boot's `C_slot`.
   */
  const componentSlotsField = z
    .union([
      z.string().transform((s) => {
        const out: Record<string, Record<string, string>> = {};
        for (const entry of s
          .split(',')
          .map((e) => e.trim())
          .filter(Boolean)) {
          const m = /^([a-z0-9][a-z0-9_-]{0,39}):([AB])=(.+)$/.exec(entry);
          if (!m) return { [entry]: {} };
          (out[m[1]!] ??= {})[m[2]!] = m[3]!.trim();
        }
        return out;
      }),
      z.record(z.string(), z.unknown()),
    ])
    .pipe(
      z.record(
        z.string().regex(/^[a-z0-9][a-z0-9_-]{0,39}$/, 'expected CLASS:A=/dev/…,CLASS:B=/dev/…'),
        slotsObject.refine((s) => path.resolve(s.A) !== path.resolve(s.B), 'slots A and B must differ'),
      ),
    )
    .refine((r) => !('rootfs' in r), 'rootfs is GANTRY_LINUX_SLOTS, not a component class');

  /** A command run without a shell: a string split on whitespace, or (JSON config) an argv array. */
  const commandField = z
    .union([z.string(), z.array(z.string().min(1))])
    .transform((v) => (typeof v === 'string' ? v.trim().split(/\s+/).filter(Boolean) : v))
    .pipe(z.array(z.string()).min(1, 'must name a command'));

  const varName = z.string().regex(/^[A-Za-z0-9_.:-]+$/, 'not a U-Boot variable name');
  const ubootVarsObject = z.strictObject({
    boot_slot: varName.optional(),
    upgrade_available: varName.optional(),
    bootcount: varName.optional(),
    bootlimit: varName.optional(),
  });

  /** Renames of the four variables: "boot_slot=mender_boot_part,bootcount=bc" (or that object in JSON). */
  const ubootVarsField = z
    .union([z.string().transform(keyValueList), z.record(z.string(), z.unknown())])
    .pipe(ubootVarsObject)
    .transform((v): UBootVarNames => ({
      bootSlot: v.boot_slot ?? DEFAULT_UBOOT_VARS.bootSlot,
      upgradeAvailable: v.upgrade_available ?? DEFAULT_UBOOT_VARS.upgradeAvailable,
      bootCount: v.bootcount ?? DEFAULT_UBOOT_VARS.bootCount,
      bootLimit: v.bootlimit ?? DEFAULT_UBOOT_VARS.bootLimit,
    }));

  return {
    /** The two slots' devices (or image files). Required with GANTRY_DEVICE=linux. */
    linuxSlots: slotsField.optional(),
    /** Component slot classes (ab-slot components other than the root filesystem). */
    linuxComponentSlots: componentSlotsField.optional(),
    /** Where the per-slot status files live (default: `<data>/gateways/<id>/device`, the data partition). */
    slotStatusDir: absolutePath.optional(),
    fwPrintenv: z.string().min(1).default('fw_printenv'),
    fwSetenv: z.string().min(1).default('fw_setenv'),
    /** Passed to both tools as `-c FILE` (default: their own /etc/fw_env.config). */
    fwEnvConfig: absolutePath.optional(),
    /** Script syntax of `fw_setenv -s`: libubootenv's `name=value` or U-Boot's own `name value`. */
    fwSetenvScriptFormat: z.enum(['libubootenv', 'u-boot']).default('libubootenv'),
    ubootVars: ubootVarsField.default(DEFAULT_UBOOT_VARS),
    rebootCommand: commandField.default(['systemctl', 'reboot']),
    /** Exit 0 = the booted system is healthy, e.g. "systemctl is-system-running --wait". */
    selfTestCommand: commandField.optional(),
    selfTestTimeoutSeconds: z.coerce.number().int().min(1).max(3600).default(300),
    /** JSON readings written by the crane controller integration. */
    safetyFile: absolutePath.default(DEFAULT_SAFETY_FILE),
    /** Readings older than this block as "no reading" (0: no limit). */
    safetyMaxAgeSeconds: z.coerce.number().int().min(0).max(86_400).default(30),
    /** A file holding the OS version, used when the booted slot has no record (else /etc/os-release). */
    osVersionFile: absolutePath.optional(),
  };
}

export const LINUX_ENV_KEYS = {
  GANTRY_LINUX_SLOTS: 'linuxSlots',
  GANTRY_LINUX_COMPONENT_SLOTS: 'linuxComponentSlots',
  GANTRY_SLOT_STATUS_DIR: 'slotStatusDir',
  GANTRY_FW_PRINTENV: 'fwPrintenv',
  GANTRY_FW_SETENV: 'fwSetenv',
  GANTRY_FW_ENV_CONFIG: 'fwEnvConfig',
  GANTRY_FW_SETENV_SCRIPT_FORMAT: 'fwSetenvScriptFormat',
  GANTRY_UBOOT_VARS: 'ubootVars',
  GANTRY_REBOOT_COMMAND: 'rebootCommand',
  GANTRY_SELF_TEST_COMMAND: 'selfTestCommand',
  GANTRY_SELF_TEST_TIMEOUT_SECONDS: 'selfTestTimeoutSeconds',
  GANTRY_SAFETY_FILE: 'safetyFile',
  GANTRY_SAFETY_MAX_AGE_SECONDS: 'safetyMaxAgeSeconds',
  GANTRY_OS_VERSION_FILE: 'osVersionFile',
} as const;

type LinuxConfigFields = z.infer<z.ZodObject<ReturnType<typeof linuxConfigFields>>>;

/** Everything the Linux device of the one gateway hosted on this board is configured with. */
export interface LinuxDeviceConfig {
  slots: { A: string; B: string };
  componentSlots: Record<string, { A: string; B: string }>;
  slotStatusDir: string | null;
  fwPrintenv: string;
  fwSetenv: string;
  fwEnvConfig: string | null;
  fwSetenvScriptFormat: SetenvScriptFormat;
  ubootVars: UBootVarNames;
  rebootCommand: string[];
  selfTestCommand: string[] | null;
  selfTestTimeoutSeconds: number;
  safetyFile: string;
  safetyMaxAgeSeconds: number;
  osVersionFile: string | null;
}

/**
 * The Linux device's configuration, or the problems with it (each naming its variable). One
 * gateway only: the Linux device *is* the host Gantry runs on, and two gateways sharing its slots
 * and bootloader would overwrite each other's images.
 */
export function linuxDeviceConfig(
  c: LinuxConfigFields & { gateways: Array<{ id: string }> },
): { ok: true; config: LinuxDeviceConfig } | { ok: false; problems: string[] } {
  const problems: string[] = [];
  if (c.gateways.length !== 1) {
    problems.push(
      `GANTRY_GATEWAYS: GANTRY_DEVICE=linux manages the board Gantry runs on, so exactly one gateway ` +
        `can be configured (got ${c.gateways.length}: ${c.gateways.map((g) => g.id).join(', ')})`,
    );
  }
  if (!c.linuxSlots) {
    problems.push(
      'GANTRY_LINUX_SLOTS: required with GANTRY_DEVICE=linux, e.g. ' +
        '"A=/dev/disk/by-partlabel/rootfs_a,B=/dev/disk/by-partlabel/rootfs_b"',
    );
  }
  if (problems.length || !c.linuxSlots) return { ok: false, problems };
  return {
    ok: true,
    config: {
      slots: c.linuxSlots,
      componentSlots: c.linuxComponentSlots ?? {},
      slotStatusDir: c.slotStatusDir ?? null,
      fwPrintenv: c.fwPrintenv,
      fwSetenv: c.fwSetenv,
      fwEnvConfig: c.fwEnvConfig ?? null,
      fwSetenvScriptFormat: c.fwSetenvScriptFormat,
      ubootVars: c.ubootVars,
      rebootCommand: c.rebootCommand,
      selfTestCommand: c.selfTestCommand ?? null,
      selfTestTimeoutSeconds: c.selfTestTimeoutSeconds,
      safetyFile: c.safetyFile,
      safetyMaxAgeSeconds: c.safetyMaxAgeSeconds,
      osVersionFile: c.osVersionFile ?? null,
    },
  };
}
