import { TRPCClientError } from '@trpc/client';
import { expect } from 'vitest';
import type { AppRouter } from '../../api/routers/_app.js';
import type { GantryEvent } from '../../api/schemas/events.js';

export type ClientError = TRPCClientError<AppRouter>;

export async function trpcError(promise: Promise<unknown>): Promise<ClientError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(TRPCClientError);
    return err as ClientError;
  }
  throw new Error('expected the call to fail');
}

/** Collects a subscription's events and lets a test wait for one (by event, not by time). */
export function collector() {
  const events: GantryEvent[] = [];
  let wake: (() => void) | undefined;
  return {
    events,
    push(e: GantryEvent) {
      events.push(e);
      wake?.();
    },
    async waitFor(match: (e: GantryEvent) => boolean, timeoutMs = 10_000): Promise<GantryEvent> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = events.find(match);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no matching event in ${JSON.stringify(events)}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    },
  };
}
