import { z } from 'zod';

/**
 * A bundle's frame: every byte of the file that is not payload data (tar headers, the manifest, its
 * signature, padding, the end-of-archive blocks), in file order. Its head is the frame's prefix up
 * to the first payload's data: the manifest and signature with their headers and the payload's.
 *
 * Why a gateway that checks the frame and the payloads need not hash the whole file again: the
 * feed's targets role signs the frame's SHA-256 and the head's (the target's `custom.frame`), the
 * head holds the manifest, and the manifest holds each payload's SHA-256. The tar headers in the
 * frame place every payload byte in the file, so the frame and the payloads' bytes determine the
 * file exactly. Two different files passing both checks would need two different frames with one
 * SHA-256, or two different payloads with one SHA-256: a SHA-256 collision either way, the same
 * assumption the whole-file hash rests on. So the guarantee TUF gives (this file is exactly the one
 * the targets role signed) holds, with each byte hashed once instead of twice.
 */
export interface BundleFrame {
  /** Bytes of the file up to the first payload's data (the whole file if it has no payload). */
  headLength: number;
  headSha256: string;
  /** SHA-256 of all the frame's bytes, in file order. */
  sha256: string;
}

const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);

/** How the frame travels in a feed target's `custom` (signed by the targets role). */
export const TargetFrameSchema = z.lazy(() =>
  z.object({
    /** The bundle's length: must be the target's own, or the frame is not used. */
    length: z.int().nonnegative(),
    head_length: z.int().nonnegative(),
    head_sha256: Sha256Hex,
    frame_sha256: Sha256Hex,
  }),
);

export type TargetFrame = z.infer<typeof TargetFrameSchema>;

export function targetFrame(frame: BundleFrame, length: number): TargetFrame {
  return {
    length,
    head_length: frame.headLength,
    head_sha256: frame.headSha256,
    frame_sha256: frame.sha256,
  };
}

/**
 * The frame a feed target signed, when its `custom.frame` is well formed and names the target's
 * own length; null otherwise (an older feed): the caller then hashes the whole file.
 */
export function signedFrame(custom: Record<string, unknown>, targetLength: number): BundleFrame | null {
  const parsed = TargetFrameSchema.safeParse(custom.frame);
  if (!parsed.success || parsed.data.length !== targetLength) return null;
  if (parsed.data.head_length > targetLength) return null;
  return {
    headLength: parsed.data.head_length,
    headSha256: parsed.data.head_sha256,
    sha256: parsed.data.frame_sha256,
  };
}
