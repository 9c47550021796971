import type { ChunkIndex } from './chunk-index.js';
import { chunkSource, type ChunkerParams, type ReadAt } from './chunker.js';

/**
 * The chunks the active slot already holds, by SHA-256 (lowercase hex) → offset in the slot. Built
 * from the slot's saved index when it has one cut by the same chunker, else by chunking the slot.
 * Either way each local chunk is hashed again when it is copied: the slot may have changed since.
 */
export type LocalChunks = Map<string, number>;

/** The local chunks a saved index of the active slot describes. */
export function localChunksFromIndex(index: ChunkIndex): LocalChunks {
  const local: LocalChunks = new Map();
  for (const c of index.chunks) if (!local.has(c.sha256)) local.set(c.sha256, c.offset);
  return local;
}

/** Chunks the active slot by reading it (never writing it): CPU and one pass over the slot. */
export async function localChunksByReading(
  readAt: ReadAt,
  chunker: ChunkerParams,
  signal?: AbortSignal,
): Promise<LocalChunks> {
  const local: LocalChunks = new Map();
  for await (const c of chunkSource(readAt, chunker)) {
    signal?.throwIfAborted();
    const hex = c.sha256.toString('hex');
    if (!local.has(hex)) local.set(hex, c.offset);
  }
  return local;
}

/** Where one target chunk's bytes come from. */
export type ChunkStep =
  /** Copied from the active slot at this offset. */
  | { kind: 'local'; sourceOffset: number }
  /** Decompressed from its frame, fetched in range `range`. */
  | { kind: 'fetch'; range: number }
  /** The same bytes as an earlier target chunk that was fetched: read back from the target. */
  | { kind: 'repeat'; targetOffset: number };

/** One single-range GET of the pack: bytes [start, end), holding `frames` (ascending). */
export interface PackRange {
  start: number;
  end: number;
  frames: number[];
}

export interface DynamicPlan {
  /** One step per target chunk, in image order. */
  steps: ChunkStep[];
  ranges: PackRange[];
  /** Pack bytes the ranges cover (frames plus the gaps merged into them). */
  fetchBytes: number;
  /** Bytes of the target image copied from the active slot. */
  localBytes: number;
  /** Bytes of frames needed (without gaps): what perfect ranges would cost. */
  frameBytes: number;
}

export interface PlanOptions {
  /**
   * Two needed frames whose gap in the pack is at most this many bytes share one GET: a request
   * costs a round trip, worth `rtt × bandwidth` bytes (150 ms at 1 MB/s: 150 kB).
   */
  gapBytes: number;
  /** Upper bound on requests: the smallest remaining gaps are merged until it holds. */
  maxRequests?: number;
}

/**
 * Measured on the minor-update fixture (v1 → v2, 512 MiB, zstd -19 of v2 = 103.9 MB; index
 * 0.90 MB included): exact ranges 798 GETs / 20.2%; gaps ≤ 8 KiB merged 615 / 21.1%; capped at
 * 600 GETs 21.2%; gaps ≤ 16 KiB 458 / 22.9%; ≤ 32 KiB 308 / 26.2%. The cap leaves room for the
 * update's other requests (TUF metadata, the bundle's head, the index: 7 in the delta bench, which
 * counted 607 with a cap of 600) within the 600 for the whole update.
 */
export const DEFAULT_PLAN_OPTIONS: Readonly<PlanOptions> = Object.freeze({
  gapBytes: 8 * 1024,
  maxRequests: 590,
});

/** Which target chunks are local and which frames to fetch, merged into single-range GETs. */
export function planDynamic(
  target: ChunkIndex,
  local: LocalChunks,
  opts: PlanOptions = DEFAULT_PLAN_OPTIONS,
): DynamicPlan {
  const needed: number[] = []; // frames to fetch, ascending (frames are numbered in pack order)
  const fetchedAt = new Map<number, number>(); // frame → target offset of its first fetched chunk
  const frameSteps: { chunk: number; frame: number }[] = [];
  const steps: ChunkStep[] = new Array<ChunkStep>(target.chunks.length);
  let localBytes = 0;
  target.chunks.forEach((c, i) => {
    const sourceOffset = local.get(c.sha256);
    if (sourceOffset !== undefined) {
      steps[i] = { kind: 'local', sourceOffset };
      localBytes += c.length;
      return;
    }
    const earlier = fetchedAt.get(c.frame);
    if (earlier !== undefined) {
      steps[i] = { kind: 'repeat', targetOffset: earlier };
      return;
    }
    fetchedAt.set(c.frame, c.offset);
    needed.push(c.frame);
    frameSteps.push({ chunk: i, frame: c.frame });
  });
  // A frame is first needed by the chunk that introduced it, and frames are numbered in the order
  // chunks introduce them: `needed` is ascending, so the ranges are read in image order.
  const ranges = mergeRanges(target, needed, opts);
  const rangeOf = new Map<number, number>();
  ranges.forEach((r, k) => r.frames.forEach((f) => rangeOf.set(f, k)));
  for (const { chunk, frame } of frameSteps) steps[chunk] = { kind: 'fetch', range: rangeOf.get(frame)! };
  return {
    steps,
    ranges,
    fetchBytes: ranges.reduce((sum, r) => sum + r.end - r.start, 0),
    localBytes,
    frameBytes: needed.reduce((sum, f) => sum + target.frames[f]!.length, 0),
  };
}

/** Needed frames (ascending) into single-range GETs: gaps up to `gapBytes` merged, at most `maxRequests`. */
export function mergeRanges(target: ChunkIndex, needed: number[], opts: PlanOptions): PackRange[] {
  if (needed.length === 0) return [];
  // gapAfter[k]: pack bytes between needed frame k and k+1; join[k]: they share a GET.
  const gapAfter: number[] = [];
  for (let k = 0; k + 1 < needed.length; k++) {
    const a = target.frames[needed[k]!]!;
    gapAfter.push(target.frames[needed[k + 1]!]!.offset - (a.offset + a.length));
  }
  const join = gapAfter.map((gap) => gap <= opts.gapBytes);
  let requests = 1 + join.filter((j) => !j).length;
  if (opts.maxRequests !== undefined && requests > opts.maxRequests) {
    const open = gapAfter
      .map((gap, k) => ({ gap, k }))
      .filter(({ k }) => !join[k])
      .sort((x, y) => x.gap - y.gap || x.k - y.k);
    for (const { k } of open) {
      if (requests <= Math.max(1, opts.maxRequests)) break;
      join[k] = true;
      requests--;
    }
  }
  const ranges: PackRange[] = [];
  let current: PackRange | null = null;
  needed.forEach((f, k) => {
    const frame = target.frames[f]!;
    if (current === null) current = { start: frame.offset, end: 0, frames: [] };
    current.frames.push(f);
    current.end = frame.offset + frame.length;
    if (!join[k]) {
      ranges.push(current);
      current = null;
    }
  });
  return ranges;
}
