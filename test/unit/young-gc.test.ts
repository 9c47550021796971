import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { fullCollectionSweeper, releaseAfterOperation, youngGenerationSweeper } from '../../core/young-gc.js';
import { makeTempDir, tsxChildEnv } from '../helpers/temp.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

describe('youngGenerationSweeper', () => {
  it('should ask for a minor collection each time the bytes passed reach the step, and never a major one', () => {
    const calls: string[] = [];
    const sweep = youngGenerationSweeper(100, ({ type }) => calls.push(type));
    for (const n of [60, 30, 9]) sweep(n); // 99: not yet
    expect(calls).toEqual([]);
    sweep(1); // 100
    expect(calls).toEqual(['minor']);
    sweep(250); // one request however far past the step
    sweep(99);
    expect(calls).toEqual(['minor', 'minor']);
    sweep(1);
    expect(calls).toEqual(['minor', 'minor', 'minor']);
  });

  it('should do nothing when the collector is not exposed', () => {
    const sweep = youngGenerationSweeper(1, undefined);
    expect(() => sweep(10)).not.toThrow();
  });
});

describe('fullCollectionSweeper', () => {
  it('should ask for one full collection, in a later task, each time the bytes passed reach the step', () => {
    const calls: unknown[] = [];
    const sweep = fullCollectionSweeper(100, (options) => calls.push(options));
    sweep(99);
    expect(calls).toEqual([]);
    sweep(1);
    expect(calls).toEqual([{ type: 'major', execution: 'async' }]);
    sweep(500); // one request however far past the step
    expect(calls).toHaveLength(2);
    expect(() => fullCollectionSweeper(1, undefined)(10)).not.toThrow();
  });
});

describe('releaseAfterOperation', () => {
  it('should ask for one full collection, run in a later task so the caller is not held up', () => {
    const calls: unknown[] = [];
    releaseAfterOperation((options) => calls.push(options));
    expect(calls).toEqual([{ type: 'major', execution: 'async' }]);
    expect(() => releaseAfterOperation(undefined)).not.toThrow();
  });

  // A process of its own: the collector is only there with --expose-gc, as bin/gantry-server runs.
  const dir = makeTempDir('gantry-release-');
  it('should free a finished slot writer blocks once asked, though the writer object is still referenced', async () => {
    // The blocks are one WebAssembly memory, which reserves gigabytes of address space on 64-bit
    // V8: its mapping is there while the memory lives, and goes when V8 frees it.
    const script = `
      import fs from 'node:fs';
      import { finished } from 'node:stream/promises';
      import { SlotWriter } from './device/slot-writer.ts';
      import { releaseAfterOperation } from './core/young-gc.ts';
      const reservations = () =>
        fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').filter((line) => {
          const [from, to] = line.split(' ')[0].split('-').map((h) => parseInt(h, 16));
          return to - from >= 2 ** 30;
        }).length;
      const before = reservations();
      const writer = new SlotWriter(process.argv[1], 0, true);
      // One 64 KiB chunk, written again and again: the writer copies it into its blocks.
      const chunk = Buffer.alloc(64 * 1024, 7);
      for (let i = 0; i < 96; i++) writer.write(chunk);
      writer.end();
      await finished(writer);
      const whileHeld = reservations();
      releaseAfterOperation();
      // The collection runs in a later task and V8 frees array buffers after it: a bounded wait,
      // so a writer that keeps its blocks fails the assertion instead of hanging.
      let after = whileHeld;
      for (let i = 0; i < 100 && after > before; i++) {
        await new Promise((r) => setTimeout(r, 20));
        after = reservations();
      }
      console.log(JSON.stringify({ before, whileHeld, after, writerHeld: writer.destroyed }));
    `;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', script, path.join(dir, 'slot.img')],
      { cwd: REPO_ROOT, env: tsxChildEnv() },
    );
    const out = JSON.parse(stdout.trim()) as {
      before: number;
      whileHeld: number;
      after: number;
      writerHeld: boolean;
    };
    expect(out.whileHeld).toBeGreaterThan(out.before); // the writer had its blocks
    expect(out.after).toBe(out.before); // and they are gone, the writer object still referenced
    expect(out.writerHeld).toBe(true);
  });
});

describe('the collections asked of V8', () => {
  /**
   * Runs `call` (an expression over the module's exports) in a node of its own with --expose-gc,
   * as bin/gantry-server runs, and returns the kinds of the collections V8 ran after it
   * (perf_hooks' gc entries: NODE_PERFORMANCE_GC_MAJOR or _MINOR).
   */
  async function collectionsAfter(call: string): Promise<{ major: number; minor: number }> {
    const script = `
      import { PerformanceObserver, constants } from 'node:perf_hooks';
      import * as gcs from './core/young-gc.ts';
      const seen = [];
      const observer = new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) seen.push(entry.detail.kind);
      });
      // Start-up's own collections are over before the call.
      await new Promise((r) => setTimeout(r, 100));
      observer.observe({ entryTypes: ['gc'] });
      ${call};
      await new Promise((r) => setTimeout(r, 200));
      observer.disconnect();
      const count = (kind) => seen.filter((k) => k === kind).length;
      console.log(JSON.stringify({
        major: count(constants.NODE_PERFORMANCE_GC_MAJOR),
        minor: count(constants.NODE_PERFORMANCE_GC_MINOR),
      }));
    `;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', script],
      { cwd: REPO_ROOT, env: tsxChildEnv() },
    );
    return JSON.parse(stdout.trim()) as { major: number; minor: number };
  }

  // Node 20's V8 runs `gc({ type: 'major' })` as a scavenge: what Gantry asks must be a full one.
  it('should run a full collection for the start-up, after an operation and for promoted pieces', async () => {
    expect((await collectionsAfter('gcs.collectStartupGarbage()')).major).toBeGreaterThanOrEqual(1);
    expect((await collectionsAfter('gcs.releaseAfterOperation()')).major).toBeGreaterThanOrEqual(1);
    expect((await collectionsAfter('gcs.fullCollectionSweeper(1)(1)')).major).toBeGreaterThanOrEqual(1);
  });

  it('should run a young-generation collection, not a full one, for the sweeper', async () => {
    const ran = await collectionsAfter('gcs.youngGenerationSweeper(1)(1)');
    expect(ran.minor).toBeGreaterThanOrEqual(1);
    expect(ran.major).toBe(0);
  });
});
