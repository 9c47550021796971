/**
 * V8's collector: present when node runs with --expose-gc (bin/gantry-server passes it). Typed with
 * the two requests that do what they say on Node 20 (see FULL_COLLECTION): a synchronous major one
 * cannot be written.
 */
type Collect = (options: { type: 'minor' } | { type: 'major'; execution: 'async' }) => unknown;

const exposedGc = (): Collect | undefined => (globalThis as { gc?: Collect }).gc;

const YOUNG_GC_EVERY_BYTES = 4 * 1024 * 1024;

/**
 * How to ask Node 20's V8 (11.3) for a full collection: `{ type: 'major' }` alone runs a scavenge
 * there, as does any synchronous request with options (`node --expose-gc --trace-gc -e
 * "gc({ type: 'major' })"` prints "Scavenge"); asked to run in a later task, it is a Mark-Compact.
 * test/unit/young-gc.test.ts checks this on the node that runs the tests.
 */
const FULL_COLLECTION = { type: 'major', execution: 'async' } as const;

/** A counter of bytes passed that calls `act` once each time they reach `step` since its last call. */
function onEveryBytes(step: number, act: () => void): (bytes: number) => void {
  let since = 0;
  return (bytes) => {
    since += bytes;
    if (since < step) return;
    since = 0;
    act();
  };
}

/**
 * Returns a counter to call with the size of each chunk of a stream whose chunks Node allocates
 * one by one (a request body: Node's HTTP server copies every piece into a new Buffer). V8 frees
 * such buffers at a young-generation collection, but schedules those by its own heap's
 * allocations, not by Buffer bytes: an upload at disk speed piles up 30-50 MiB of dead buffers
 * between two collections. Asking for one every `everyBytes` keeps them to a few MiB (measured
 * in `npm run bench -- pipeline`: 1 GiB upload peak ~150 -> ~120 MiB, CPU time unchanged; a
 * collection of the 2 MiB nursery takes well under a millisecond). Without --expose-gc, a no-op.
 */
export function youngGenerationSweeper(
  everyBytes = YOUNG_GC_EVERY_BYTES,
  collect: Collect | undefined = exposedGc(),
): (bytes: number) => void {
  if (!collect) return () => undefined;
  return onEveryBytes(everyBytes, () => collect({ type: 'minor' }));
}

/**
 * Returns a counter like {@link youngGenerationSweeper}'s that asks for a full collection (run in a
 * later task) every `everyBytes`. For a request body: a young collection frees the pieces that
 * died young, but those still in flight at two collections (queued between the parser, the
 * multipart reader, the disk and the verifier: ~2.5% of a 1 GiB upload's) are promoted, and V8
 * frees those only with a full collection. During an upload it runs one every ~0.6 s, long enough
 * for 5-6 MiB of dead pieces to pile up each time (seen with MALLOC_MMAP_THRESHOLD_=65536, which
 * makes each piece a mapping of its own: VmRSS saws up and drops at each Mark-Compact; forced
 * full collections every 8 MiB flatten it). Those piles set the upload's peak, and the holes they
 * leave in malloc's heap the deploy's after it. Measured in `npm run bench -- pipeline`, 1 GiB
 * upload then deploy, two interleaved pairs: one every 128 MiB took the upload's peak from
 * 80.9-81.4 to 78.1-78.4 MiB and the deploy's from 83.8-84.1 to 78.7-79.9, for 2.84-2.95 -> 3.29-3.36
 * CPU s (each full collection pauses ~10 ms and V8 follows it with an incremental one); every
 * 64 MiB: 77.1-77.9 and 77.1-77.6, but 3.7-3.8 CPU s. Without --expose-gc, a no-op.
 */
export function fullCollectionSweeper(
  everyBytes: number,
  collect: Collect | undefined = exposedGc(),
): (bytes: number) => void {
  if (!collect) return () => undefined;
  return onEveryBytes(everyBytes, () => collect(FULL_COLLECTION));
}

/**
 * One full collection, once start-up is over. Start-up leaves garbage that nothing soon makes V8
 * collect on an idle gateway: the bundle's source text as read from disk (~2 MB; V8 keeps its own
 * copy), the code cache's bytes, a code cache written where the build's did not fit (~1.6 MB), the compiler's
 * and the migrations' leftovers. Until 2026-12-05 this asked for `{ type: 'major' }`, which Node
 * 20's V8 ran as a scavenge (see FULL_COLLECTION); the full collection it meant took the idle RSS
 * after start + login + `/status` from 65.6-65.9 to 64.3-64.7 MiB on a first start and from
 * 65.1-65.2 to 64.3-64.6 on a restart (`bench/idle-breakdown.ts`, three interleaved runs each).
 * Without --expose-gc, a no-op.
 */
export function collectStartupGarbage(collect: Collect | undefined = exposedGc()): void {
  collect?.(FULL_COLLECTION);
}

/**
 * Called once an operation that streamed a whole image ended (a download or deploy, an upload),
 * however it ended: asks V8 for one full collection, run in a later task. What the operation held
 * is garbage by then, but it sits in the old generation (the slot writer's 4 MiB WebAssembly
 * memory, which V8 frees only with the object that owns it; promoted per-chunk objects), and with
 * the heap otherwise quiet V8 may not collect it for a long while: the next operation then
 * allocates its own on top (an upload's writer blocks were still resident while its deploy
 * filled another set). A collection of Gantry's ~25 MiB heap takes ~10-20 ms, once per operation.
 * Without --expose-gc, a no-op.
 */
export function releaseAfterOperation(collect: Collect | undefined = exposedGc()): void {
  collect?.(FULL_COLLECTION);
}
