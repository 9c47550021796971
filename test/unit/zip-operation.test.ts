import { describe, expect, it } from 'vitest';
import { createActor, fromPromise, waitFor } from 'xstate';
import {
  flattenState,
  progressStatus,
  zipOperationMachine,
  type ZipManifestSummary,
  type ZipOperationEmitted,
} from '../../machines/zip-operation.js';

function deferred<T = void>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const PLUGIN: ZipManifestSummary = {
  kind: 'plugin',
  name: 'telemetry',
  version: '1.0.0',
  hooks: ['post-install', 'health-check'],
  timeoutSeconds: 5,
};

/** The machine with every effect a deferred the test settles by hand. */
function harness(kind: 'configure' | 'plugin', manifest: ZipManifestSummary) {
  const steps = {
    extract: deferred<{ stageDir: string; files: number; bytes: number }>(),
    validate: deferred<ZipManifestSummary>(),
    apply: deferred(),
    postInstall: deferred(),
    rollback: deferred(),
  };
  const called: string[] = [];
  let hookSignal: AbortSignal | undefined;
  const machine = zipOperationMachine.provide({
    actors: {
      extract: fromPromise(() => (called.push('extract'), steps.extract.promise)),
      validate: fromPromise(() => (called.push('validate'), steps.validate.promise)),
      apply: fromPromise(() => (called.push('apply'), steps.apply.promise)),
      postInstall: fromPromise(({ signal }) => {
        called.push('postInstall');
        hookSignal = signal;
        return steps.postInstall.promise;
      }),
      rollback: fromPromise(() => (called.push('rollback'), steps.rollback.promise)),
    },
  });
  const actor = createActor(machine, {
    input: { updateId: 'PLG-1', gatewayId: 'GW-1', kind, zipPath: '/tmp/x.zip' },
  });
  const emitted: ZipOperationEmitted[] = [];
  actor.on('*', (ev) => emitted.push(ev));
  const states: string[] = [];
  actor.subscribe((s) => {
    const state = flattenState(s.value);
    if (states[states.length - 1] !== state) states.push(state);
  });
  actor.start();
  const at = (state: string) => waitFor(actor, (s) => flattenState(s.value) === state);
  return { actor, steps, called, emitted, states, at, manifest, hookSignal: () => hookSignal };
}

describe('zip-operation machine', () => {
  it('should run a configuration through extract, validate, apply to complete', async () => {
    const h = harness('configure', { kind: 'configuration' });
    expect(h.actor.getSnapshot().context.progress).toBe(0);
    expect(progressStatus(flattenState(h.actor.getSnapshot().value))).toBe('idle');
    h.actor.send({ type: 'START' });
    await h.at('in_progress.extracting');
    h.steps.extract.resolve({ stageDir: '/stage', files: 3, bytes: 10 });
    await h.at('in_progress.validating');
    h.steps.validate.resolve({ kind: 'configuration' });
    await h.at('in_progress.applying');
    h.steps.apply.resolve();
    const done = await h.at('complete');
    expect(h.states).toEqual([
      'pending',
      'in_progress.extracting',
      'in_progress.validating',
      'in_progress.applying',
      'complete',
    ]);
    expect(h.called).toEqual(['extract', 'validate', 'apply']);
    expect(done.context).toMatchObject({
      progress: 100,
      message: 'Operation completed successfully',
      error: null,
    });
    const progress = h.emitted.flatMap((e) => (e.type === 'step' ? [e.progress] : []));
    expect(progress).toEqual([10, 40, 70, 100]);
    expect(h.emitted[h.emitted.length - 1]).toEqual({ type: 'completed' });
  });

  it('should run the post-install hook of a plugin that has one', async () => {
    const h = harness('plugin', PLUGIN);
    h.actor.send({ type: 'START' });
    h.steps.extract.resolve({ stageDir: '/stage', files: 3, bytes: 10 });
    h.steps.validate.resolve(PLUGIN);
    h.steps.apply.resolve();
    await h.at('in_progress.running_hooks');
    expect(h.actor.getSnapshot().context.message).toBe('Running post-install hook');
    h.steps.postInstall.resolve();
    await h.at('complete');
    expect(h.called).toEqual(['extract', 'validate', 'apply', 'postInstall']);
  });

  it('should skip the hook step for a plugin without post-install', async () => {
    const noHook: ZipManifestSummary = { ...PLUGIN, hooks: ['health-check'] } as ZipManifestSummary;
    const h = harness('plugin', noHook);
    h.actor.send({ type: 'START' });
    h.steps.extract.resolve({ stageDir: '/stage', files: 3, bytes: 10 });
    h.steps.validate.resolve(noHook);
    h.steps.apply.resolve();
    await h.at('complete');
    expect(h.called).not.toContain('postInstall');
  });

  it('should end in error with OTA_INVALID_IMAGE and the last progress when extraction fails', async () => {
    const h = harness('configure', { kind: 'configuration' });
    h.actor.send({ type: 'START' });
    h.steps.extract.reject(new Error('Symbolic link in ZIP: x'));
    const s = await h.at('error');
    expect(s.context.error).toEqual({ code: 'OTA_INVALID_IMAGE', message: 'Symbolic link in ZIP: x' });
    expect(s.context.progress).toBe(10);
    expect(progressStatus('error')).toBe('error');
    expect(h.emitted[h.emitted.length - 1]).toEqual({
      type: 'failed',
      code: 'OTA_INVALID_IMAGE',
      message: 'Symbolic link in ZIP: x',
    });
  });

  it('should report OTA_INSTALL_FAILED when applying fails', async () => {
    const h = harness('configure', { kind: 'configuration' });
    h.actor.send({ type: 'START' });
    h.steps.extract.resolve({ stageDir: '/stage', files: 1, bytes: 1 });
    h.steps.validate.resolve({ kind: 'configuration' });
    h.steps.apply.reject(new Error('disk full'));
    const s = await h.at('error');
    expect(s.context.error).toEqual({ code: 'OTA_INSTALL_FAILED', message: 'disk full' });
  });

  it('should roll a plugin back when its post-install hook fails, keeping the hook error', async () => {
    const h = harness('plugin', PLUGIN);
    h.actor.send({ type: 'START' });
    h.steps.extract.resolve({ stageDir: '/stage', files: 3, bytes: 10 });
    h.steps.validate.resolve(PLUGIN);
    h.steps.apply.resolve();
    await h.at('in_progress.running_hooks');
    h.steps.postInstall.reject(new Error('Post-install hook of telemetry failed: exited with code 1'));
    await h.at('in_progress.rolling_back');
    h.steps.rollback.resolve();
    const s = await h.at('error');
    expect(h.called).toContain('rollback');
    expect(s.context.error?.message).toBe('Post-install hook of telemetry failed: exited with code 1');
  });

  it('should say so when the rollback fails too', async () => {
    const h = harness('plugin', PLUGIN);
    h.actor.send({ type: 'START' });
    h.steps.extract.resolve({ stageDir: '/stage', files: 3, bytes: 10 });
    h.steps.validate.resolve(PLUGIN);
    h.steps.apply.resolve();
    h.steps.postInstall.reject(new Error('hook failed'));
    await h.at('in_progress.rolling_back');
    h.steps.rollback.reject(new Error('EIO'));
    const s = await h.at('error');
    expect(s.context.error?.message).toBe('hook failed; restoring the previous version failed too: EIO');
  });

  it('should abort a running hook (its signal fires) and roll back', async () => {
    const h = harness('plugin', PLUGIN);
    h.actor.send({ type: 'START' });
    h.steps.extract.resolve({ stageDir: '/stage', files: 3, bytes: 10 });
    h.steps.validate.resolve(PLUGIN);
    h.steps.apply.resolve();
    await h.at('in_progress.running_hooks');
    h.actor.send({ type: 'ABORT', reason: 'Server shutting down' });
    await h.at('in_progress.rolling_back');
    expect(h.hookSignal()?.aborted).toBe(true);
    h.steps.rollback.resolve();
    const s = await h.at('error');
    expect(s.context.error?.message).toBe('Server shutting down');
  });

  it('should ignore ABORT while applying (the swap runs to its end)', async () => {
    const h = harness('configure', { kind: 'configuration' });
    h.actor.send({ type: 'START' });
    h.steps.extract.resolve({ stageDir: '/stage', files: 1, bytes: 1 });
    h.steps.validate.resolve({ kind: 'configuration' });
    await h.at('in_progress.applying');
    h.actor.send({ type: 'ABORT', reason: 'stop' });
    expect(flattenState(h.actor.getSnapshot().value)).toBe('in_progress.applying');
    h.steps.apply.resolve();
    await h.at('complete');
  });

  it('should round-trip its persisted snapshot through JSON', async () => {
    const h = harness('configure', { kind: 'configuration' });
    const pending = JSON.parse(JSON.stringify(h.actor.getPersistedSnapshot()));
    const input = { updateId: 'PLG-1', gatewayId: 'GW-1', kind: 'configure' as const, zipPath: '/tmp/x.zip' };
    const restoredPending = createActor(zipOperationMachine, { snapshot: pending, input }).start();
    expect(restoredPending.getSnapshot().value).toBe('pending');
    expect(restoredPending.getSnapshot().context).toEqual(h.actor.getSnapshot().context);
    restoredPending.stop();

    h.actor.send({ type: 'START' });
    h.steps.extract.resolve({ stageDir: '/stage', files: 1, bytes: 1 });
    h.steps.validate.resolve({ kind: 'configuration' });
    h.steps.apply.resolve();
    await h.at('complete');
    const done = JSON.parse(JSON.stringify(h.actor.getPersistedSnapshot()));
    const restored = createActor(zipOperationMachine, { snapshot: done, input }).start();
    expect(restored.getSnapshot().status).toBe('done');
    expect(restored.getSnapshot().context).toEqual(h.actor.getSnapshot().context);
  });

  it('should map states to the documented progress statuses', () => {
    expect(progressStatus('pending')).toBe('idle');
    expect(progressStatus('in_progress.running_hooks')).toBe('in_progress');
    expect(progressStatus('complete')).toBe('complete');
    expect(progressStatus('error')).toBe('error');
  });
});
