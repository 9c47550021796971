import fs from 'node:fs';
import path from 'node:path';
import { applyDynamic, type FetchRange } from './applier.js';
import { parseChunkIndex } from './chunk-index.js';
import type { ReadAt } from './chunker.js';
import { DEFAULT_PLAN_OPTIONS, localChunksByReading, planDynamic, type PlanOptions } from './planner.js';
import { buildDynamicArtifacts, type PublishDynamicOptions } from './publish.js';

/**
 * The dynamic path on an image pair without a gateway or a network: publish the new image, plan
 * from the old one (chunked by reading, as a gateway without a saved index does), apply onto a
 * scratch slot with ranges served from the pack file. What the delta benchmark and the commit
 * messages quote; the benchmark measures the real path through a gateway beside it.
 */
export interface DynamicMeasurement {
  indexBytes: number;
  packBytes: number;
  chunks: number;
  frames: number;
  /** Wire bytes of the update: the index plus the planned ranges. */
  wireBytes: number;
  requests: number;
  localBytes: number;
  publishSeconds: number;
  /** Chunking the old image (the planner's read of the active slot), MB/s. */
  chunkMBps: number;
  applySeconds: number;
  /** Target bytes written per second of apply, MB/s. */
  applyMBps: number;
  slotOk: boolean;
}

export async function measureDynamicPair(opts: {
  v1: string;
  v2: string;
  workDir: string;
  plan?: PlanOptions;
  publish?: PublishDynamicOptions;
  /** Reuse the index and pack a previous run left in `workDir` (measures the gateway side alone). */
  reuse?: boolean;
}): Promise<DynamicMeasurement> {
  const indexFile = path.join(opts.workDir, 'v2.gcix');
  const packFile = path.join(opts.workDir, 'v2.pack');
  const slotFile = path.join(opts.workDir, 'slot');
  let t = performance.now();
  const reused = opts.reuse === true && fs.existsSync(indexFile) && fs.existsSync(packFile);
  if (!reused) await buildDynamicArtifacts(opts.v2, { indexFile, packFile }, opts.publish);
  const publishSeconds = reused ? 0 : (performance.now() - t) / 1000;
  const indexBytes = await fs.promises.readFile(indexFile);
  const index = parseChunkIndex(indexBytes);

  const source = await fs.promises.open(opts.v1, 'r');
  const slot = await fs.promises.open(slotFile, 'w+');
  try {
    const readAt =
      (file: fs.promises.FileHandle): ReadAt =>
      async (into, position) =>
        (await file.read(into, 0, into.length, position)).bytesRead;
    t = performance.now();
    const local = await localChunksByReading(readAt(source), index.chunker);
    const v1Size = (await source.stat()).size;
    const chunkMBps = v1Size / 1e6 / ((performance.now() - t) / 1000);
    const plan = planDynamic(index, local, opts.plan ?? DEFAULT_PLAN_OPTIONS);
    const fetchRange: FetchRange = (range) =>
      Promise.resolve(fs.createReadStream(packFile, { start: range.start, end: range.end - 1 }));
    t = performance.now();
    const result = await applyDynamic({
      index,
      plan,
      source: readAt(source),
      target: {
        write: async (data, position) => {
          await slot.write(data, 0, data.length, position);
        },
        readAt: readAt(slot),
        sync: () => slot.sync(),
      },
      fetchRange,
    });
    await slot.sync();
    const applySeconds = (performance.now() - t) / 1000;
    return {
      indexBytes: indexBytes.length,
      packBytes: index.header.pack.size,
      chunks: index.chunks.length,
      frames: index.frames.length,
      wireBytes: indexBytes.length + result.wireBytes,
      requests: result.requests,
      localBytes: plan.localBytes,
      publishSeconds,
      chunkMBps,
      applySeconds,
      applyMBps: index.header.image.size / 1e6 / applySeconds,
      slotOk: result.sha256 === index.header.image.sha256,
    };
  } finally {
    await Promise.all([source.close(), slot.close()]);
    await fs.promises.rm(slotFile, { force: true });
  }
}
