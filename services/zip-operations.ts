import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createActor, fromPromise, type Actor } from 'xstate';
import { GantryError } from '../core/errors.js';
import { ZIP_JOB_KINDS } from '../core/job-kinds.js';
import type { MachineEventLog } from '../core/machine-events.js';
import {
  COMPLETE_MESSAGE,
  flattenState,
  progressStatus,
  zipOperationMachine,
  zipOperationPersisted,
  type ZipOperationKind,
  type ZipOperationMachine,
} from '../machines/zip-operation.js';
import type { ActorSnapshotStore } from './actor-snapshots.js';
import type { GatewayRegistry } from './gateways.js';
import type { JobFailure } from './job-restart.js';
import { runJobActor } from './job-runtime.js';
import type { JobStore, StoredJobOf } from './jobs.js';
import type { LogService } from './logs.js';
import type { ProvisioningService } from './provisioning.js';
import { sniffZipFile } from './zip-extract.js';
import type { TerminalStream } from './zip-manifests.js';

/**
 * POST /ota-configure and POST /ota-update as jobs: one statechart per operation, run by the job
 * runtime (services/job-runtime.ts: snapshot, job row and history row on every change of state),
 * under the gateway's one-operation-at-a-time lock.
 */

export interface ZipOperationDeps {
  config: { dataDir: string };
  jobs: JobStore;
  actorSnapshots: ActorSnapshotStore;
  clock: () => number;
  gateways: GatewayRegistry;
  logs: LogService;
  /** Events the operations receive and their changes of state, for the development inspector. */
  machineEvents?: MachineEventLog;
}

/** A file the upload route stored, waiting for the `start` procedure to claim it. */
interface StagedUpload {
  gatewayId: string;
  username: string;
  path: string;
  originalName: string;
  size: number;
  expiresAt: number;
}

interface Running {
  actor: Actor<ZipOperationMachine>;
  settled: Promise<void>;
}

export const ZIP_KINDS: Record<ZipOperationKind, { prefix: string; label: string }> = {
  configure: { prefix: 'CFG', label: 'Configuration' },
  plugin: { prefix: 'PLG', label: 'Plugin' },
};

const INVALID_TYPE = 'Invalid file type. Please upload a ZIP file';
const UPLOAD_TTL_MS = 10 * 60 * 1000;
const INTERRUPTED = 'Interrupted by a server restart; the previous version was kept';

/** An operation accepted (the documented answer of POST /ota-configure and /ota-update). */
export interface ZipStarted {
  success: true;
  update_id: string;
  message: string;
  status: 'pending';
  progress: 0;
}

/** Where an operation stands (the documented GET /ota-update-progress/<id>). */
export interface ZipProgress {
  success: boolean;
  status: 'idle' | 'in_progress' | 'complete' | 'error' | 'not_found';
  progress: number;
  message: string;
  error?: string;
}

export class ZipOperationService {
  private readonly uploads = new Map<string, StagedUpload>();
  private readonly running = new Map<string, Running>();
  /**
   * Hook runs still in flight. Leaving `running_hooks` (ABORT) stops the actor and signals the hook
   * to die, but XState does not wait for a stopped promise actor: shutdown waits here until the
   * hook's process group has exited, so none outlives the server.
   */
  private readonly hookRuns = new Set<Promise<unknown>>();

  constructor(
    private readonly deps: ZipOperationDeps,
    private readonly provisioning: ProvisioningService,
  ) {}

  /** Where multer writes uploads: under the data dir, beside what they will become. */
  uploadDir(): string {
    return path.join(this.deps.config.dataDir, 'uploads');
  }

  /** 409 before a large upload is even read, if the gateway is busy. Checked again at start. */
  assertIdle(gatewayId: string): void {
    const op = this.runtime(gatewayId).currentOperation();
    if (op) {
      throw new GantryError(
        'OTA_OPERATION_IN_PROGRESS',
        `Another operation is in progress: ${op.kind} ${op.id}`,
        {
          operation: op.kind,
          id: op.id,
        },
      );
    }
  }

  /**
   * Hands a stored upload over to the `start` procedure. A file is not a tRPC input, so the route
   * registers it here and passes this single-use, unguessable id, bound to the gateway and user.
   */
  registerUpload(upload: Omit<StagedUpload, 'expiresAt'>): string {
    this.sweepUploads();
    const id = randomBytes(16).toString('hex');
    this.uploads.set(id, { ...upload, expiresAt: this.deps.clock() + UPLOAD_TTL_MS });
    return id;
  }

  /** Removes an upload nobody claimed (refused, or the operation could not start). */
  discardUpload(id: string): void {
    const upload = this.uploads.get(id);
    if (!upload) return;
    this.uploads.delete(id);
    // Synchronous: the route's reply must not race the deletion of what it refused.
    fs.rmSync(upload.path, { force: true });
  }

  private sweepUploads(): void {
    const now = this.deps.clock();
    for (const [id, upload] of this.uploads) if (upload.expiresAt < now) this.discardUpload(id);
  }

  async start(input: {
    gatewayId: string;
    kind: ZipOperationKind;
    uploadId: string;
    username: string;
  }): Promise<ZipStarted> {
    const upload = this.uploads.get(input.uploadId);
    if (!upload || upload.gatewayId !== input.gatewayId || upload.username !== input.username) {
      throw new GantryError('VALIDATION_ERROR', 'Unknown upload_id');
    }
    // By content, not only by name: a PNG renamed .zip is not an archive.
    if (!/\.zip$/i.test(upload.originalName) || !(await sniffZipFile(upload.path))) {
      this.discardUpload(input.uploadId);
      throw new GantryError('VALIDATION_ERROR', INVALID_TYPE);
    }
    const runtime = this.runtime(input.gatewayId);
    const { prefix, label } = ZIP_KINDS[input.kind];
    const updateId = `${prefix}-${randomBytes(6).toString('hex').toUpperCase()}`;
    const now = this.deps.clock();
    const release = runtime.beginOperation({ kind: input.kind, id: updateId }, now);
    // Claimed: from here the operation owns (and eventually deletes) the file.
    this.uploads.delete(input.uploadId);
    try {
      this.deps.jobs.create({
        id: updateId,
        gatewayId: input.gatewayId,
        kind: input.kind,
        state: 'pending',
        request: { original_name: upload.originalName, size: upload.size, uploaded_by: input.username },
      });
    } catch (err) {
      release();
      fs.rm(upload.path, { force: true }, () => undefined);
      throw err;
    }
    this.deps.logs.info(
      input.gatewayId,
      'ota-zip',
      `${label} update ${updateId} started by ${input.username} (${upload.originalName})`,
    );
    this.launch({ updateId, gatewayId: input.gatewayId, kind: input.kind, zipPath: upload.path }, release);
    return {
      success: true,
      update_id: updateId,
      message: `${label} update started`,
      status: 'pending',
      progress: 0,
    };
  }

  /** The documented progress document; 404 "Update not found" for ids of other gateways too. */
  progress(gatewayId: string, updateId: string): ZipProgress {
    const row = this.deps.jobs.find(gatewayId, updateId, ZIP_JOB_KINDS);
    if (!row) throw new GantryError('NOT_FOUND', 'Update not found');
    const status = progressStatus(row.state);
    const loaded = this.deps.actorSnapshots.load(zipOperationPersisted, updateId);
    const ctx = loaded.status === 'found' ? loaded.snapshot.context : null;
    if (status === 'complete') {
      return { success: true, status, progress: 100, message: COMPLETE_MESSAGE };
    }
    if (status === 'error') {
      return {
        success: false,
        status,
        progress: ctx?.progress ?? 0,
        message: 'Operation failed',
        error: row.errorMessage ?? ctx?.error?.message ?? 'Operation failed',
      };
    }
    return { success: true, status, progress: ctx?.progress ?? 0, message: ctx?.message ?? 'Queued' };
  }

  /** Resolves once the operation has reached complete or error (and cleaned up after itself). */
  settled(updateId: string): Promise<void> {
    return this.running.get(updateId)?.settled ?? Promise.resolve();
  }

  /**
   * The `fail-and-undo` restart policy of ZIP operations (services/job-restart.ts), for each
   * gateway: what the interrupted operations `interrupted` had swapped in is undone and any swap a
   * crash cut in half is finished, so "error" always means "the previous version is in place". ZIP
   * operations are not resumed: the upload was a one-shot. Their uploads and staging trees are the
   * start-up sweep's (services/data-dir-sweep.ts).
   */
  afterRestart(
    kind: ZipOperationKind,
    gatewayId: string,
    interrupted: StoredJobOf<ZipOperationKind>[],
  ): JobFailure {
    const ids = new Set(interrupted.map((j) => j.id));
    if (kind === 'plugin') this.provisioning.recoverPlugins(gatewayId, ids);
    else this.provisioning.recoverConfiguration(gatewayId, ids);
    for (const job of interrupted) this.deps.logs.warn(gatewayId, 'ota-zip', `${job.id}: ${INTERRUPTED}`);
    return { code: 'OTA_INSTALL_FAILED', message: INTERRUPTED };
  }

  /** Shutdown: interrupts what can be interrupted (a running hook is killed) and waits for the rest. */
  async close(): Promise<void> {
    for (const { actor } of this.running.values())
      actor.send({ type: 'ABORT', reason: 'Server shutting down' });
    await Promise.all([...this.running.values()].map((r) => r.settled));
    await Promise.all(this.hookRuns);
    for (const id of [...this.uploads.keys()]) this.discardUpload(id);
  }

  private runtime(gatewayId: string) {
    const runtime = this.deps.gateways.get(gatewayId);
    if (!runtime) throw new GantryError('GATEWAY_NOT_FOUND', `Gateway ${gatewayId} not found`);
    return runtime;
  }

  private terminal(gatewayId: string, updateId: string, line: string, stream: TerminalStream = 'system') {
    this.provisioning.terminal.publish(gatewayId, {
      updateId,
      stream,
      line,
      at: this.deps.clock(),
    });
  }

  private launch(
    input: { updateId: string; gatewayId: string; kind: ZipOperationKind; zipPath: string },
    release: () => void,
  ): void {
    const { updateId, gatewayId } = input;
    const p = this.provisioning;
    const machine = zipOperationMachine.provide({
      actors: {
        extract: fromPromise(async ({ input: i }) => {
          const out = await p.stage(i.gatewayId, i.kind, i.updateId, i.zipPath);
          this.terminal(gatewayId, updateId, `Extracted ${out.files} files (${out.bytes} bytes)`);
          return out;
        }),
        validate: fromPromise(async ({ input: i }) => {
          const summary = await p.validate(i.gatewayId, i.kind, i.stageDir);
          if (summary.kind === 'plugin') {
            this.terminal(gatewayId, updateId, `Plugin ${summary.name} ${summary.version}`);
          }
          return summary;
        }),
        apply: fromPromise(async ({ input: i }) => {
          if (i.manifest.kind === 'configuration') {
            await p.applyConfiguration(i.gatewayId, i.updateId, i.stageDir, i.zipPath);
          } else {
            await p.installPlugin(i.gatewayId, i.updateId, i.stageDir, i.zipPath);
          }
        }),
        postInstall: fromPromise(({ input: i, signal }) => {
          const run = p.runPostInstall(i.gatewayId, i.updateId, i.manifest.name, signal);
          const tracked = run.then(
            () => undefined,
            () => undefined,
          );
          this.hookRuns.add(tracked);
          void tracked.finally(() => this.hookRuns.delete(tracked));
          return run;
        }),
        rollback: fromPromise(({ input: i }) => p.rollbackPlugin(i.gatewayId, i.updateId, i.manifest.name)),
      },
    });

    let finishing = false;
    let resolveSettled!: () => void;
    const settled = new Promise<void>((resolve) => (resolveSettled = resolve));

    const finish = async () => {
      release();
      try {
        await p.cleanup(gatewayId, updateId);
        await fs.promises.rm(input.zipPath, { force: true });
      } catch (err) {
        console.error(`[gantry] ${updateId} cleanup:`, err);
      } finally {
        this.running.delete(updateId);
        resolveSettled();
      }
    };

    const actor: Actor<ZipOperationMachine> = runJobActor(
      (inspect) => createActor(machine, { input, inspect }),
      {
        jobs: this.deps.jobs,
        snapshots: this.deps.actorSnapshots,
        machine: zipOperationPersisted,
        job: { id: updateId, kind: input.kind, gatewayId },
        state: 'pending',
        stateOf: (snapshot) => flattenState(snapshot.value),
        errorOf: ({ context }) => context.error,
        transitionContext: ({ context }) => ({ progress: context.progress, message: context.message }),
        announce: (snapshot) => {
          // Done or crashed: clean up once the store says so.
          if (snapshot.status !== 'active' && !finishing) {
            finishing = true;
            void finish();
          }
        },
        record: this.deps.machineEvents?.inspector(gatewayId, 'zipOp', updateId, (ref) => ref === actor),
        onPersistFailed: (err) => console.error(`[gantry] ${updateId} persist:`, err),
      },
    );
    this.running.set(updateId, { actor, settled });

    const runtime = this.runtime(gatewayId);
    actor.on('step', (ev) => {
      runtime.updateOperation(updateId, { currentOperation: ev.step, progress: ev.progress });
      this.terminal(gatewayId, updateId, ev.message);
    });
    actor.on('failed', (ev) => {
      this.terminal(gatewayId, updateId, `Error: ${ev.message}`);
      this.deps.logs.error(gatewayId, 'ota-zip', `${updateId} failed: ${ev.message}`);
    });
    actor.on('completed', () => {
      this.deps.logs.info(gatewayId, 'ota-zip', `${updateId} completed`);
    });

    actor.start();
    actor.send({ type: 'START' });
  }
}
