import { z } from 'zod';

/** SHA-256 as manifests and feeds write it. */
export const Sha256Schema = z.lazy(() =>
  z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits'),
);

/**
 * One feed target a bundle's signed manifest points at (a hop delta, a chunk index, a chunk pack):
 * its target name in the feed and the length and SHA-256 its bytes must have. The manifest's
 * signature covers these, so a target fetched by this reference is checked against signed values
 * before any of its bytes are used.
 */
export const ArtifactRefSchema = z.lazy(() =>
  z.strictObject({
    target: z
      .string()
      .regex(
        /^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$/,
        'must be a plain feed target name (letters, digits, . _ -)',
      ),
    size: z.int().nonnegative().max(Number.MAX_SAFE_INTEGER),
    sha256: Sha256Schema,
  }),
);

export type ArtifactRef = z.infer<typeof ArtifactRefSchema>;
