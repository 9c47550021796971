import { EventEmitter, on } from 'node:events';
import type { GatewayEvent } from './events.js';
import type { MachineActivity, MachineActivitySink } from './machine-events.js';

/** Not a string, so no gateway id can collide with it. */
const MACHINE_ACTIVITY = Symbol('machine activity');

/**
 * The one event bus. Services publish what happened on a gateway (after it is persisted); the
 * OTA WebSocket, tRPC subscriptions and the inspector subscribe. One instance per running app:
 * nothing here is module-level, so tests get a fresh bus with every server.
 *
 * Besides the spec's gateway events it carries the statecharts' activity (events received,
 * changes of state) for the development inspector, on a channel of its own: the OTA WebSocket
 * and `monitor.events`, which follow a gateway's channel, never see it.
 */
export class EventBus implements MachineActivitySink {
  private readonly emitter = new EventEmitter();

  constructor() {
    // Every WS client is a listener; the default cap of 10 would warn on a normal control room.
    this.emitter.setMaxListeners(0);
  }

  publish(gatewayId: string, event: GatewayEvent): void {
    this.emitter.emit(gatewayId, event);
    this.emitter.emit('*', gatewayId, event);
  }

  subscribe(gatewayId: string, listener: (event: GatewayEvent) => void): () => void {
    this.emitter.on(gatewayId, listener);
    return () => this.emitter.off(gatewayId, listener);
  }

  subscribeAll(listener: (gatewayId: string, event: GatewayEvent) => void): () => void {
    this.emitter.on('*', listener);
    return () => this.emitter.off('*', listener);
  }

  listenerCount(gatewayId: string): number {
    return this.emitter.listenerCount(gatewayId);
  }

  /**
   * Events of one gateway as an async iterable, for tRPC subscriptions. Listening starts when this
   * is called, so a caller that subscribes before its catch-up query loses nothing in between.
   */
  async *stream(gatewayId: string, signal?: AbortSignal): AsyncGenerator<GatewayEvent> {
    try {
      for await (const [event] of on(this.emitter, gatewayId, { signal })) {
        yield event as GatewayEvent;
      }
    } catch (err) {
      if ((err as Error).name !== 'AbortError') throw err;
    }
  }

  /** Open inspector streams (each is a listener until its signal aborts). */
  machineActivityListenerCount(): number {
    return this.emitter.listenerCount(MACHINE_ACTIVITY);
  }

  publishMachineActivity(activity: MachineActivity): void {
    this.emitter.emit(MACHINE_ACTIVITY, activity);
  }

  /**
   * The statecharts' activity, in batches: everything that happened while the consumer was busy
   * comes as one array (a download's PROGRESS events arrive faster than a page needs them).
   * Listening starts at this call, before the caller's catch-up query, so nothing falls between.
   */
  machineActivity(signal: AbortSignal): AsyncGenerator<MachineActivity[]> {
    let queue: MachineActivity[] = [];
    let wake: (() => void) | null = null;
    const listener = (activity: MachineActivity) => {
      queue.push(activity);
      wake?.();
    };
    const emitter = this.emitter;
    // Also when the generator is never started (its `finally` would not run then).
    const stop = () => {
      emitter.off(MACHINE_ACTIVITY, listener);
      signal.removeEventListener('abort', stop);
      wake?.();
    };
    emitter.on(MACHINE_ACTIVITY, listener);
    signal.addEventListener('abort', stop);
    return (async function* batches() {
      try {
        while (!signal.aborted) {
          if (queue.length === 0) {
            await new Promise<void>((resolve) => (wake = resolve));
            wake = null;
            continue;
          }
          const batch = queue;
          queue = [];
          yield batch;
        }
      } finally {
        stop();
      }
    })();
  }
}
