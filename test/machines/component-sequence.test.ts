import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createActor, fromPromise, type Actor } from 'xstate';
import { unmetRequirements, type Requirement } from '../../machines/component-constraints.js';
import {
  componentSequenceMachine,
  componentSequencePersisted,
  installedVersions,
  nextToUnwind,
  sequenceOperation,
  sequenceStepName,
  TOUCHED_PHASES,
  TRANSITIONAL_PHASES,
  type ComponentSequenceInput,
  type ComponentStepInput,
  type RebootStepInput,
  type SequenceComponent,
  type SequenceComponentInput,
  type SequenceStrategy,
} from '../../machines/component-sequence.js';
import { restoreOptions } from '../../machines/persist.js';

/** A step a fake handler was asked for, settled by the test. */
interface Call {
  verb: 'install' | 'activate' | 'check' | 'commit' | 'rollback' | 'reboot';
  index: number;
  resolve(): void;
  reject(message: string): void;
}

const flush = () => new Promise((r) => setTimeout(r, 0));

/** The sequence machine with every handler step a pending promise the test settles. */
class Harness {
  calls: Call[] = [];
  actor!: Actor<typeof componentSequenceMachine>;
  /** Every snapshot the actor took (context), to check invariants over whole runs. */
  history: Array<{ step: string; components: SequenceComponent[]; blockedBy: string[] }> = [];
  /** Activations started while the interlock blocked (must stay empty). */
  unsafeActivations: number[] = [];

  private machine() {
    const step = (verb: Call['verb']) =>
      fromPromise<{ at: number }, ComponentStepInput>(
        ({ input }) =>
          new Promise((resolve, reject) => {
            if (verb === 'activate' && this.actor.getSnapshot().context.blockedBy.length > 0) {
              this.unsafeActivations.push(input.index);
            }
            this.calls.push({
              verb,
              index: input.index,
              resolve: () => resolve({ at: 1 }),
              reject: (message) => reject(new Error(message)),
            });
          }),
      );
    return componentSequenceMachine.provide({
      actors: {
        installComponent: step('install'),
        activateComponent: step('activate'),
        checkComponent: step('check'),
        commitComponent: step('commit'),
        rollbackComponent: step('rollback'),
        rebootGateway: fromPromise<{ at: number }, RebootStepInput>(
          () =>
            new Promise((resolve, reject) => {
              this.calls.push({
                verb: 'reboot',
                index: -1,
                resolve: () => resolve({ at: 1 }),
                reject: (m) => reject(new Error(m)),
              });
            }),
        ),
      },
    });
  }

  private watch(): void {
    this.actor.subscribe((snap) => {
      this.history.push({
        step: sequenceStepName(snap),
        components: snap.context.components.map((c) => ({ ...c })),
        blockedBy: [...snap.context.blockedBy],
      });
    });
  }

  start(input: ComponentSequenceInput): this {
    this.actor = createActor(this.machine(), { input });
    this.watch();
    this.actor.start();
    return this;
  }

  /** A restart: the persisted snapshot (as JSON, checked by its schema) restored, then RESUME. */
  restart(): void {
    const json = JSON.parse(JSON.stringify(this.actor.getPersistedSnapshot())) as unknown;
    const parsed = componentSequencePersisted.schema.parse(json);
    this.actor.stop();
    this.calls = [];
    this.actor = createActor(this.machine(), restoreOptions(parsed));
    this.watch();
    this.actor.start();
    this.actor.send({ type: 'RESUME' });
  }

  get snap() {
    return this.actor.getSnapshot();
  }

  async settle(i: number, ok: boolean): Promise<void> {
    const call = this.calls.splice(i, 1)[0];
    if (!call) return;
    if (ok) call.resolve();
    else call.reject(`${call.verb} of ${call.index} failed`);
    await flush();
  }
}

const comp = (name: string, version: string, previous: string | null, requires: Requirement[] = []) =>
  ({
    name,
    version,
    previousVersion: previous,
    needsReboot: name === 'rootfs',
    requires,
  }) satisfies SequenceComponentInput;

const THREE = [
  comp('rootfs', 'v5.1.0', 'v5.0.4'),
  comp('plc', 'v2.0.0', 'v1.0.0', [{ component: 'rootfs', min_version: 'v5.1.0' }]),
  comp('app', 'v2.1.0', 'v2.0.0', [{ component: 'rootfs', min_version: 'v5.1.0' }]),
];

async function runAllOk(h: Harness): Promise<void> {
  for (let n = 0; n < 100 && h.snap.status === 'active'; n++) {
    await flush();
    await h.settle(0, true);
  }
}

describe('component sequence statechart', () => {
  it('should take each component through install, activation, health check and commit before the next (rolling)', async () => {
    const h = new Harness().start({ jobId: 'J', strategy: 'rolling', components: THREE, blocking: [] });
    const order: string[] = [];
    for (let n = 0; n < 100 && h.snap.status === 'active'; n++) {
      await flush();
      const call = h.calls[0];
      if (call) order.push(`${call.verb} ${call.index}`);
      await h.settle(0, true);
    }
    expect(sequenceStepName(h.snap)).toBe('done');
    expect(order).toEqual(
      [0, 1, 2].flatMap((i) => [`install ${i}`, `activate ${i}`, `check ${i}`, `commit ${i}`]),
    );
    expect(h.snap.context.components.map((c) => c.phase)).toEqual(['committed', 'committed', 'committed']);
  });

  it('should stage everything, activate all, reboot once, then check and commit all (seamless)', async () => {
    const h = new Harness().start({ jobId: 'J', strategy: 'seamless', components: THREE, blocking: [] });
    const order: string[] = [];
    for (let n = 0; n < 100 && h.snap.status === 'active'; n++) {
      await flush();
      const call = h.calls[0];
      if (call) order.push(call.verb);
      await h.settle(0, true);
    }
    expect(order).toEqual([
      ...['install', 'install', 'install'],
      ...['activate', 'activate', 'activate'],
      'reboot',
      ...['check', 'check', 'check'],
      ...['commit', 'commit', 'commit'],
    ]);
  });

  it('should roll back every component of a seamless update when one health check fails', async () => {
    const h = new Harness().start({ jobId: 'J', strategy: 'seamless', components: THREE, blocking: [] });
    for (let n = 0; n < 100 && h.snap.status === 'active'; n++) {
      await flush();
      const call = h.calls[0];
      await h.settle(0, !(call?.verb === 'check' && call.index === 1));
    }
    expect(sequenceStepName(h.snap)).toBe('failed');
    expect(h.snap.context.failure).toMatchObject({ component: 'plc', step: 'health-check' });
    expect(h.snap.context.components.map((c) => c.phase)).toEqual([
      'rolled_back',
      'rolled_back',
      'rolled_back',
    ]);
  });

  it('should wait before an activation while the interlock blocks and continue when it clears', async () => {
    const h = new Harness().start({
      jobId: 'J',
      strategy: 'rolling',
      components: THREE,
      blocking: ['crane_motion'],
    });
    await flush();
    await h.settle(0, true); // install rootfs
    expect(sequenceStepName(h.snap)).toBe('awaiting_activation');
    expect(sequenceOperation(h.snap)).toBe('waiting_for_safety: activating rootfs (1/3)');
    expect(h.calls).toEqual([]);
    h.actor.send({ type: 'SAFETY_CHANGED', blocking: [] });
    await flush();
    expect(h.calls.map((c) => c.verb)).toEqual(['activate']);
    expect(sequenceOperation(h.snap)).toBe('activating rootfs (1/3)');
  });

  it('should keep a committed component whose requirements still hold after a later one fails', async () => {
    const h = new Harness().start({ jobId: 'J', strategy: 'rolling', components: THREE, blocking: [] });
    for (let n = 0; n < 100 && h.snap.status === 'active'; n++) {
      await flush();
      const call = h.calls[0];
      await h.settle(0, !(call?.verb === 'check' && call.index === 1));
    }
    expect(sequenceStepName(h.snap)).toBe('failed');
    expect(h.snap.context.components.map((c) => c.phase)).toEqual(['committed', 'rolled_back', 'pending']);
  });

  it('should also roll back a committed component whose requirement the failed one no longer meets (the rule)', async () => {
    // An order the download check refuses, met at run time anyway (the rule does not rely on it):
    // hmi needs plc >= v2 and was committed first; plc fails and goes back to v1: hmi goes back too.
    const components = [
      comp('hmi', 'v3.0.0', 'v2.0.0', [{ component: 'plc', min_version: 'v2.0.0' }]),
      comp('plc', 'v2.0.0', 'v1.0.0'),
    ];
    const h = new Harness().start({ jobId: 'J', strategy: 'rolling', components, blocking: [] });
    const rollbacks: number[] = [];
    for (let n = 0; n < 100 && h.snap.status === 'active'; n++) {
      await flush();
      const call = h.calls[0];
      if (call?.verb === 'rollback') rollbacks.push(call.index);
      await h.settle(0, !(call?.verb === 'check' && call.index === 1));
    }
    expect(rollbacks).toEqual([1, 0]);
    expect(h.snap.context.components.map((c) => c.phase)).toEqual(['rolled_back', 'rolled_back']);
  });

  it('should unwind committed components, latest first, until every requirement holds', () => {
    const c = (
      name: string,
      phase: SequenceComponent['phase'],
      requires: Requirement[] = [],
    ): SequenceComponent => ({
      ...comp(name, 'v2.0.0', 'v1.0.0', requires),
      phase,
    });
    // b needs c at v2 (c failed and is rolled back): b goes; then a needs b at v2: a goes too.
    const components = [
      c('a', 'committed', [{ component: 'b', min_version: 'v2.0.0' }]),
      c('b', 'committed', [{ component: 'c', min_version: 'v2.0.0' }]),
      c('c', 'rolled_back'),
      c('d', 'pending'),
    ];
    expect(nextToUnwind(components)).toBe(1);
    components[1] = { ...components[1]!, phase: 'rolled_back' };
    expect(nextToUnwind(components)).toBe(0);
    components[0] = { ...components[0]!, phase: 'rolled_back' };
    expect(nextToUnwind(components)).toBe(null);
    // A touched, uncommitted component always goes first.
    expect(
      nextToUnwind([c('x', 'committed', [{ component: 'y', min_version: 'v9.0.0' }]), c('y', 'active')]),
    ).toBe(1);
  });

  it('should keep never two components half-applied and never roll back a committed one the rule keeps (property)', async () => {
    const versions = ['v1.0.0', 'v2.0.0', 'v3.0.0'];
    const requirement = (names: string[]) =>
      fc.record({
        component: fc.constantFrom(...names),
        min_version: fc.option(fc.constantFrom(...versions), { nil: undefined }),
        below_version: fc.option(fc.constantFrom(...versions), { nil: undefined }),
      });
    const scenario = fc.integer({ min: 1, max: 4 }).chain((n) => {
      const names = Array.from({ length: n }, (_, i) => `c${i}`);
      return fc.record({
        strategy: fc.constantFrom<SequenceStrategy>('rolling', 'seamless', 'in-place'),
        components: fc.tuple(
          ...names.map((name) =>
            fc.record({
              name: fc.constant(name),
              version: fc.constantFrom(...versions),
              previousVersion: fc.option(fc.constantFrom(...versions), { nil: null }),
              needsReboot: fc.boolean(),
              requires:
                n > 1
                  ? fc.array(requirement(names.filter((x) => x !== name)), { maxLength: 2 })
                  : fc.constant([]),
            }),
          ),
        ),
        blocking: fc.constantFrom<string[]>([], ['crane_motion']),
        commands: fc.array(
          fc.oneof(
            { weight: 6, arbitrary: fc.constant({ t: 'ok' as const }) },
            { weight: 1, arbitrary: fc.constant({ t: 'fail' as const }) },
            { weight: 1, arbitrary: fc.constant({ t: 'restart' as const }) },
            { weight: 1, arbitrary: fc.record({ t: fc.constant('safety' as const), blocked: fc.boolean() }) },
          ),
          { maxLength: 80 },
        ),
      });
    });

    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        const h = new Harness().start({
          jobId: 'P',
          strategy: s.strategy,
          components: s.components.map((c) => ({
            ...c,
            requires: (c.requires as Requirement[]).map((r) => ({ ...r })),
          })),
          blocking: s.blocking,
        });
        for (const cmd of [...s.commands, ...Array.from({ length: 120 }, () => ({ t: 'ok' as const }))]) {
          if (h.snap.status !== 'active') break;
          await flush();
          if (cmd.t === 'restart') h.restart();
          else if (cmd.t === 'safety')
            h.actor.send({ type: 'SAFETY_CHANGED', blocking: cmd.blocked ? ['crane_motion'] : [] });
          else if (h.calls.length === 0) h.actor.send({ type: 'SAFETY_CHANGED', blocking: [] });
          else await h.settle(0, cmd.t === 'ok');
        }
        await flush();

        for (const [i, snap] of h.history.entries()) {
          // Never two components with a handler at work on them.
          expect(
            snap.components.filter((c) => TRANSITIONAL_PHASES.includes(c.phase)).length,
          ).toBeLessThanOrEqual(1);
          // One at a time: rolling and in-place never leave two half-applied.
          if (s.strategy !== 'seamless') {
            expect(
              snap.components.filter((c) => TOUCHED_PHASES.includes(c.phase)).length,
            ).toBeLessThanOrEqual(1);
          }
          // A committed component is rolled back only when the rule picks it.
          const before = h.history[i - 1];
          if (!before) continue;
          snap.components.forEach((c, j) => {
            if (before.components[j]!.phase === 'committed' && c.phase === 'rolling_back') {
              // Judged on the set as the rule saw it (the rollback before it in the same step done).
              const seen = snap.components.map((o, k) =>
                k === j ? { ...o, phase: 'committed' as const } : o,
              );
              const touched = seen.some(
                (o) =>
                  o.phase !== 'pending' &&
                  o.phase !== 'committed' &&
                  o.phase !== 'rolled_back' &&
                  o.phase !== 'failed',
              );
              expect(touched).toBe(false);
              expect(unmetRequirements(c.requires, installedVersions(seen))).not.toBeNull();
            }
          });
        }
        expect(h.unsafeActivations).toEqual([]);
        const step = sequenceStepName(h.snap);
        expect(['done', 'failed']).toContain(step);
        const phases = h.snap.context.components.map((c) => c.phase);
        if (step === 'done') expect(phases.every((p) => p === 'committed')).toBe(true);
        if (step === 'failed' && h.snap.context.rollbackFailure === null) {
          // Every component as it was or committed, and the committed ones' requirements hold.
          expect(phases.every((p) => p === 'pending' || p === 'committed' || p === 'rolled_back')).toBe(true);
          expect(nextToUnwind(h.snap.context.components)).toBeNull();
        }
      }),
      { numRuns: 150 },
    );
  });

  it('should restore every snapshot of a run from its persisted JSON', async () => {
    const h = new Harness().start({ jobId: 'J', strategy: 'rolling', components: THREE, blocking: [] });
    const seen: unknown[] = [];
    h.actor.subscribe(() => seen.push(JSON.parse(JSON.stringify(h.actor.getPersistedSnapshot()))));
    await runAllOk(h);
    expect(seen.length).toBeGreaterThan(5);
    for (const s of seen) {
      const parsed = componentSequencePersisted.schema.safeParse(s);
      expect(parsed.error?.issues ?? []).toEqual([]);
      expect(parsed.data).toEqual(s);
    }
  });
});
