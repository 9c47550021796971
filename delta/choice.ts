import type { DeltaRef, Payload } from '../bundle/manifest.js';
import type { DeltaPlan, DeltaPathKind } from './path.js';

export type DeliveryPath = DeltaPathKind | 'full';

/** Default share of the full compressed download the dynamic path must stay under to be chosen. */
export const DEFAULT_DYNAMIC_THRESHOLD = 0.6;

/** The hop delta whose source is exactly the active slot's image, if the manifest lists one. */
export function matchingHop(payload: Payload, activeSha256: string | null): DeltaRef | null {
  if (!activeSha256) return null;
  return payload.deltas?.find((d) => d.source_sha256 === activeSha256) ?? null;
}

export interface PathChoice {
  path: DeliveryPath;
  /** The plan to apply; null for the full bundle. */
  plan: DeltaPlan | null;
  /** Bytes the chosen path expects to receive. */
  plannedBytes: number;
  /** Why, in one line (logged). */
  reason: string;
}

/**
 * Hop if one matches the active slot; else dynamic if its planned bytes are under `threshold` of
 * the full download (deltas lose on major upgrades, and a dynamic install costs many requests);
 * else the full bundle. `planDynamic` is only called when no hop matches.
 */
export async function choosePath(opts: {
  hop: DeltaPlan | null;
  fullBytes: number;
  threshold: number;
  planDynamic: (() => Promise<DeltaPlan | null>) | null;
}): Promise<PathChoice> {
  if (opts.hop) {
    return {
      path: 'hop',
      plan: opts.hop,
      plannedBytes: opts.hop.plannedBytes,
      reason: 'a hop delta from the active slot image is published',
    };
  }
  const dynamic = opts.planDynamic ? await opts.planDynamic() : null;
  if (dynamic) {
    const limit = opts.fullBytes * opts.threshold;
    if (dynamic.plannedBytes < limit) {
      return {
        path: 'dynamic',
        plan: dynamic,
        plannedBytes: dynamic.plannedBytes,
        reason: `dynamic delta plans ${dynamic.plannedBytes} bytes, under ${Math.round(opts.threshold * 100)}% of the full ${opts.fullBytes}`,
      };
    }
    return {
      path: 'full',
      plan: null,
      plannedBytes: opts.fullBytes,
      reason: `dynamic delta plans ${dynamic.plannedBytes} bytes, not under ${Math.round(opts.threshold * 100)}% of the full ${opts.fullBytes}`,
    };
  }
  return {
    path: 'full',
    plan: null,
    plannedBytes: opts.fullBytes,
    reason: opts.planDynamic ? 'no delta matches the active slot image' : 'the bundle publishes no delta',
  };
}
