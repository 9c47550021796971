import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { deltaSuite } from './delta.js';
import { foundationSuite } from './foundation.js';
import { pipelineSuite } from './pipeline.js';
import { formatResult, writeResult } from './lib/report.js';
import type { BenchOptions, BenchSuite } from './lib/suite.js';

/**
 * `npm run bench [-- [suite…] [--duration S] [--connections N] [--runs N] [--rounds N] [--build] [--v1 IMG --v2 IMG]]`
 * Runs the named suites (all by default), prints their tables and writes bench/results/<suite>.json.
 * New suites (the update pipeline, …) register here.
 */
const SUITES: BenchSuite[] = [foundationSuite, pipelineSuite, deltaSuite];

const RESULTS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');

function usage(): string {
  return [
    'usage: npm run bench -- [suite…] [--duration S] [--connections N] [--runs N] [--rounds N] [--build] [--v1 IMG --v2 IMG]',
    'suites:',
    ...SUITES.map((s) => `  ${s.name.padEnd(12)} ${s.description}`),
  ].join('\n');
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      duration: { type: 'string', default: '5' },
      connections: { type: 'string', default: '10' },
      runs: { type: 'string', default: '5' },
      rounds: { type: 'string', default: '3' },
      build: { type: 'boolean', default: false },
      v1: { type: 'string' },
      v2: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(usage());
    return;
  }
  const unknown = positionals.filter((p) => !SUITES.some((s) => s.name === p));
  if (unknown.length) throw new Error(`unknown suite(s): ${unknown.join(', ')}\n${usage()}`);
  const selected = positionals.length ? SUITES.filter((s) => positionals.includes(s.name)) : SUITES;

  const positive = (name: string, value: string) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got ${value}`);
    return n;
  };
  if ((values.v1 === undefined) !== (values.v2 === undefined)) {
    throw new Error('--v1 and --v2 go together: the old and the new image of one update');
  }
  const opts: BenchOptions = {
    durationSeconds: positive('duration', values.duration),
    connections: Math.round(positive('connections', values.connections)),
    startupRuns: Math.round(positive('runs', values.runs)),
    rounds: Math.round(positive('rounds', values.rounds)),
    build: values.build,
    images: values.v1 && values.v2 ? { v1: path.resolve(values.v1), v2: path.resolve(values.v2) } : undefined,
    log: (message) => process.stderr.write(`[bench] ${message}\n`),
  };

  for (const suite of selected) {
    opts.log(`suite ${suite.name}: ${suite.description}`);
    const result = await suite.run(opts);
    console.log(`\n${formatResult(suite.name, result)}\n`);
    // BENCH_RESULTS_SUFFIX: a variant's run beside the default one (e.g. pipeline-restart.json).
    const suffix = process.env.BENCH_RESULTS_SUFFIX ? `-${process.env.BENCH_RESULTS_SUFFIX}` : '';
    const file = await writeResult(RESULTS_DIR, `${suite.name}${suffix}`, result);
    opts.log(`wrote ${path.relative(process.cwd(), file)}`);
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
