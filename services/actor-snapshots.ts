import { and, eq } from 'drizzle-orm';
import type { MachineId } from '../core/job-kinds.js';
import type { GantryDb } from '../drizzle/db.js';
import { actorSnapshots } from '../drizzle/schema.js';
import type { PersistedMachine, PersistedSnapshot } from '../machines/persist.js';

/** What loading a snapshot found. `refused` says why, for the log; the caller decides the fallback. */
export type SnapshotLoad<TContext, TValue> =
  | { status: 'found'; snapshot: PersistedSnapshot<TContext, TValue> }
  | { status: 'missing' }
  | { status: 'refused'; reason: string };

/**
 * The one store of statechart snapshots (`actor_snapshots`): jobs' (update jobs, ZIP operations,
 * keyed by job id) and each gateway's partition pair and safety interlock (keyed by gateway id).
 *
 * Every row records the version of the machine definition that wrote it (machines/persist.ts). A
 * load hands out a snapshot only if it was written by the version this Gantry runs and passes the
 * machine's zod check; otherwise it is refused with the reason, and the machine's owner falls back:
 * the partition pair is re-derived from the device, the interlock starts fresh, a job fails.
 */
export class ActorSnapshotStore {
  constructor(
    private readonly db: GantryDb,
    private readonly clock: () => number,
  ) {}

  /** Writes the actor's persisted snapshot (`actor.getPersistedSnapshot()`), replacing the last one. */
  save(
    machine: PersistedMachine<unknown, unknown>,
    actorId: string,
    gatewayId: string,
    snapshot: unknown,
  ): void {
    const now = this.clock();
    this.db
      .insert(actorSnapshots)
      .values({ machine: machine.id, actorId, gatewayId, version: machine.version, snapshot, updatedAt: now })
      .onConflictDoUpdate({
        target: [actorSnapshots.machine, actorSnapshots.actorId],
        set: { gatewayId, version: machine.version, snapshot, updatedAt: now },
      })
      .run();
  }

  load<TContext, TValue>(
    machine: PersistedMachine<TContext, TValue>,
    actorId: string,
  ): SnapshotLoad<TContext, TValue> {
    const row = this.stored(machine.id, actorId);
    if (!row) return { status: 'missing' };
    if (row.version !== machine.version) {
      return {
        status: 'refused',
        reason: `written by version ${row.version} of the ${machine.id} statechart; this Gantry reads version ${machine.version}`,
      };
    }
    const parsed = machine.schema.safeParse(row.snapshot);
    if (!parsed.success) {
      const problems = parsed.error.issues
        .slice(0, 3)
        .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
        .join('; ');
      return { status: 'refused', reason: `not a valid ${machine.id} snapshot (${problems})` };
    }
    return { status: 'found', snapshot: parsed.data };
  }

  /** The row as stored, unchecked: for diagnostics (the debug bundle) only. */
  stored(
    machine: MachineId,
    actorId: string,
  ): { version: number; snapshot: unknown; updatedAt: number } | undefined {
    return this.db
      .select({
        version: actorSnapshots.version,
        snapshot: actorSnapshots.snapshot,
        updatedAt: actorSnapshots.updatedAt,
      })
      .from(actorSnapshots)
      .where(and(eq(actorSnapshots.machine, machine), eq(actorSnapshots.actorId, actorId)))
      .get();
  }
}
