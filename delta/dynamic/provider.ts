import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { DynamicRef } from '../../bundle/manifest.js';
import { GantryError, isGantryError } from '../../core/errors.js';
import { consumeChunks } from '../../core/lending.js';
import type { DeltaContext, DeltaPlan, DynamicDeltaProvider } from '../path.js';
import { applyDynamic } from './applier.js';
import { parseChunkIndex, type ChunkIndex } from './chunk-index.js';
import { sequentialWrite, windowedReadAt } from './io.js';
import { readJournal, writeJournal } from './journal.js';
import {
  DEFAULT_PLAN_OPTIONS,
  localChunksByReading,
  localChunksFromIndex,
  planDynamic,
  type DynamicPlan,
  type LocalChunks,
  type PlanOptions,
} from './planner.js';

/** The target image's index, kept in the job's work dir (a resume does not fetch it again). */
const INDEX_FILE = 'dynamic.gcix';
const JOURNAL_FILE = 'dynamic.journal.json';
/** The index of the image a slot holds, kept with it for the next update's plan. */
export const SAVED_INDEX_FILE = 'chunk-index.gcix';

/**
 * The dynamic path behind the pipeline's seam (delta/path.ts). `plan` fetches the signed index
 * (its length and SHA-256 are the manifest's), finds the chunks the active slot holds (its saved
 * index, else by reading it) and merges the missing frames into ranges; `apply` writes the image
 * (delta/dynamic/applier.ts) with a journal in the job's work dir. An index that does not verify
 * makes the path unusable (null: the pipeline falls back to the full bundle); nothing of it is used.
 */
export interface DynamicProviderOptions {
  plan?: PlanOptions;
}

export function createDynamicProvider(opts: DynamicProviderOptions = {}): DynamicDeltaProvider {
  return {
    plan: (ref, ctx) => planWithIndex(ref, ctx, opts.plan ?? DEFAULT_PLAN_OPTIONS),
    remember: async (ref, ctx) => {
      if (!ctx.outputStateDir) return;
      const kept = path.join(ctx.workDir, INDEX_FILE);
      // Only an index this job fetched and verified; another path's install leaves none, and the
      // next plan chunks the slot instead.
      if (!(await verifiedFile(kept, ref.index.size, ref.index.sha256))) return;
      await fs.promises.mkdir(ctx.outputStateDir, { recursive: true });
      await fs.promises.copyFile(kept, path.join(ctx.outputStateDir, SAVED_INDEX_FILE));
    },
  };
}

async function planWithIndex(
  ref: DynamicRef,
  ctx: DeltaContext,
  planOptions: PlanOptions,
): Promise<DeltaPlan | null> {
  let fetched: { bytes: Buffer; wireBytes: number };
  try {
    fetched = await fetchIndex(ref, ctx);
  } catch (err) {
    if (isGantryError(err) && err.gantryCode === 'OTA_INVALID_IMAGE') return null;
    throw err;
  }
  let index: ChunkIndex;
  try {
    index = parseChunkIndex(fetched.bytes);
  } catch (err) {
    if (isGantryError(err)) return null;
    throw err;
  }
  const { image, pack } = index.header;
  if (image.size !== ctx.payload.size || image.sha256 !== ctx.payload.sha256 || pack.size !== ref.pack.size) {
    return null;
  }
  const local = await localChunks(index, ctx);
  const plan = planDynamic(index, local, planOptions);
  const indexWire = fetched.wireBytes;
  return {
    path: 'dynamic',
    plannedBytes: indexWire + plan.fetchBytes,
    requests: (indexWire > 0 ? 1 : 0) + plan.ranges.length,
    // A network failure rejects with OTA_DOWNLOAD_FAILED: the pipeline retries (services/updates/
    // delivery.ts) and the next call resumes from the journal.
    apply: async (applyCtx) => ({ wireBytes: await applyOnce(ref, index, plan, applyCtx) }),
  };
}

/** One attempt: from the journal's chunk (0 without one) to the end; resolves with the bytes received. */
async function applyOnce(
  ref: DynamicRef,
  index: ChunkIndex,
  plan: DynamicPlan,
  ctx: DeltaContext,
): Promise<number> {
  const { image } = index.header;
  const journal = path.join(ctx.workDir, JOURNAL_FILE);
  const resumeFrom = readJournal(journal, ref.index.sha256, index);
  const start = resumeFrom === index.chunks.length ? image.size : index.chunks[resumeFrom]!.offset;
  const output = await ctx.openOutput(start);
  let outputError: Error | null = null;
  // A write failure surfaces through the next write or the end below, not as an unhandled event.
  output.on('error', (err) => (outputError ??= err));
  const source = windowedReadAt((s, e) => ctx.source.read(s, e), ctx.source.size);
  // Exactly what is asked, no read-ahead: bytes past a chunk may not be written yet, and a window
  // read before they were would serve them stale.
  const readBack = windowedReadAt((s, e) => ctx.readOutput(s, e), image.size, 0);
  let received = 0;
  try {
    const result = await applyDynamic({
      index,
      plan,
      source,
      resumeFrom,
      target: {
        write: sequentialWrite(output, start),
        readAt: readBack,
        sync: async () => {
          await output.checkpoint();
        },
      },
      fetchRange: (range, signal) => ctx.fetch.open(ref.pack, range, signal ?? ctx.signal),
      checkpoint: (cp) => {
        writeJournal(journal, ref.index.sha256, index, cp.nextChunk);
        ctx.onProgress({
          outputBytes: index.chunks[cp.nextChunk]?.offset ?? image.size,
          wireBytes: cp.wireBytes,
        });
        return Promise.resolve();
      },
      onProgress: (p) => (received = p.wireBytes),
      signal: ctx.signal,
    });
    received = result.wireBytes;
    await new Promise<void>((resolve, reject) => {
      output.once('error', reject);
      output.end(() => resolve());
    });
    if (outputError) throw outputError;
  } catch (err) {
    if (!output.destroyed) output.destroy();
    throw outputError ?? err;
  }
  await fs.promises.rm(journal, { force: true });
  return received;
}

/**
 * The index: from the work dir when a previous attempt of this job kept it and it still verifies
 * (0 wire bytes), else fetched whole and checked against the manifest's length and SHA-256 before
 * it is parsed or kept.
 */
export async function fetchIndex(
  ref: DynamicRef,
  ctx: DeltaContext,
): Promise<{ bytes: Buffer; wireBytes: number }> {
  const kept = path.join(ctx.workDir, INDEX_FILE);
  if (await verifiedFile(kept, ref.index.size, ref.index.sha256)) {
    return { bytes: await fs.promises.readFile(kept), wireBytes: 0 };
  }
  const body = await ctx.fetch.open(ref.index, null, ctx.signal);
  const bytes = Buffer.alloc(ref.index.size);
  let filled = 0;
  await consumeChunks(body, (chunk) => {
    if (filled + chunk.length > bytes.length) {
      throw new GantryError(
        'OTA_INVALID_IMAGE',
        `the chunk index is longer than the ${ref.index.size} bytes signed`,
      );
    }
    chunk.copy(bytes, filled);
    filled += chunk.length;
    return undefined;
  });
  const sha256 = createHash('sha256').update(bytes.subarray(0, filled)).digest('hex');
  if (filled !== ref.index.size || sha256 !== ref.index.sha256) {
    throw new GantryError(
      'OTA_INVALID_IMAGE',
      'the chunk index does not match the length and SHA-256 its manifest signed',
      {
        expected: ref.index.sha256,
        actual: sha256,
      },
    );
  }
  await fs.promises.mkdir(ctx.workDir, { recursive: true });
  await fs.promises.writeFile(kept, bytes);
  return { bytes, wireBytes: filled };
}

/** The active slot's chunks: its saved index when it was cut by the same chunker, else by reading it. */
async function localChunks(target: ChunkIndex, ctx: DeltaContext): Promise<LocalChunks> {
  if (ctx.source.stateDir) {
    try {
      const saved = parseChunkIndex(
        await fs.promises.readFile(path.join(ctx.source.stateDir, SAVED_INDEX_FILE)),
      );
      const { size, sha256 } = saved.header.image;
      if (
        saved.chunker === target.chunker &&
        size === ctx.source.size &&
        (ctx.source.sha256 === null || sha256 === ctx.source.sha256)
      ) {
        return localChunksFromIndex(saved);
      }
    } catch {
      // None saved, or unreadable: read the slot.
    }
  }
  return localChunksByReading(
    windowedReadAt((s, e) => ctx.source.read(s, e), ctx.source.size, 4 * 1024 * 1024),
    target.chunker,
    ctx.signal,
  );
}

async function verifiedFile(file: string, size: number, sha256: string): Promise<boolean> {
  try {
    const bytes = await fs.promises.readFile(file);
    return bytes.length === size && createHash('sha256').update(bytes).digest('hex') === sha256;
  } catch {
    return false;
  }
}
