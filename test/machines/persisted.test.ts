import { describe, expect, it } from 'vitest';
import { createActor, fromPromise, waitFor, type AnyActorRef } from 'xstate';
import { partitionPersisted } from '../../machines/partition.js';
import { restoreOptions, type PersistedMachine } from '../../machines/persist.js';
import { safetyInterlockMachine, safetyInterlockPersisted } from '../../machines/safety-interlock.js';
import { updateJobPersisted } from '../../machines/update-job.js';
import {
  zipOperationMachine,
  zipOperationPersisted,
  type ZipManifestSummary,
} from '../../machines/zip-operation.js';
import { flush, JobHarness } from './job-harness.js';
import { PartitionHarness } from './partition-harness.js';

/**
 * Every persisted statechart's zod schema (machines/persist.ts) against what the machine really
 * writes: each snapshot taken along a run, as JSON (what the store keeps), must pass its machine's
 * check unchanged (a field the schema does not know would be dropped or refused) and restore to
 * the same state. Tampered copies must be refused.
 */

function json(actor: AnyActorRef): unknown {
  return JSON.parse(JSON.stringify(actor.getPersistedSnapshot())) as unknown;
}

function expectRoundTrip(def: PersistedMachine<unknown, unknown>, snapshots: unknown[]): void {
  expect(snapshots.length).toBeGreaterThan(2);
  for (const snapshot of snapshots) {
    const parsed = def.schema.safeParse(snapshot);
    expect(parsed.error?.issues ?? []).toEqual([]);
    expect(parsed.data).toEqual(snapshot);
  }
}

const PLUGIN: ZipManifestSummary = {
  kind: 'plugin',
  name: 'telemetry',
  version: '1.0.0',
  hooks: ['post-install'],
  timeoutSeconds: 5,
};

const SAFE = {
  craneMotion: 'idle' as const,
  acsCollision: 'clear' as const,
  upsBatteryPercent: 85,
  networkConnected: true,
  systemLoad: 0.2,
  craneEstimatedClearSeconds: null,
};

describe('persisted statechart snapshots', () => {
  it('should take every update-job snapshot of a run through its schema unchanged, and restore it', async () => {
    const h = new JobHarness();
    const actor = h.start();
    const seen = [json(actor)];
    actor.send({ type: 'START', at: 2_000 });
    seen.push(json(actor));
    h.liveTransfer().sendBack({ type: 'PROGRESS', bytesDone: 400, speedBps: 100, at: 3_000 });
    seen.push(json(actor));
    h.liveTransfer().sendBack({ type: 'TRANSFER_DONE', at: 4_000 });
    seen.push(json(actor));
    JobHarness.last(h.verifies).done.resolve({ at: 5_000 });
    await flush();
    seen.push(json(actor));
    actor.send({
      type: 'INSTALL',
      at: 6_000,
      strategy: 'seamless',
      rebootAfter: false,
      createSnapshot: false,
      blocking: [],
    });
    seen.push(json(actor));
    JobHarness.last(h.installs).done.resolve({ at: 7_000 });
    await flush();
    seen.push(json(actor));
    actor.send({ type: 'COMMITTED', at: 8_000 });
    seen.push(json(actor));
    expect(actor.getSnapshot().value).toBe('complete');
    expectRoundTrip(updateJobPersisted, seen);

    // The state the JSON says, restored.
    const middle = updateJobPersisted.schema.parse(seen[4]);
    const restored = createActor(new JobHarness().machine, restoreOptions(middle)).start();
    expect(restored.getSnapshot().value).toBe('downloaded');
    expect(restored.getSnapshot().context).toEqual(middle.context);
  });

  it('should take every partition snapshot of an update and a rollback through its schema unchanged', () => {
    const h = new PartitionHarness();
    const actor = h.start();
    const seen = [json(actor)];
    const steps = [
      { type: 'WRITE_STARTED', slot: 'B' },
      { type: 'WRITE_VERIFIED', slot: 'B', version: 'v5.0.10' },
      { type: 'STAGE', slot: 'B', at: 1_000 },
      { type: 'BOOTED', slot: 'B', at: 2_000, bootCount: 1, upgradeAvailable: true },
      { type: 'HEALTH_OK', at: 3_000 },
      { type: 'ROLLBACK', to: 'A', at: 4_000, reason: 'operator' },
      { type: 'BOOTED', slot: 'A', at: 5_000, bootCount: 0, upgradeAvailable: false },
    ] as const;
    for (const event of steps) {
      actor.send(event);
      seen.push(json(actor));
    }
    expect(new Set(seen.map((s) => (s as { value: string }).value))).toEqual(
      new Set(['stable', 'staged', 'trial', 'rolling_back']),
    );
    expectRoundTrip(partitionPersisted, seen);
  });

  it('should take every safety-interlock snapshot, override included, through its schema unchanged', () => {
    const actor = createActor(safetyInterlockMachine, { input: { now: 1_000 } }).start();
    const seen = [json(actor)];
    actor.send({ type: 'READINGS', readings: SAFE, at: 2_000 });
    seen.push(json(actor));
    actor.send({
      type: 'OVERRIDE_ENABLE',
      constraints: ['crane_motion'],
      reason: 'maintenance',
      by: 'admin',
      at: 3_000,
      operationId: 'OTA-JOB-1',
    });
    seen.push(json(actor));
    actor.send({ type: 'OVERRIDE_DISABLE', by: 'admin', at: 4_000 });
    seen.push(json(actor));
    actor.stop();
    expectRoundTrip(safetyInterlockPersisted, seen);
  });

  it('should take every ZIP-operation snapshot of a plugin install through its schema unchanged', async () => {
    const machine = zipOperationMachine.provide({
      actors: {
        extract: fromPromise(() => Promise.resolve({ stageDir: '/tmp/stage', files: 2, bytes: 10 })),
        validate: fromPromise(() => Promise.resolve<ZipManifestSummary>(PLUGIN)),
        apply: fromPromise(() => Promise.resolve()),
        postInstall: fromPromise(() => Promise.resolve()),
        rollback: fromPromise(() => Promise.resolve()),
      },
    });
    const actor = createActor(machine, {
      input: { updateId: 'PLG-1', gatewayId: 'GW-1', kind: 'plugin', zipPath: '/tmp/x.zip' },
    });
    const seen: unknown[] = [];
    actor.subscribe(() => seen.push(json(actor)));
    actor.start();
    actor.send({ type: 'START' });
    await waitFor(actor, (s) => s.status === 'done');
    expectRoundTrip(zipOperationPersisted, seen);
  });

  it('should refuse snapshots that are not what the machine writes', () => {
    const actor = new PartitionHarness().start();
    const good = json(actor) as { value: string; context: Record<string, unknown> };
    const refused = [
      { ...good, value: 'flashing' },
      { ...good, context: { ...good.context, booted: 'C' } },
      { ...good, context: { ...good.context, extra: true } },
      { ...good, context: { ...good.context, versionFloor: undefined } },
      { ...good, status: 'done' },
    ];
    for (const snapshot of refused) expect(partitionPersisted.schema.safeParse(snapshot).success).toBe(false);

    const safety = createActor(safetyInterlockMachine, { input: { now: 1 } }).start();
    const normal = json(safety) as { value: string };
    safety.stop();
    // "overridden" with no override in its context: not a state the interlock can be in.
    expect(safetyInterlockPersisted.schema.safeParse({ ...normal, value: 'overridden' }).success).toBe(false);
  });
});
