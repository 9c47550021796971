import fs from 'node:fs';
import { z } from 'zod';
import { writeFileAtomicSync } from '../../core/fsutil.js';
import { Sha256Schema } from '../artifact.js';
import type { ChunkIndex } from './chunk-index.js';

/**
 * What survives a kill of a dynamic install: the target holds the index's chunks before
 * `next_chunk` (`out` bytes), synced before the journal was written. The running image hash is
 * not kept (Node cannot serialise a hash state): a resume reads the prefix back and hashes it,
 * never trusting bytes it did not read. Same shape as the hop path's journal.
 */
export const JOURNAL_FORMAT = 'gantry-dynamic-journal-v1';

const JournalSchema = z.lazy(() =>
  z.strictObject({
    format: z.literal(JOURNAL_FORMAT),
    index_sha256: Sha256Schema,
    next_chunk: z.int().nonnegative(),
    out: z.int().nonnegative(),
  }),
);
export type DynamicJournal = z.infer<typeof JournalSchema>;

/**
 * The chunk to resume from: the journal's, when it was written for this index and names a chunk
 * boundary of it; else 0 (no journal, another update's, or one a crash left unreadable).
 */
export function readJournal(file: string, indexSha256: string, index: ChunkIndex): number {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return 0;
  }
  const parsed = JournalSchema.safeParse(raw);
  if (!parsed.success || parsed.data.index_sha256 !== indexSha256) return 0;
  const { next_chunk: next, out } = parsed.data;
  if (next > index.chunks.length) return 0;
  const boundary = next === index.chunks.length ? index.header.image.size : index.chunks[next]!.offset;
  return boundary === out ? next : 0;
}

/** Written only after the target was synced: the journal never names bytes the disk may not have. */
export function writeJournal(file: string, indexSha256: string, index: ChunkIndex, nextChunk: number): void {
  const out = nextChunk === index.chunks.length ? index.header.image.size : index.chunks[nextChunk]!.offset;
  const journal: DynamicJournal = {
    format: JOURNAL_FORMAT,
    index_sha256: indexSha256,
    next_chunk: nextChunk,
    out,
  };
  writeFileAtomicSync(file, JSON.stringify(journal));
}
