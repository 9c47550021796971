import type { InspectionEvent } from 'xstate';

export interface MachineEventEntry {
  at: number;
  gatewayId: string;
  /** `updateJob`, `partition`, … */
  machine: string;
  /** The job id for jobs, the gateway id for per-gateway machines. */
  actor: string;
  type: string;
  /** The event's other fields (bytes, strategies, reasons); never secrets — machines get none. */
  payload: Record<string, unknown>;
}

/**
 * The last events the statecharts received, with their payloads, for the development inspector.
 * A bounded ring per app (no module state); filled through XState's `inspect` option.
 */
export class MachineEventLog {
  private readonly entries: MachineEventEntry[] = [];

  constructor(
    private readonly clock: () => number,
    private readonly capacity = 300,
  ) {}

  /** An `inspect` callback for `createActor(machine, { inspect })` that records the root actor's events. */
  inspector(gatewayId: string, machine: string, actorId: string, isRoot: (ref: unknown) => boolean) {
    return (ev: InspectionEvent) => {
      if (ev.type !== '@xstate.event' || !isRoot(ev.actorRef)) return;
      const { type, ...payload } = ev.event as { type: string } & Record<string, unknown>;
      // XState's own init event says nothing to an operator.
      if (type.startsWith('xstate.init')) return;
      this.entries.push({ at: this.clock(), gatewayId, machine, actor: actorId, type, payload });
      if (this.entries.length > this.capacity) this.entries.splice(0, this.entries.length - this.capacity);
    };
  }

  /** Newest first. */
  recent(gatewayIds: readonly string[], limit = 100): MachineEventEntry[] {
    const out: MachineEventEntry[] = [];
    for (let i = this.entries.length - 1; i >= 0 && out.length < limit; i--) {
      const e = this.entries[i]!;
      if (gatewayIds.includes(e.gatewayId)) out.push(e);
    }
    return out;
  }
}
