import { z } from 'zod';
import { PAYLOAD_KINDS, SEVERITIES, UPDATE_TYPES, VersionSchema } from '../bundle/manifest.js';

/**
 * The `custom` metadata each feed target carries, copied from its bundle's manifest at
 * `addTarget` time so a device can list, filter and show releases from the signed targets.json
 * without downloading a single bundle. Loose: a newer repository tool may add fields.
 */
export const TargetCustomSchema = z.lazy(() =>
  z.looseObject({
    version: VersionSchema,
    type: z.enum(UPDATE_TYPES),
    severity: z.enum(SEVERITIES),
    /** Bytes to download (the bundle file). */
    size: z.int().nonnegative(),
    released: z.string(),
    description: z.string(),
    changelog: z.array(z.string()),
    compatible: z.array(z.string()),
    kernel: z.string(),
    /** Bytes the payloads occupy once installed. */
    installed_size: z.int().nonnegative().optional(),
    payloads: z
      .array(z.looseObject({ name: z.string(), kind: z.enum(PAYLOAD_KINDS), size: z.int().nonnegative() }))
      .optional(),
  }),
);

export type TargetCustom = z.infer<typeof TargetCustomSchema>;

export interface FeedTarget {
  /** Target path relative to the target base URL (the bundle's file name). */
  path: string;
  length: number;
  hashes: Record<string, string>;
  sha256: string;
  /** The release metadata, or null when the target's `custom` is missing or not Gantry's. */
  custom: TargetCustom | null;
}

export const TOP_LEVEL_ROLES = ['root', 'targets', 'snapshot', 'timestamp'] as const;
export type RoleName = (typeof TOP_LEVEL_ROLES)[number];
