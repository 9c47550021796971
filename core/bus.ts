import { EventEmitter, on } from 'node:events';
import type { GantryEvent } from '../api/schemas/events.js';

/**
 * The one event bus. Services publish what happened on a gateway (after it is persisted); the
 * OTA WebSocket, tRPC subscriptions and the inspector subscribe. One instance per running app:
 * nothing here is module-level, so tests get a fresh bus with every server.
 */
export class EventBus {
  private readonly emitter = new EventEmitter();

  constructor() {
    // Every WS client is a listener; the default cap of 10 would warn on a normal control room.
    this.emitter.setMaxListeners(0);
  }

  publish(gatewayId: string, event: GantryEvent): void {
    this.emitter.emit(gatewayId, event);
    this.emitter.emit('*', gatewayId, event);
  }

  subscribe(gatewayId: string, listener: (event: GantryEvent) => void): () => void {
    this.emitter.on(gatewayId, listener);
    return () => this.emitter.off(gatewayId, listener);
  }

  subscribeAll(listener: (gatewayId: string, event: GantryEvent) => void): () => void {
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
  async *stream(gatewayId: string, signal?: AbortSignal): AsyncGenerator<GantryEvent> {
    try {
      for await (const [event] of on(this.emitter, gatewayId, { signal })) {
        yield event as GantryEvent;
      }
    } catch (err) {
      if ((err as Error).name !== 'AbortError') throw err;
    }
  }
}
