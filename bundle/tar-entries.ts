import type { Pack } from 'tar-stream';

/** tar-stream's entry header, as `pack.entry` takes it. */
export type TarEntryHeader = Parameters<Pack['entry']>[0];

/** Resolves once a streamed entry of a tar-stream pack is written (or closed), rejects on its error. */
export function entryDone(entry: ReturnType<Pack['entry']>): Promise<void> {
  return new Promise((resolve, reject) => {
    entry.once('finish', () => resolve());
    entry.once('error', reject);
    entry.once('close', () => resolve());
  });
}

/** Adds an entry whose content is in memory. */
export function addBuffer(pack: Pack, header: TarEntryHeader, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry(header, data, (err) => (err ? reject(err) : resolve()));
  });
}
