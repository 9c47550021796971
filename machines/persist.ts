import type { Snapshot } from 'xstate';

/**
 * Prepares a persisted machine snapshot (the JSON of `actor.getPersistedSnapshot()`) for
 * `createActor(machine, { snapshot })` so that no invoked actor runs twice.
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
export function prepareForRestore<T extends Snapshot<unknown>>(persisted: T): T {
  return { ...persisted, children: {} };
}

/**
 * `createActor(machine, restoreOptions(persisted))`: the options restoring a persisted snapshot.
 * XState's types require `input` for a machine that takes input even when a snapshot is given (it is
 * not used then), hence the explicit `undefined`.
 */
export function restoreOptions(persisted: Snapshot<unknown>): {
  snapshot: Snapshot<unknown>;
  input: undefined;
} {
  return { snapshot: prepareForRestore(persisted), input: undefined };
}
