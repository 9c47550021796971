import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BootEnv, SlotId } from '../types.js';
import { runTool, type ToolOptions } from './exec.js';

/**
 * The U-Boot environment through the standard userspace tools (`fw_printenv`/`fw_setenv`, from
 * libubootenv or U-Boot's own tools/env), which know the board's env location from
 * /etc/fw_env.config and keep the redundant copy's flags right. Every write goes through one
 * `fw_setenv -s SCRIPT` call: the tools write the whole environment to the inactive copy and flip
 * the flag, so a power cut leaves either all of a change or none of it (boot_slot without
 * upgrade_available would boot an unproven slot with no fallback).
 *
 * The two implementations disagree on the script: libubootenv reads `name=value` lines and skips
 * any other line without a word, U-Boot's tool reads `name value`. Hence the configurable format,
 * and the read-back after every write, which turns a wrong format into an error.
 */

/** U-Boot variable names of the four BootEnv fields (a board's boot script may use others). */
export interface UBootVarNames {
  bootSlot: string;
  upgradeAvailable: string;
  bootCount: string;
  bootLimit: string;
}

export const DEFAULT_UBOOT_VARS: UBootVarNames = {
  bootSlot: 'boot_slot',
  upgradeAvailable: 'upgrade_available',
  bootCount: 'bootcount',
  bootLimit: 'bootlimit',
};

export type SetenvScriptFormat = 'libubootenv' | 'u-boot';

export interface UBootEnvOptions {
  fwPrintenv: string;
  fwSetenv: string;
  /** Passed as `-c FILE` to both tools; default: the tools' own (/etc/fw_env.config). */
  fwEnvConfig?: string | null;
  vars: UBootVarNames;
  /** `libubootenv` (default): `name=value` lines; `u-boot` (U-Boot's tools/env): `name value`. */
  scriptFormat?: SetenvScriptFormat;
  tool: ToolOptions;
  /** Where the `-s` script is written before the call (removed after). */
  scratchDir?: string;
  /** A tool that succeeded but said something on stderr (e.g. "Warning: Bad CRC, using default environment"). */
  warn: (message: string) => void;
}

const VAR_NAME = /^[A-Za-z0-9_.:-]+$/;

/** `fw_printenv` output: one `name=value` per line; the value is everything after the first `=`. */
export function parsePrintenv(text: string): Map<string, string> {
  const vars = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (!line) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    vars.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return vars;
}

function parseCount(name: string, value: string | undefined): number {
  if (value === undefined || value === '') return 0;
  if (!/^\d+$/.test(value)) throw new Error(`U-Boot variable ${name}="${value}" is not a count`);
  return Number(value);
}

/** Reads the four BootEnv variables out of a full environment listing. */
export function bootEnvFromVars(env: Map<string, string>, names: UBootVarNames): BootEnv {
  const slot = env.get(names.bootSlot);
  if (slot === undefined) {
    throw new Error(
      `U-Boot variable ${names.bootSlot} is not set: the boot script needs it to pick slot A or B ` +
        `(set it once at provisioning: fw_setenv ${names.bootSlot} A)`,
    );
  }
  const bootSlot = slot.trim().toUpperCase();
  if (bootSlot !== 'A' && bootSlot !== 'B') {
    throw new Error(`U-Boot variable ${names.bootSlot}="${slot}" is neither A nor B`);
  }
  const upgrade = env.get(names.upgradeAvailable) ?? '0';
  if (!['0', '1', ''].includes(upgrade)) {
    throw new Error(`U-Boot variable ${names.upgradeAvailable}="${upgrade}" is neither 0 nor 1`);
  }
  return {
    bootSlot: bootSlot as SlotId,
    upgradeAvailable: upgrade === '1',
    bootCount: parseCount(names.bootCount, env.get(names.bootCount)),
    // Unset means U-Boot's boot-count limit is off (its bootlimit defaults to 0 = disabled).
    bootLimit: parseCount(names.bootLimit, env.get(names.bootLimit)),
  };
}

function checkCount(field: string, n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${field} must be a non-negative integer, got ${n}`);
  return String(n);
}

/** The `fw_setenv -s` script for the fields of `patch`, every line newline-terminated. */
export function setenvScript(
  patch: Partial<BootEnv>,
  names: UBootVarNames,
  format: SetenvScriptFormat = 'libubootenv',
): string {
  const sep = format === 'u-boot' ? ' ' : '=';
  const lines: string[] = [];
  if (patch.bootSlot !== undefined) {
    if (patch.bootSlot !== 'A' && patch.bootSlot !== 'B') throw new Error(`bootSlot must be A or B`);
    lines.push(`${names.bootSlot}${sep}${patch.bootSlot}`);
  }
  if (patch.upgradeAvailable !== undefined) {
    lines.push(`${names.upgradeAvailable}${sep}${patch.upgradeAvailable ? 1 : 0}`);
  }
  if (patch.bootCount !== undefined)
    lines.push(`${names.bootCount}${sep}${checkCount('bootCount', patch.bootCount)}`);
  if (patch.bootLimit !== undefined)
    lines.push(`${names.bootLimit}${sep}${checkCount('bootLimit', patch.bootLimit)}`);
  return lines.length ? `${lines.join('\n')}\n` : '';
}

export class UBootEnv {
  /** Serializes read-modify-write cycles: two patches must not interleave. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: UBootEnvOptions) {
    for (const [field, name] of Object.entries(opts.vars)) {
      if (!VAR_NAME.test(name)) throw new Error(`U-Boot variable name for ${field} is invalid: "${name}"`);
    }
  }

  private configArgs(): string[] {
    return this.opts.fwEnvConfig ? ['-c', this.opts.fwEnvConfig] : [];
  }

  private async run(file: string, args: string[]): Promise<string> {
    const { stdout, stderr } = await runTool(file, args, this.opts.tool);
    if (stderr.trim()) this.opts.warn(`${path.basename(file)} ${args.join(' ')}: ${stderr.trim()}`);
    return stdout;
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** The whole environment (one `fw_printenv` call: one consistent read of it). */
  async list(): Promise<Map<string, string>> {
    return parsePrintenv(await this.run(this.opts.fwPrintenv, this.configArgs()));
  }

  /** One variable (`fw_printenv -n NAME`), or null when it is not defined. */
  async get(name: string): Promise<string | null> {
    if (!VAR_NAME.test(name)) throw new Error(`invalid U-Boot variable name "${name}"`);
    return (await this.list()).get(name) ?? null;
  }

  read(): Promise<BootEnv> {
    return this.serialized(async () => bootEnvFromVars(await this.list(), this.opts.vars));
  }

  /**
   * Writes the patched variables in one `fw_setenv -s` call, then reads the environment back and
   * checks it: a tool pointed at the wrong env location can exit 0 and change nothing U-Boot reads.
   */
  write(patch: Partial<BootEnv>): Promise<BootEnv> {
    return this.serialized(async () => {
      const format = this.opts.scriptFormat ?? 'libubootenv';
      const script = setenvScript(patch, this.opts.vars, format);
      if (script) await this.runScript(script);
      const after = bootEnvFromVars(await this.list(), this.opts.vars);
      for (const key of Object.keys(patch) as Array<keyof BootEnv>) {
        if (patch[key] !== undefined && after[key] !== patch[key]) {
          throw new Error(
            `${this.opts.fwSetenv} did not take effect: ${this.opts.vars[key]} reads ${String(after[key])} ` +
              `after writing ${String(patch[key])} (check /etc/fw_env.config, and that the tool takes ` +
              `"${format}" scripts: libubootenv's fw_setenv reads name=value lines, U-Boot's own name value)`,
          );
        }
      }
      return after;
    });
  }

  /**
   * Sets one variable of Gantry's own (a component slot class's `<class>_slot`) in one
   * `fw_setenv -s` call, read back like `write`.
   */
  setVar(name: string, value: string): Promise<void> {
    if (!VAR_NAME.test(name)) throw new Error(`invalid U-Boot variable name "${name}"`);
    if (!/^[A-Za-z0-9_.:-]+$/.test(value)) throw new Error(`invalid value for ${name}: "${value}"`);
    return this.serialized(async () => {
      const sep = (this.opts.scriptFormat ?? 'libubootenv') === 'u-boot' ? ' ' : '=';
      await this.runScript(`${name}${sep}${value}\n`);
      const after = (await this.list()).get(name);
      if (after !== value) {
        throw new Error(
          `${this.opts.fwSetenv} did not take effect: ${name} reads ${String(after)} after writing ${value}`,
        );
      }
    });
  }

  private async runScript(script: string): Promise<void> {
    const dir = fs.mkdtempSync(path.join(this.opts.scratchDir ?? os.tmpdir(), 'gantry-setenv-'));
    const file = path.join(dir, 'script');
    try {
      fs.writeFileSync(file, script, { mode: 0o600 });
      await this.run(this.opts.fwSetenv, [...this.configArgs(), '-s', file]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}
