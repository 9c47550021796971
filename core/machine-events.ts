import type { InspectionEvent } from 'xstate';

export interface MachineEventEntry {
  at: number;
  gatewayId: string;
  /** `updateJob`, `partition`, `safetyInterlock`, `zipOp`. */
  machine: string;
  /** The job id for jobs, the gateway id for per-gateway machines. */
  actor: string;
  type: string;
  /** The event's other fields (bytes, strategies, reasons); never secrets — machines get none. */
  payload: Record<string, unknown>;
}

/** What the statecharts do, as the bus carries it to the inspector's live stream. */
export type MachineActivity =
  | ({ kind: 'event' } & MachineEventEntry)
  | {
      kind: 'state';
      at: number;
      gatewayId: string;
      machine: string;
      actor: string;
      /** The new state value: a string, or the JSON of a nested value. */
      value: string;
    };

/** Where the log sends each event and state change: the app's event bus. */
export interface MachineActivitySink {
  publishMachineActivity(activity: MachineActivity): void;
}

function valueText(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/**
 * The last events the statecharts received, with their payloads, for the development inspector.
 * A bounded ring per app (no module state); filled through XState's `inspect` option, which also
 * tells the bus each event and each change of state as it happens.
 */
export class MachineEventLog {
  private readonly entries: MachineEventEntry[] = [];

  constructor(
    private readonly clock: () => number,
    private readonly sink: MachineActivitySink | null = null,
    private readonly capacity = 300,
  ) {}

  /**
   * An `inspect` callback for `createActor(machine, { inspect })`: records the root actor's events
   * and announces its changes of state. Call it after persisting the snapshot where the caller
   * persists in `inspect` itself: the stream reads the store back.
   */
  inspector(gatewayId: string, machine: string, actorId: string, isRoot: (ref: unknown) => boolean) {
    let lastValue: string | null = null;
    return (ev: InspectionEvent) => {
      // Type first: XState inspects `@xstate.actor` inside createActor, before the caller's
      // variable holding the actor (which `isRoot` compares with) is even initialised.
      if (ev.type !== '@xstate.snapshot' && ev.type !== '@xstate.event') return;
      if (!isRoot(ev.actorRef)) return;
      if (ev.type === '@xstate.snapshot') {
        const value = valueText((ev.snapshot as { value?: unknown }).value);
        if (value === lastValue) return;
        lastValue = value;
        this.sink?.publishMachineActivity({
          kind: 'state',
          at: this.clock(),
          gatewayId,
          machine,
          actor: actorId,
          value,
        });
        return;
      }
      const { type, ...payload } = ev.event as { type: string } & Record<string, unknown>;
      // XState's own init event says nothing to an operator.
      if (type.startsWith('xstate.init')) return;
      const entry = { at: this.clock(), gatewayId, machine, actor: actorId, type, payload };
      this.entries.push(entry);
      if (this.entries.length > this.capacity) this.entries.splice(0, this.entries.length - this.capacity);
      this.sink?.publishMachineActivity({ kind: 'event', ...entry });
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
