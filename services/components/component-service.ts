import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { createActor, fromPromise, type Actor } from 'xstate';
import type { Component, Manifest, Payload } from '../../bundle/manifest.js';
import type { MachineEventLog } from '../../core/machine-events.js';
import { sleep } from '../../core/sleep.js';
import type { SlotId } from '../../device/types.js';
import {
  componentSequenceMachine,
  componentSequencePersisted,
  sequenceOperation,
  sequenceStepName,
  type ComponentSequenceSnapshot,
  type ComponentStepInput,
  type SequenceStrategy,
} from '../../machines/component-sequence.js';
import { restoreOptions } from '../../machines/persist.js';
import type { ActorSnapshotStore } from '../actor-snapshots.js';
import type { GatewayRuntime } from '../gateways.js';
import type { LogService } from '../logs.js';
import { activationOf } from '../updates/activation.js';
import type { PartitionManager } from '../updates/partitions.js';
import {
  AbSlotHandler,
  ComponentBook,
  failed,
  FileHandler,
  PluginHandler,
  type ComponentHandler,
  type HandlerStep,
  type PluginPort,
  type RebootPort,
  REBOOT_ATTEMPTS,
} from './handlers.js';
import { checkPlan, orderedComponents } from './plan.js';
import { ComponentStateStore, type ComponentRecord } from './state.js';

type SequenceActor = Actor<typeof componentSequenceMachine>;

/** GANTRY_REBOOT_TIMEOUT_SECONDS's default (core/config.ts). */
const DEFAULT_REBOOT_TIMEOUT_MS = 300_000;

export interface ComponentServiceDeps {
  clock: () => number;
  logs: LogService;
  gatewayDir(gatewayId: string): string;
  partitions: PartitionManager;
  actorSnapshots: ActorSnapshotStore;
  plugins: PluginPort & {
    plugins(gatewayId: string): Array<{ name: string; componentHandler: string | null }>;
    runHooks(
      gatewayId: string,
      kind: 'health-check',
      env: Record<string, string>,
    ): Promise<{ ok: boolean; failures: Array<{ plugin: string; reason: string }> }>;
  };
  blocking(gatewayId: string): string[];
  onSafetyChange(gatewayId: string, listener: (blocking: string[]) => void): () => void;
  machineEvents?: MachineEventLog;
  /** How long a reboot may take to bring the system down before it counts as not happened. */
  rebootTimeoutMs?: number;
}

/** The update job's side of the rootfs component: its slot was written and verified by the job. */
export interface RootfsPort {
  /** The job's install of the verified slot (in-place copy, post-install hooks, staged as next boot). */
  install(): Promise<void>;
  /** The slot that must boot and be committed. */
  slot: SlotId;
  /** The slot can no longer be trusted (the install failed before it was staged). */
  invalidate(): Promise<void>;
}

export interface ComponentInstall {
  jobId: string;
  strategy: SequenceStrategy;
  manifest: Manifest;
  rootfs: RootfsPort;
  /** Told after every step of the sequence (progress, logs). */
  onStep(operation: string): void;
}

/** One row of `/status` `components`. */
export interface InstalledComponent {
  name: string;
  version: string | null;
  handler: string;
  target: string;
  slot: SlotId | null;
  floor: string | null;
  pending_version: string | null;
}

const actorIdOf = (jobId: string) => `${jobId}:components`;

/**
 * Multi-component bundles (issue 15): checks a bundle's components against the gateway before a
 * byte is written, stages their payloads during the download, and installs them with the
 * component sequence statechart, persisted beside the job so a restart resumes at the right
 * component and step.
 */
export class ComponentService {
  readonly state: ComponentStateStore;
  private readonly book: ComponentBook;
  private readonly running = new Map<
    string,
    { gatewayId: string; actor: SequenceActor; strategy: SequenceStrategy }
  >();
  private readonly reboots: RebootPort;
  private readonly handlers: Record<'ab-slot' | 'file' | 'plugin', ComponentHandler>;
  /** The bundles of running sequences (the seamless boot health check reads them). */
  private readonly manifests = new Map<string, Manifest>();
  private stopped = false;

  constructor(private readonly deps: ComponentServiceDeps) {
    this.state = new ComponentStateStore(deps.gatewayDir);
    this.book = new ComponentBook(this.state);
    this.reboots = {
      reboot: async (gw, reason) => {
        this.deps.logs.info(gw.id, 'ota', `Rebooting: ${reason}`);
        // The step is over only once the gateway has booted again. A device that boots in-process
        // (the simulator) says so with 'booted' before reboot() returns; a real one's reboot command
        // returns while the system is going down and this process ends before the boot: the step
        // then waits here and is resumed after the boot (its reboot marked as requested), so the
        // health check never runs on the system that is shutting down.
        // A system still up after the reboot timeout did not go down (its shutdown was refused or
        // stalled): the caller sees the same boot id and asks again (rebootForActivation).
        await this.rebootAndWait(
          gw,
          (signal) =>
            new Promise<void>((resolve) => {
              const stop = gw.device.onEvent((event) => {
                if (event.type === 'booted') resolve();
              });
              signal.addEventListener('abort', stop, { once: true });
            }),
        );
      },
      notRebooted: (gw, reason, attempt) => {
        this.deps.logs.warn(
          gw.id,
          'ota',
          `The reboot for ${reason} did not happen (same boot); asking again (${attempt}/${REBOOT_ATTEMPTS})`,
        );
      },
    };
    const reboots = this.reboots;
    const healthHooks = async (gw: GatewayRuntime, env: Record<string, string>) => {
      const result = await this.deps.plugins.runHooks(gw.id, 'health-check', env);
      return result.ok ? null : result.failures.map((f) => `${f.plugin}: ${f.reason}`).join('; ');
    };
    this.handlers = {
      'ab-slot': new AbSlotHandler(this.book, reboots, healthHooks),
      file: new FileHandler(this.book, (gw) => this.state.dir(gw.id), reboots),
      plugin: new PluginHandler(this.book, this.deps.plugins, reboots),
    };
  }

  /** Server shutdown: the sequences stop where they are (their snapshots say where to resume). */
  stop(): void {
    this.stopped = true;
    for (const run of this.running.values()) run.actor.stop();
    this.running.clear();
  }

  // ---- before a byte is written ----------------------------------------------------------

  /** Installed versions: rootfs is the running slot's; the others from the component records. */
  async installedVersions(gw: GatewayRuntime): Promise<Record<string, string | null>> {
    const out: Record<string, string | null> = {};
    for (const [name, r] of Object.entries(this.state.all(gw.id))) out[name] = r.version;
    const booted = await gw.device.bootedSlot();
    out.rootfs = (await gw.device.slots())[booted].version;
    return out;
  }

  /** Throws OTA_INVALID_IMAGE for a bundle whose components this gateway cannot install consistently. */
  async checkManifest(gw: GatewayRuntime, manifest: Manifest, allowDowngrade: boolean): Promise<void> {
    const records = this.state.all(gw.id);
    const floors: Record<string, string | null> = {};
    for (const [name, r] of Object.entries(records)) floors[name] = r.floor;
    floors.rootfs = this.deps.partitions.versionFloor(gw.id);
    const plugins = this.deps.plugins.plugins(gw.id);
    checkPlan(manifest, {
      installed: await this.installedVersions(gw),
      floors,
      allowDowngrade,
      targetProblem: (c) => {
        if (c.handler === 'ab-slot' && c.target !== 'rootfs' && !gw.device.componentSlots(c.target)) {
          return `this gateway has no ${c.target} slot pair`;
        }
        if (c.handler === 'plugin') {
          const plugin = plugins.find((p) => p.name === c.target);
          if (!plugin) return `plugin ${c.target} is not installed`;
          if (!plugin.componentHandler) return `plugin ${c.target} declares no component_handler`;
        }
        const record = records[c.name];
        if (record && (record.handler !== c.handler || record.target !== c.target)) {
          return `installed with handler ${record.handler} into ${record.target}, not ${c.handler} into ${c.target}`;
        }
        return null;
      },
    });
  }

  // ---- staging during the download -------------------------------------------------------

  stagingDir(gw: GatewayRuntime, jobId: string): string {
    return path.join(this.state.dir(gw.id), 'staging', jobId);
  }

  /** A payload's staging file, written whole (the bundle reader checks its hash) and fsynced. */
  async payloadSink(gw: GatewayRuntime, jobId: string, payload: Payload): Promise<Writable> {
    const dir = this.stagingDir(gw, jobId);
    fs.mkdirSync(dir, { recursive: true });
    const fd = fs.openSync(path.join(dir, payload.name), 'w', 0o600);
    return new Writable({
      write(chunk: Buffer, _enc, cb) {
        fs.write(fd, chunk, (err) => cb(err));
      },
      final(cb) {
        fs.fsync(fd, (err) => {
          fs.close(fd, () => cb(err));
        });
      },
      destroy(err, cb) {
        fs.close(fd, () => cb(err));
      },
    });
  }

  /** The staged payloads of a finished job are no longer needed. */
  cleanup(gw: GatewayRuntime, jobId: string): void {
    fs.rmSync(this.stagingDir(gw, jobId), { recursive: true, force: true });
  }

  // ---- the sequence ----------------------------------------------------------------------

  /** `installing app (2/3)` while a job's sequence runs; null otherwise. */
  operation(jobId: string): string | null {
    const run = this.running.get(jobId);
    return run ? sequenceOperation(run.actor.getSnapshot()) : null;
  }

  /** The sequence's last persisted snapshot (for the inspector and finished jobs). */
  storedSequence(jobId: string) {
    const loaded = this.deps.actorSnapshots.load(componentSequencePersisted, actorIdOf(jobId));
    return loaded.status === 'found' ? loaded.snapshot : null;
  }

  /**
   * Runs (or, `resumed`, continues from its persisted snapshot) a job's component sequence to its
   * end: resolves once every component is committed, throws OTA_INSTALL_FAILED naming the failed
   * component and what was rolled back otherwise.
   */
  async install(gw: GatewayRuntime, req: ComponentInstall, resumed: boolean): Promise<void> {
    const components = orderedComponents(req.manifest);
    const byName = new Map(components.map((c) => [c.name, c]));
    const stepOf = (input: ComponentStepInput): HandlerStep => {
      const component = byName.get(input.name);
      if (!component) throw failed(`component ${input.name} is not in the bundle`);
      return {
        gw,
        jobId: req.jobId,
        component,
        payloads: component.payloads.map((name) => ({
          payload: req.manifest.payloads.find((p) => p.name === name)!,
          file: path.join(this.stagingDir(gw, req.jobId), name),
        })),
        strategy: input.strategy,
        resumed: input.resumed,
        now: this.deps.clock(),
      };
    };
    const at = () => ({ at: this.deps.clock() });
    const run = (verb: keyof ComponentHandler) =>
      fromPromise<{ at: number }, ComponentStepInput>(async ({ input }) => {
        const step = stepOf(input);
        if (isRootfs(step.component)) await this.rootfsStep(gw, req, step, verb);
        else await this.handlers[step.component.handler][verb](step);
        return at();
      });
    const machine = componentSequenceMachine.provide({
      actors: {
        installComponent: run('install'),
        activateComponent: run('activate'),
        checkComponent: run('check'),
        commitComponent: run('commit'),
        rollbackComponent: run('rollback'),
        rebootGateway: fromPromise(async () => {
          // Seamless: the one reboot is the rootfs's (always in a component bundle), into its staged slot.
          await this.rebootIntoRootfs(gw, req.rootfs.slot);
          return at();
        }),
      },
    });
    const actorId = actorIdOf(req.jobId);
    const loaded = resumed
      ? this.deps.actorSnapshots.load(componentSequencePersisted, actorId)
      : ({ status: 'missing' } as const);
    let actor: SequenceActor | undefined;
    const inspect = this.deps.machineEvents?.inspector(
      gw.id,
      'componentSequence',
      actorId,
      (ref) => ref === actor,
    );
    if (loaded.status === 'found') {
      actor = createActor(machine, { ...restoreOptions(loaded.snapshot), inspect });
    } else {
      if (resumed && loaded.status === 'refused') {
        throw failed(`the component sequence's saved state cannot be trusted (${loaded.reason})`);
      }
      actor = createActor(machine, {
        inspect,
        input: {
          jobId: req.jobId,
          strategy: req.strategy,
          blocking: this.deps.blocking(gw.id),
          components: await this.sequenceInput(gw, components),
        },
      });
    }
    const seq = actor;
    let lastOperation = '';
    seq.subscribe((snap) => {
      if (this.stopped) return;
      this.deps.actorSnapshots.save(componentSequencePersisted, actorId, gw.id, seq.getPersistedSnapshot());
      const operation = sequenceOperation(snap);
      if (operation !== lastOperation) {
        lastOperation = operation;
        req.onStep(operation);
      }
    });
    this.running.set(req.jobId, { gatewayId: gw.id, actor: seq, strategy: req.strategy });
    this.manifests.set(req.jobId, req.manifest);
    const stopSafety = this.deps.onSafetyChange(gw.id, (blocking) =>
      seq.send({ type: 'SAFETY_CHANGED', blocking }),
    );
    try {
      const final = await new Promise<ComponentSequenceSnapshot>((resolve, reject) => {
        seq.subscribe({
          next: (snap) => {
            if (snap.status === 'done') resolve(snap);
          },
          error: reject,
        });
        seq.start();
        const started = seq.getSnapshot();
        if (started.status === 'done') resolve(started);
        else if (loaded.status === 'found') {
          // Blocked state read again: the interlock may have changed while Gantry was down.
          seq.send({ type: 'SAFETY_CHANGED', blocking: this.deps.blocking(gw.id) });
          seq.send({ type: 'RESUME' });
        }
      });
      if (sequenceStepName(final) !== 'done') throw failed(failureMessage(final));
    } finally {
      stopSafety();
      seq.stop();
      this.running.delete(req.jobId);
      this.manifests.delete(req.jobId);
    }
  }

  private async sequenceInput(gw: GatewayRuntime, components: Component[]) {
    const installed = await this.installedVersions(gw);
    return components.map((c) => ({
      name: c.name,
      version: c.version,
      previousVersion: installed[c.name] ?? null,
      needsReboot: c.needs_reboot,
      requires: c.requires.map((r) => ({ ...r })),
    }));
  }

  // ---- the rootfs component: the job's A/B slot and the partition statechart --------------

  private async rootfsStep(
    gw: GatewayRuntime,
    req: ComponentInstall,
    step: HandlerStep,
    verb: keyof ComponentHandler,
  ): Promise<void> {
    const slot = req.rootfs.slot;
    const activation = () => activationOf(this.deps.partitions.snapshot(gw.id), slot);
    switch (verb) {
      case 'install':
        this.book.setPending(step, { slot, release: null });
        await req.rootfs.install();
        return;
      case 'activate':
        // Seamless: staged now, booted by the sequence's one reboot.
        if (step.strategy !== 'seamless') await this.rebootIntoRootfs(gw, slot);
        return;
      case 'check': {
        const outcome = await this.until(gw, () => {
          const a = activation();
          return a.kind === 'committed' || a.kind === 'failed' ? a : null;
        });
        if (outcome.kind === 'failed') throw failed(`rootfs: ${outcome.message}`);
        return;
      }
      case 'commit':
        // The partition statechart committed the slot (and raised its floor) after its health check.
        this.book.commit(step);
        return;
      case 'rollback': {
        const a = activation();
        if (a.kind === 'committed') {
          throw failed(
            `rootfs ${step.component.version} is committed on slot ${slot}; roll it back with /recovery/rollback`,
          );
        }
        // Left by the bootloader or the health check already; else never booted: not to be booted.
        if (a.kind !== 'failed') await req.rootfs.invalidate();
        this.book.rolledBack(step, false);
        return;
      }
    }
  }

  /** Reboots into the staged rootfs slot, unless that happened already (a resumed step). */
  private async rebootIntoRootfs(gw: GatewayRuntime, slot: SlotId): Promise<void> {
    const staged = () => activationOf(this.deps.partitions.snapshot(gw.id), slot).kind === 'staged';
    // Still staged after the reboot timeout: the system did not go down; asked again, as for any
    // component's activation (a restart of Gantry on the same boot asks again by itself: staged).
    for (let attempt = 1; staged(); attempt++) {
      if (attempt > REBOOT_ATTEMPTS) {
        throw failed(`rootfs: the gateway did not reboot after ${REBOOT_ATTEMPTS} requests`);
      }
      if (attempt > 1) this.reboots.notRebooted(gw, `slot ${slot}`, attempt);
      this.deps.logs.info(gw.id, 'ota', `Rebooting into slot ${slot}`);
      await this.rebootAndWait(gw, (signal) => this.until(gw, () => (staged() ? null : true), signal));
    }
  }

  /**
   * Asks the device to reboot, then waits for `booted` (a sign of the new boot) or the reboot
   * timeout, whichever comes first; the caller tells which by the boot id or the slot's state.
   */
  private async rebootAndWait(
    gw: GatewayRuntime,
    booted: (signal: AbortSignal) => Promise<unknown>,
  ): Promise<void> {
    const waited = new AbortController();
    try {
      const sign = booted(waited.signal);
      await gw.device.reboot();
      await Promise.race([
        sign,
        sleep(this.deps.rebootTimeoutMs ?? DEFAULT_REBOOT_TIMEOUT_MS, waited.signal),
      ]);
    } finally {
      waited.abort();
    }
  }

  /** Resolves with `read()`'s first non-null answer, asked now and after every partition change. */
  private until<T>(gw: GatewayRuntime, read: () => T | null, signal?: AbortSignal): Promise<T> {
    const now = read();
    if (now !== null) return Promise.resolve(now);
    return new Promise((resolve) => {
      const stop = this.deps.partitions.onChange((changed) => {
        if (changed.id !== gw.id) return;
        const value = read();
        if (value !== null) {
          stop();
          resolve(value);
        }
      });
      // Given up on (the caller's race ended): stop listening; the promise stays pending, unobserved.
      signal?.addEventListener('abort', stop, { once: true });
    });
  }

  /**
   * Seamless: the other components' health checks are part of the new rootfs's boot health check,
   * so the rootfs is committed only if every component is healthy, and otherwise the bootloader
   * goes back and every component is rolled back with it (all or nothing). Null: healthy.
   */
  async bootHealthCheck(gw: GatewayRuntime): Promise<string | null> {
    for (const [jobId, run] of this.running) {
      if (run.gatewayId !== gw.id || run.strategy !== 'seamless') continue;
      const snap = run.actor.getSnapshot();
      const step = sequenceStepName(snap);
      if (step !== 'rebooting' && step !== 'checking') continue;
      for (const [index, c] of snap.context.components.entries()) {
        if (c.name === 'rootfs' || c.phase !== 'active') continue;
        const stored = this.state.get(gw.id, c.name);
        if (!stored) continue;
        try {
          const handler = this.handlers[stored.handler as keyof typeof this.handlers];
          const step = this.stepForCheck(gw, jobId, index, snap);
          if (handler && step) await handler.check(step);
        } catch (err) {
          return `${c.name}: ${(err as Error).message}`;
        }
      }
    }
    return null;
  }

  private stepForCheck(
    gw: GatewayRuntime,
    jobId: string,
    index: number,
    snap: ComponentSequenceSnapshot,
  ): HandlerStep | null {
    const manifest = this.manifests.get(jobId);
    const name = snap.context.components[index]?.name;
    const component = manifest?.components?.find((c) => c.name === name);
    if (!manifest || !component) return null;
    return {
      gw,
      jobId,
      component,
      payloads: component.payloads.map((p) => ({
        payload: manifest.payloads.find((m) => m.name === p)!,
        file: path.join(this.stagingDir(gw, jobId), p),
      })),
      strategy: 'seamless',
      resumed: false,
      now: this.deps.clock(),
    };
  }

  // ---- what is installed -----------------------------------------------------------------

  /** Every component the gateway has installed through component bundles, rootfs first. */
  async list(gw: GatewayRuntime): Promise<InstalledComponent[]> {
    const rows: InstalledComponent[] = [];
    const booted = await gw.device.bootedSlot();
    const rootfsVersion = (await gw.device.slots())[booted].version;
    const records: Record<string, ComponentRecord> = this.state.all(gw.id);
    rows.push({
      name: 'rootfs',
      version: rootfsVersion,
      handler: 'ab-slot',
      target: 'rootfs',
      slot: booted,
      floor: this.deps.partitions.versionFloor(gw.id),
      pending_version: records.rootfs?.pending?.version ?? null,
    });
    for (const r of Object.values(records).sort((a, b) => a.name.localeCompare(b.name))) {
      if (r.name === 'rootfs') continue;
      rows.push({
        name: r.name,
        version: r.version,
        handler: r.handler,
        target: r.target,
        slot: r.slot,
        floor: r.floor,
        pending_version: r.pending?.version ?? null,
      });
    }
    return rows;
  }
}

function isRootfs(c: Component): boolean {
  return c.handler === 'ab-slot' && c.target === 'rootfs';
}

function failureMessage(snap: ComponentSequenceSnapshot): string {
  const ctx = snap.context;
  const f = ctx.failure;
  const head = f ? `${f.component} failed at ${f.step}: ${f.message}` : 'the component sequence failed';
  const back = ctx.components.filter((c) => c.phase === 'rolled_back').map((c) => c.name);
  const kept = ctx.components.filter((c) => c.phase === 'committed').map((c) => `${c.name} ${c.version}`);
  const parts = [head];
  if (back.length) parts.push(`rolled back: ${back.join(', ')}`);
  if (kept.length) parts.push(`kept (committed): ${kept.join(', ')}`);
  if (ctx.rollbackFailure) parts.push(`ROLLBACK FAILED, left as it is: ${ctx.rollbackFailure}`);
  return parts.join('; ');
}
