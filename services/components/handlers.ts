import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Component, Payload } from '../../bundle/manifest.js';
import { checkRelativePath } from '../../core/relative-path.js';
import { GantryError } from '../../core/errors.js';
import { consumeChunks, LendingFileReader, pipeChunks } from '../../core/lending.js';
import { otherSlot, type ComponentSlotPair, type SlotId } from '../../device/types.js';
import type { SequenceStrategy } from '../../machines/component-sequence.js';
import { maxVersion } from '../../machines/version.js';
import type { GatewayRuntime } from '../gateways.js';
import type { ComponentRecord, ComponentStateStore } from './state.js';

/** One component's step, as its handler gets it. */
export interface HandlerStep {
  gw: GatewayRuntime;
  jobId: string;
  component: Component;
  /** The component's payloads, staged and hash-checked at download. */
  payloads: Array<{ payload: Payload; file: string }>;
  strategy: SequenceStrategy;
  resumed: boolean;
  now: number;
}

/**
 * A component handler: how one kind of component is written, switched to, checked, kept or put back.
 * Every step may run again after a restart (`resumed`): each is written to be repeatable.
 */
export interface ComponentHandler {
  install(step: HandlerStep): Promise<void>;
  /** Switches to the new version; reboots the gateway itself when the component needs it. */
  activate(step: HandlerStep): Promise<void>;
  /** Throws when the new version is not healthy. */
  check(step: HandlerStep): Promise<void>;
  commit(step: HandlerStep): Promise<void>;
  /** Puts back what was installed before this job (pending or committed by it). */
  rollback(step: HandlerStep): Promise<void>;
}

export function failed(message: string): GantryError {
  return new GantryError('OTA_INSTALL_FAILED', message);
}

async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  await consumeChunks(new LendingFileReader(file), (chunk) => {
    hash.update(chunk);
    return undefined;
  });
  return hash.digest('hex');
}

/** A staged payload is hashed again before it is used: it waited on disk, maybe across a restart. */
export async function checkStaged(p: { payload: Payload; file: string }): Promise<void> {
  let actual: string;
  try {
    actual = await sha256OfFile(p.file);
  } catch (err) {
    throw failed(`staged payload ${p.payload.name} is missing (${(err as Error).message})`);
  }
  if (actual !== p.payload.sha256) {
    throw new GantryError(
      'OTA_INVALID_IMAGE',
      `staged payload ${p.payload.name} does not match its signed hash`,
    );
  }
}

/** The bookkeeping every handler shares: pending → committed, previous kept, floor raised on commit. */
export class ComponentBook {
  constructor(private readonly store: ComponentStateStore) {}

  record(gw: GatewayRuntime, c: Component): ComponentRecord {
    return (
      this.store.get(gw.id, c.name) ?? {
        name: c.name,
        handler: c.handler,
        target: c.target,
        version: null,
        floor: null,
        slot: null,
        release: null,
        previous: null,
        pending: null,
        updatedAt: 0,
      }
    );
  }

  setPending(step: HandlerStep, pending: { slot: SlotId | null; release: string | null }): ComponentRecord {
    const record = this.record(step.gw, step.component);
    const next: ComponentRecord = {
      ...record,
      handler: step.component.handler,
      target: step.component.target,
      pending: {
        jobId: step.jobId,
        version: step.component.version,
        ...pending,
        rebootRequested: false,
        rebootBootId: null,
        rebootAttempts: 0,
      },
      updatedAt: step.now,
    };
    this.store.put(step.gw.id, next);
    return next;
  }

  /** This job's pending install of the component, if any. */
  pending(step: HandlerStep): ComponentRecord['pending'] {
    const pending = this.record(step.gw, step.component).pending;
    return pending && pending.jobId === step.jobId ? pending : null;
  }

  markReboot(step: HandlerStep, bootId: string): void {
    const record = this.record(step.gw, step.component);
    if (!record.pending) return;
    const pending = record.pending;
    this.store.put(step.gw.id, {
      ...record,
      pending: {
        ...pending,
        rebootRequested: true,
        rebootBootId: bootId,
        rebootAttempts: pending.rebootAttempts + 1,
      },
    });
  }

  commit(step: HandlerStep): void {
    const record = this.record(step.gw, step.component);
    const pending = record.pending;
    if (!pending || pending.jobId !== step.jobId) {
      // Committed already (a resumed commit): nothing to redo.
      if (record.version === step.component.version) return;
      throw failed(`${step.component.name}: nothing installed to commit`);
    }
    this.store.put(step.gw.id, {
      ...record,
      version: pending.version,
      slot: pending.slot,
      release: pending.release,
      previous: { version: record.version, slot: record.slot, release: record.release },
      floor: maxVersion(record.floor, pending.version),
      pending: null,
      updatedAt: step.now,
    });
  }

  /** After a rollback: the pending install dropped, or the committed one replaced by the previous. */
  rolledBack(step: HandlerStep, fromCommitted: boolean): void {
    const record = this.record(step.gw, step.component);
    if (!fromCommitted) {
      this.store.put(step.gw.id, { ...record, pending: null, updatedAt: step.now });
      return;
    }
    const previous = record.previous;
    this.store.put(step.gw.id, {
      ...record,
      version: previous?.version ?? null,
      slot: previous?.slot ?? null,
      release: previous?.release ?? null,
      previous: null,
      pending: null,
      updatedAt: step.now,
    });
  }

  /** Whether this job committed the component (so a rollback must undo a commit). */
  committedByThisJob(step: HandlerStep): boolean {
    const record = this.record(step.gw, step.component);
    return record.pending === null && record.version === step.component.version && record.previous !== null;
  }
}

export interface RebootPort {
  /**
   * Reboots the gateway (the interlock was checked before the activation began). Resolves once it
   * booted again (the simulator), or when it has not gone down within the reboot timeout.
   */
  reboot(gw: GatewayRuntime, reason: string): Promise<void>;
  /** Says that a reboot asked for earlier did not happen, before asking again. */
  notRebooted(gw: GatewayRuntime, reason: string, attempt: number): void;
}

/** Reboot requests per activation before the component fails (and is rolled back). */
export const REBOOT_ATTEMPTS = 3;

/**
 * The reboot a component's activation needs, exactly once per activation: asked for unless the
 * gateway has booted since this activation asked (a resume after that boot); asked again when the
 * boot id shows that the earlier request never brought the system down (a Gantry restart or a
 * stalled shutdown is not a boot, and the health check must run on the new boot).
 */
export async function rebootForActivation(
  book: ComponentBook,
  reboots: RebootPort,
  step: HandlerStep,
): Promise<void> {
  if (!step.component.needs_reboot) return;
  const reason = `activating ${step.component.name} ${step.component.version}`;
  for (;;) {
    const pending = book.pending(step);
    if (!pending) return;
    const bootId = await step.gw.device.bootId();
    if (pending.rebootRequested && pending.rebootBootId !== bootId) return;
    if (pending.rebootRequested) {
      if (pending.rebootAttempts >= REBOOT_ATTEMPTS) {
        throw failed(
          `${step.component.name}: the gateway did not reboot after ${pending.rebootAttempts} requests`,
        );
      }
      reboots.notRebooted(step.gw, reason, pending.rebootAttempts + 1);
    }
    book.markReboot(step, bootId);
    await reboots.reboot(step.gw, reason);
  }
}

/** `ab-slot` for a class other than rootfs: its own A/B pair in the device interface. */
export class AbSlotHandler implements ComponentHandler {
  constructor(
    private readonly book: ComponentBook,
    private readonly reboots: RebootPort,
    private readonly healthHooks: (gw: GatewayRuntime, env: Record<string, string>) => Promise<string | null>,
  ) {}

  private pair(step: HandlerStep): ComponentSlotPair {
    const pair = step.gw.device.componentSlots(step.component.target);
    if (!pair) throw failed(`${step.component.name}: this gateway has no ${step.component.target} slots`);
    return pair;
  }

  async install(step: HandlerStep): Promise<void> {
    const staged = step.payloads[0]!;
    await checkStaged(staged);
    const pair = this.pair(step);
    const active = await pair.activeSlot();
    const inPlace = step.strategy === 'in-place';
    // A resumed install writes the slot it chose the first time (the active one has not changed).
    const slot = this.book.pending(step)?.slot ?? (inPlace ? active : otherSlot(active));
    if (staged.payload.size > (await pair.capacityBytes(slot))) {
      throw new GantryError(
        'OTA_INSUFFICIENT_SPACE',
        `${step.component.name}: ${staged.payload.size} bytes do not fit ${step.component.target} slot ${slot}`,
      );
    }
    this.book.setPending(step, { slot, release: null });
    const writer = await pair.openWriter(slot, { offset: 0, allowActive: inPlace });
    await pipeChunks(new LendingFileReader(staged.file), writer);
    await this.verifySlot(step, slot);
  }

  private async verifySlot(step: HandlerStep, slot: SlotId): Promise<void> {
    const staged = step.payloads[0]!;
    const hash = createHash('sha256');
    if (staged.payload.size > 0) {
      await consumeChunks(
        this.pair(step).openReader(slot, { start: 0, end: staged.payload.size - 1 }),
        (c) => {
          hash.update(c);
          return undefined;
        },
      );
    }
    if (hash.digest('hex') !== staged.payload.sha256) {
      throw failed(
        `${step.component.name}: ${step.component.target} slot ${slot} does not hold the verified image`,
      );
    }
  }

  async activate(step: HandlerStep): Promise<void> {
    const pending = this.book.pending(step);
    if (!pending?.slot) throw failed(`${step.component.name}: nothing installed to activate`);
    const pair = this.pair(step);
    // Read back once more before the switch (the slot may have waited for the interlock or a
    // restart); once active it may be in use, and a mounted file system no longer reads back as
    // the image (even read-only, ext4 changes its superblock in the block device's cache).
    if ((await pair.activeSlot()) !== pending.slot) await this.verifySlot(step, pending.slot);
    await pair.setActiveSlot(pending.slot);
    await rebootForActivation(this.book, this.reboots, step);
  }

  async check(step: HandlerStep): Promise<void> {
    const pending = this.book.pending(step);
    const pair = this.pair(step);
    const active = await pair.activeSlot();
    if (!pending?.slot || active !== pending.slot) {
      throw failed(
        `${step.component.name}: ${step.component.target} slot ${pending?.slot ?? '?'} is not the active one`,
      );
    }
    // Not read back here: the slot is in use now (see activate); it was verified before the switch.
    const hooks = await this.healthHooks(step.gw, componentEnv(step));
    if (hooks) throw failed(`${step.component.name}: health check failed (${hooks})`);
  }

  async commit(step: HandlerStep): Promise<void> {
    this.book.commit(step);
  }

  async rollback(step: HandlerStep): Promise<void> {
    const pair = this.pair(step);
    const pending = this.book.pending(step);
    if (pending) {
      if (step.strategy === 'in-place') {
        throw failed(`${step.component.name}: installed in place, there is no previous copy to go back to`);
      }
      const previous = this.book.record(step.gw, step.component).slot ?? otherSlot(pending.slot ?? 'A');
      if (pending.slot && (await pair.activeSlot()) === pending.slot) await pair.setActiveSlot(previous);
      this.book.rolledBack(step, false);
    } else if (this.book.committedByThisJob(step)) {
      const record = this.book.record(step.gw, step.component);
      const previousSlot = record.previous?.slot ?? (record.slot ? otherSlot(record.slot) : 'A');
      await pair.setActiveSlot(previousSlot);
      this.book.rolledBack(step, true);
    } else {
      return;
    }
    if (step.component.needs_reboot) {
      await this.reboots.reboot(step.gw, `rolling back ${step.component.name}`);
    }
  }
}

/** What a handler process, a hook or a health check is told about the component. */
export function componentEnv(step: HandlerStep): Record<string, string> {
  return {
    GANTRY_JOB_ID: step.jobId,
    GANTRY_UPDATE_ID: step.jobId,
    GANTRY_COMPONENT: step.component.name,
    GANTRY_COMPONENT_VERSION: step.component.version,
    GANTRY_COMPONENT_TARGET: step.component.target,
    GANTRY_STRATEGY: step.strategy,
  };
}

/**
 * `file`: the payloads placed into `<components>/files/<target>/releases/<version>/` (a `files`
 * payload is a tar of regular files, any other payload one file of its name), then `current` (a
 * symlink) switched atomically by rename. The previous release stays until the next commit.
 */
export class FileHandler implements ComponentHandler {
  constructor(
    private readonly book: ComponentBook,
    private readonly root: (gw: GatewayRuntime) => string,
    private readonly reboots: RebootPort,
  ) {}

  private dir(step: HandlerStep): string {
    return path.join(this.root(step.gw), 'files', step.component.target);
  }

  private current(step: HandlerStep): string {
    return path.join(this.dir(step), 'current');
  }

  private releaseName(step: HandlerStep): string {
    return `${step.component.version}-${step.jobId}`;
  }

  async install(step: HandlerStep): Promise<void> {
    const releases = path.join(this.dir(step), 'releases');
    const name = this.releaseName(step);
    const final = path.join(releases, name);
    const staging = path.join(releases, `.staging-${name}`);
    fs.rmSync(staging, { recursive: true, force: true });
    fs.rmSync(final, { recursive: true, force: true });
    fs.mkdirSync(staging, { recursive: true });
    for (const p of step.payloads) {
      await checkStaged(p);
      if (p.payload.kind === 'files') await extractTar(p.file, staging);
      else fs.copyFileSync(p.file, path.join(staging, p.payload.name));
    }
    this.book.setPending(step, { slot: null, release: name });
    fs.renameSync(staging, final);
  }

  private pointCurrent(step: HandlerStep, release: string | null): void {
    const current = this.current(step);
    if (release === null) {
      fs.rmSync(current, { force: true });
      return;
    }
    const tmp = `${current}.tmp-${step.jobId}`;
    fs.rmSync(tmp, { force: true });
    fs.symlinkSync(path.join('releases', release), tmp);
    fs.renameSync(tmp, current);
  }

  async activate(step: HandlerStep): Promise<void> {
    const pending = this.book.pending(step);
    if (!pending?.release) throw failed(`${step.component.name}: nothing installed to activate`);
    this.pointCurrent(step, pending.release);
    await rebootForActivation(this.book, this.reboots, step);
  }

  async check(step: HandlerStep): Promise<void> {
    const pending = this.book.pending(step);
    const target = fs.readlinkSync(this.current(step));
    if (!pending?.release || target !== path.join('releases', pending.release)) {
      throw failed(`${step.component.name}: current does not point at the new release`);
    }
    for (const p of step.payloads) {
      if (p.payload.kind !== 'files' && !fs.existsSync(path.join(this.current(step), p.payload.name))) {
        throw failed(`${step.component.name}: ${p.payload.name} is missing from the new release`);
      }
    }
  }

  async commit(step: HandlerStep): Promise<void> {
    const record = this.book.record(step.gw, step.component);
    this.book.commit(step);
    const keep = new Set([record.pending?.release, record.release].filter(Boolean));
    const releases = path.join(this.dir(step), 'releases');
    for (const name of fs.readdirSync(releases)) {
      if (!keep.has(name)) fs.rmSync(path.join(releases, name), { recursive: true, force: true });
    }
  }

  async rollback(step: HandlerStep): Promise<void> {
    const record = this.book.record(step.gw, step.component);
    const pending = this.book.pending(step);
    if (pending) {
      this.pointCurrent(step, record.release);
      if (pending.release) {
        fs.rmSync(path.join(this.dir(step), 'releases', pending.release), { recursive: true, force: true });
      }
      this.book.rolledBack(step, false);
    } else if (this.book.committedByThisJob(step)) {
      this.pointCurrent(step, record.previous?.release ?? null);
      this.book.rolledBack(step, true);
    }
  }
}

/** Extracts a tar of regular files and directories; anything else, or a path leaving `dest`, fails. */
async function extractTar(file: string, dest: string): Promise<void> {
  // Loaded on first use (scripts/server-bundle-plugins.ts LAZY_PACKAGES): only a component install extracts.
  const { default: tar } = await import('tar-stream');
  const extract = tar.extract();
  const done = (async () => {
    for await (const entry of extract) {
      const name = entry.header.name.replace(/^\.\//, '').replace(/\/$/, '');
      if (name === '' || name === '.') {
        entry.resume();
        continue;
      }
      const problem = checkRelativePath(name, 'entry');
      if (problem) throw failed(`archive entry ${JSON.stringify(name)}: ${problem}`);
      const out = path.join(dest, name);
      if (entry.header.type === 'directory') {
        fs.mkdirSync(out, { recursive: true });
        entry.resume();
      } else if (entry.header.type === 'file') {
        fs.mkdirSync(path.dirname(out), { recursive: true });
        await pipeline(entry, fs.createWriteStream(out, { mode: 0o644 }));
      } else {
        throw failed(`archive entry ${name}: only files and directories are placed`);
      }
    }
  })();
  await Promise.all([pipeline(fs.createReadStream(file), extract), done]);
}

export interface PluginPort {
  runComponentHandler(
    gatewayId: string,
    plugin: string,
    verb: string,
    env: Record<string, string>,
    opts: { stdinFile?: string; updateId: string },
  ): Promise<{ ok: boolean; exitCode: number | null; reason: string; lastError: string | null }>;
}

/** Exit status of a verb the handler does not implement: a no-op for the optional verbs. */
export const HANDLER_EXIT_UNSUPPORTED = 3;

/**
 * `plugin`: an installed plugin's component handler, one process per verb (README: the component
 * handler protocol): `prepare`, `install` (payload on stdin, once per payload), `activate`,
 * `health-check`, `commit`, `rollback`.
 */
export class PluginHandler implements ComponentHandler {
  constructor(
    private readonly book: ComponentBook,
    private readonly plugins: PluginPort,
    private readonly reboots: RebootPort,
  ) {}

  private async verb(
    step: HandlerStep,
    verb: string,
    opts: { optional: boolean; payload?: { payload: Payload; file: string } },
  ): Promise<void> {
    const record = this.book.record(step.gw, step.component);
    const env: Record<string, string> = {
      ...componentEnv(step),
      GANTRY_COMPONENT_PREVIOUS_VERSION: record.version ?? '',
      GANTRY_RESUMED: step.resumed ? '1' : '0',
    };
    if (opts.payload) {
      env.GANTRY_PAYLOAD_NAME = opts.payload.payload.name;
      env.GANTRY_PAYLOAD_SIZE = String(opts.payload.payload.size);
      env.GANTRY_PAYLOAD_SHA256 = opts.payload.payload.sha256;
    }
    const outcome = await this.plugins.runComponentHandler(step.gw.id, step.component.target, verb, env, {
      stdinFile: opts.payload?.file,
      updateId: step.jobId,
    });
    if (outcome.ok) return;
    if (opts.optional && outcome.exitCode === HANDLER_EXIT_UNSUPPORTED) return;
    const detail = outcome.lastError ? `: ${outcome.lastError}` : '';
    throw failed(`${step.component.name}: ${verb} ${outcome.reason}${detail}`);
  }

  async install(step: HandlerStep): Promise<void> {
    for (const p of step.payloads) await checkStaged(p);
    this.book.setPending(step, { slot: null, release: null });
    await this.verb(step, 'prepare', { optional: true });
    for (const p of step.payloads) await this.verb(step, 'install', { optional: false, payload: p });
  }

  async activate(step: HandlerStep): Promise<void> {
    await this.verb(step, 'activate', { optional: true });
    await rebootForActivation(this.book, this.reboots, step);
  }

  async check(step: HandlerStep): Promise<void> {
    await this.verb(step, 'health-check', { optional: true });
  }

  async commit(step: HandlerStep): Promise<void> {
    if (this.book.pending(step)) await this.verb(step, 'commit', { optional: true });
    this.book.commit(step);
  }

  async rollback(step: HandlerStep): Promise<void> {
    const pending = this.book.pending(step);
    const committed = !pending && this.book.committedByThisJob(step);
    if (!pending && !committed) return;
    await this.verb(step, 'rollback', { optional: false });
    this.book.rolledBack(step, committed);
  }
}
