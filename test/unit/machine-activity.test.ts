import { describe, expect, it } from 'vitest';
import { createActor, setup, type Actor } from 'xstate';
import { EventBus } from '../../core/bus.js';
import { MachineEventLog, type MachineActivity } from '../../core/machine-events.js';

/** The statecharts' activity on the event bus, as the inspector's live stream reads it. */

const toggle = setup({
  types: { events: {} as { type: 'FLIP'; by: string } | { type: 'NOOP' } },
}).createMachine({
  id: 'toggle',
  initial: 'off',
  states: {
    off: { on: { FLIP: 'on', NOOP: {} } },
    on: { on: { FLIP: 'off' } },
  },
});

function startToggle(bus: EventBus) {
  const log = new MachineEventLog(() => 1_000, bus);
  const actor: Actor<typeof toggle> = createActor(toggle, {
    inspect: log.inspector('GW-1', 'toggle', 'GW-1', (ref: unknown): boolean => ref === actor),
  });
  actor.start();
  return { actor, log };
}

describe('machine activity on the bus', () => {
  it('should announce each event with its payload and each change of state, not a state kept', async () => {
    const bus = new EventBus();
    const ac = new AbortController();
    const batches = bus.machineActivity(ac.signal);
    const { actor, log } = startToggle(bus);
    actor.send({ type: 'FLIP', by: 'admin' });
    actor.send({ type: 'NOOP' });
    const { value: batch } = await batches.next();
    const kinds = (batch as MachineActivity[]).map((a) =>
      a.kind === 'event' ? `event ${a.type} ${JSON.stringify(a.payload)}` : `state ${a.value}`,
    );
    // Everything published while nobody was reading comes as one batch, in order.
    expect(kinds).toEqual(['state off', 'event FLIP {"by":"admin"}', 'state on', 'event NOOP {}']);
    expect(log.recent(['GW-1']).map((e) => e.type)).toEqual(['NOOP', 'FLIP']);
    ac.abort();
    expect((await batches.next()).done).toBe(true);
  });

  it('should stop listening when aborted, even if never read', () => {
    const bus = new EventBus();
    const ac = new AbortController();
    bus.machineActivity(ac.signal);
    expect(bus.machineActivityListenerCount()).toBe(1);
    ac.abort();
    expect(bus.machineActivityListenerCount()).toBe(0);
  });
});
