import { formatBytes } from '../../core/format.js';
import type { FeedServer, UpdateListing } from '../../services/updates/catalog.js';
import type { z } from 'zod';
import type { AvailableUpdate, updatesOutputSchema } from '../schemas/updates.js';

/** One listed update as documented: its size as "452 MB" (with a space, unlike the partition cards). */
export function presentUpdate(u: UpdateListing): AvailableUpdate {
  return {
    id: u.id,
    version: u.version,
    type: u.type,
    severity: u.severity,
    size: formatBytes(u.sizeBytes),
    released: u.released,
    description: u.description,
    changelog: u.changelog,
    signature: u.signature,
    compatible: u.compatible,
  };
}

export function presentUpdateList(list: {
  updates: UpdateListing[];
  feed: FeedServer | null;
}): z.infer<typeof updatesOutputSchema> {
  return {
    updates: list.updates.map(presentUpdate),
    total_available: list.updates.length,
    server: list.feed?.label ?? null,
    demo_feed: list.feed?.demo ?? false,
  };
}
