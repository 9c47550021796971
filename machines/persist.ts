import type { Snapshot } from 'xstate';
import { z } from 'zod';
import type { MachineId } from '../core/job-kinds.js';
import { SLOT_IDS } from '../core/vocabulary.js';

/**
 * A statechart's persisted snapshot (the JSON of `actor.getPersistedSnapshot()`), as checked on
 * load: XState's fields, with the machine's own `value` and `context`.
 */
export interface PersistedSnapshot<TContext, TValue = unknown> {
  status: 'active' | 'done' | 'error' | 'stopped';
  value: TValue;
  context: TContext;
  /** Invoked actors at the time of the write; dropped on restore (see prepareForRestore). */
  children: Record<string, unknown>;
  historyValue?: Record<string, unknown>;
  output?: unknown;
  error?: unknown;
}

/**
 * What the snapshot store (services/actor-snapshots.ts) needs to keep a machine's snapshots: the
 * row key, the version of the persisted shape, and its zod check.
 *
 * `version` is bumped whenever a snapshot written before the change could not be restored as it
 * is (a context field added, renamed or retyped, a state renamed): a snapshot of another version is
 * refused on load and the machine's owner falls back (re-derive, start fresh, fail the job) rather
 * than restore something the machine would misread. The JSON round-trip test of each machine
 * (test/machines/persisted.test.ts) fails when the schema no longer matches what the machine writes.
 */
export interface PersistedMachine<TContext, TValue = unknown> {
  readonly id: MachineId;
  readonly version: number;
  readonly schema: z.ZodType<PersistedSnapshot<TContext, TValue>>;
}

/**
 * Declares a machine's persisted shape. `check` adds what a field-by-field schema cannot say (the
 * interlock is `overridden` exactly when its context holds an override): a message when violated.
 */
export function persistedMachine<TContext, TValue>(def: {
  id: MachineId;
  version: number;
  value: z.ZodType<TValue>;
  context: z.ZodType<TContext>;
  check?: (snapshot: PersistedSnapshot<TContext, TValue>) => string | null;
}): PersistedMachine<TContext, TValue> {
  const base = z.looseObject({
    status: z.enum(['active', 'done', 'error', 'stopped']),
    value: def.value,
    context: def.context,
    children: z.record(z.string(), z.unknown()),
    historyValue: z.record(z.string(), z.unknown()).optional(),
    output: z.unknown().optional(),
    error: z.unknown().optional(),
  });
  const check = def.check;
  const schema = check
    ? base.superRefine((snapshot, ctx) => {
        const problem = check(snapshot);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
    : base;
  return { id: def.id, version: def.version, schema };
}

/** Slot ids as the machines' contexts hold them. */
export const slotIdSchema = z.enum(SLOT_IDS);

/**
 * Prepares a persisted machine snapshot for `createActor(machine, { snapshot })` so that no invoked
 * actor runs twice.
 *
 * Why: XState 5 (checked in 5.33 `StateMachine.restoreSnapshot` + `start`) re-creates every
 * persisted child and *starts it again* when the parent starts: a `fromPromise` or `fromCallback`
 * that was in flight is re-run with the input it was first given (for the transfer: the byte offset
 * of when the download *began*, not `bytesDone`). Our machines instead re-enter the invoking state
 * on `RESUME` (`reenter: true`), which computes fresh input from context; with the restored child
 * also running, the effect (a download, an install, a reboot) would start twice.
 *
 * So: drop the children here, restore, start, then send `RESUME`. Stopping a child that does not
 * exist is a no-op in XState, so the re-entry is clean. Delayed events (`after`) are not persisted
 * either way (see PLATFORM.md); our machines have none.
 */
export function prepareForRestore(
  persisted: Snapshot<unknown> | PersistedSnapshot<unknown>,
): Snapshot<unknown> {
  const restorable: object = { ...persisted, children: {} };
  // What XState wrote (checked against the machine's schema when it came from the store): XState's
  // `Snapshot` type names only its status fields, as a union our looser JSON type does not match.
  return restorable as Snapshot<unknown>;
}

/**
 * `createActor(machine, restoreOptions(persisted))`: the options restoring a persisted snapshot.
 * XState's types require `input` for a machine that takes input even when a snapshot is given (it is
 * not used then), hence the explicit `undefined`.
 */
export function restoreOptions(persisted: Snapshot<unknown> | PersistedSnapshot<unknown>): {
  snapshot: Snapshot<unknown>;
  input: undefined;
} {
  return { snapshot: prepareForRestore(persisted), input: undefined };
}
