import type { Readable, Writable } from 'node:stream';
import type { FileReadAt } from '../core/lending.js';
import type { DynamicRef, Payload } from '../bundle/manifest.js';
import type { ArtifactRef } from './artifact.js';

/**
 * The seam between the update pipeline (services/updates) and the ways an image can reach a slot
 * other than the full bundle: hop deltas (delta/hop) and dynamic chunks (delta/dynamic). The
 * pipeline fetches and verifies the signed manifest, asks each path for a plan, picks one
 * (delta/choice.ts) and hands the plan a `DeltaContext`; the path writes the image onto the
 * inactive slot and resolves only once the whole image's SHA-256 equals the payload's.
 */

/** The active slot, read-only: what a delta is applied against. */
export interface DeltaSource {
  /** Bytes of image on the slot (its record's `imageBytes`). */
  readonly size: number;
  /** The SHA-256 its record holds (verified when it was installed), or null when unknown. */
  readonly sha256: string | null;
  /** Bytes [start, end] of the slot (end inclusive). Never a writer: the active slot is only read. */
  read(start: number, end: number): Readable;
  /** Positional reads through one descriptor, for many small ranges; the caller closes it. */
  openReadAt(): Promise<FileReadAt>;
  /**
   * A directory kept with the active slot's image: what a path saved there when that image was
   * installed (the dynamic path's chunk index), or nothing. Null when Gantry keeps none.
   */
  readonly stateDir: string | null;
}

/** The inactive slot from a byte offset: a sequential writer made durable by `checkpoint()`. */
export interface DeltaOutput extends Writable {
  /** Bytes written so far, counted from the start of the slot. */
  readonly offset: number;
  /** Waits for every queued write and fsyncs; resolves with the durable byte count. */
  checkpoint(): Promise<number>;
}

/** Feed targets named by the signed manifest. Every byte received counts as wire bytes. */
export interface DeltaFetcher {
  /**
   * The target's bytes [start, end) (a single-range GET; the whole target when `range` is null). The
   * stream fails if the server sends more or fewer bytes than asked; hashing is the caller's job.
   */
  open(
    ref: ArtifactRef,
    range: { start: number; end: number } | null,
    signal: AbortSignal,
  ): Promise<Readable>;
}

/** What a path gets to apply its plan. */
export interface DeltaContext {
  /** The image to produce: `size` and `sha256` are the signed values the result must match. */
  readonly payload: Payload;
  readonly source: DeltaSource;
  readonly fetch: DeltaFetcher;
  /** The inactive slot (marked invalid already), written from `offset` (a resume) on. */
  openOutput(offset: number): Promise<DeltaOutput>;
  /** The inactive slot read back, bytes [start, end] (end inclusive): a resume re-hashes its prefix. */
  readOutput(start: number, end: number): Readable;
  /**
   * A directory private to this job that survives a restart of Gantry (journals, downloaded
   * deltas) and is removed when the job ends.
   */
  readonly workDir: string;
  /**
   * A directory kept with the image being written once it is installed (see `DeltaSource.stateDir`);
   * emptied before the path starts. Null when Gantry keeps none.
   */
  readonly outputStateDir: string | null;
  readonly signal: AbortSignal;
  /** Called as work becomes durable: image bytes on the slot, bytes received from the network. */
  onProgress(p: { outputBytes: number; wireBytes: number }): void;
}

export type DeltaPathKind = 'hop' | 'dynamic';

/** A path that can deliver the image, with what it expects to cost. */
export interface DeltaPlan {
  readonly path: DeltaPathKind;
  /** Bytes this path expects to receive from the network (its metadata included). */
  readonly plannedBytes: number;
  /** HTTP requests it expects to make. */
  readonly requests: number;
  /**
   * Writes the image onto the output, resuming from this job's journal in `workDir` if there is
   * one. Resolves only after the whole image's SHA-256 matched `payload.sha256`; rejects with a
   * GantryError (OTA_INVALID_IMAGE for bad bytes, OTA_DOWNLOAD_FAILED for network failures) or the
   * signal's reason. Resolves with the bytes received from the network by this call, and a line
   * for the job's log when the path has something to say (e.g. operations repaired).
   */
  apply(ctx: DeltaContext): Promise<{ wireBytes: number; summary?: string }>;
}

/**
 * The dynamic path as the pipeline sees it (implemented by delta/dynamic). `plan` may fetch the
 * signed chunk index (through `ctx.fetch`, so its bytes count) and read the active slot; it
 * returns null when the path cannot be used (e.g. the index does not verify: then the full bundle
 * is used).
 */
export interface DynamicDeltaProvider {
  plan(ref: DynamicRef, ctx: DeltaContext): Promise<DeltaPlan | null>;
  /**
   * After an image delivered by any path is verified on its slot: lets the path keep what it
   * needs to serve as a source later (the chunk index) in `ctx.outputStateDir`. Optional.
   */
  remember?(ref: DynamicRef, ctx: DeltaContext): Promise<void>;
}
