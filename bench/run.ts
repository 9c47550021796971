import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { foundationSuite } from './foundation.js';
import { pipelineSuite } from './pipeline.js';
import { formatResult, writeResult } from './lib/report.js';
import type { BenchOptions, BenchSuite } from './lib/suite.js';

/**
 * `npm run bench [-- [suite…] [--duration S] [--connections N] [--runs N] [--rounds N] [--build]]`
 * Runs the named suites (all by default), prints their tables and writes bench/results/<suite>.json.
 * New suites (the update pipeline, …) register here.
 */
const SUITES: BenchSuite[] = [foundationSuite, pipelineSuite];

const RESULTS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');

function usage(): string {
  return [
    'usage: npm run bench -- [suite…] [--duration S] [--connections N] [--runs N] [--rounds N] [--build]',
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
  const opts: BenchOptions = {
    durationSeconds: positive('duration', values.duration),
    connections: Math.round(positive('connections', values.connections)),
    startupRuns: Math.round(positive('runs', values.runs)),
    rounds: Math.round(positive('rounds', values.rounds)),
    build: values.build,
    log: (message) => process.stderr.write(`[bench] ${message}\n`),
  };

  for (const suite of selected) {
    opts.log(`suite ${suite.name}: ${suite.description}`);
    const result = await suite.run(opts);
    console.log(`\n${formatResult(suite.name, result)}\n`);
    const file = await writeResult(RESULTS_DIR, suite.name, result);
    opts.log(`wrote ${path.relative(process.cwd(), file)}`);
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
