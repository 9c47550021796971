/**
 * What every benchmark suite looks like to `bench/run.ts`. A suite measures, prints nothing
 * itself beyond progress, and returns tables plus a JSON-able record; the runner prints the
 * tables and writes the record to `bench/results/<name>.json`.
 */

export interface BenchOptions {
  /** Seconds per load-test run (autocannon `duration`). */
  durationSeconds: number;
  /** Load-test rounds per target, alternating targets (the median round is reported). */
  rounds: number;
  /** Concurrent connections per load-test run. */
  connections: number;
  /** Repetitions of each start-up measurement (the median is reported). */
  startupRuns: number;
  /** Rebuild `dist/` before measuring the built server. */
  build: boolean;
  /** The image pair of an update (`--v1 IMG --v2 IMG`, absolute paths); the delta suite builds its fixture without it. */
  images?: { v1: string; v2: string };
  /** Progress messages (stderr). */
  log: (message: string) => void;
}

export interface Table {
  title: string;
  columns: string[];
  rows: Array<Array<string | number>>;
}

export interface SuiteResult {
  tables: Table[];
  /** Headline ratios, printed after the tables ("gantry / bare throughput" → 0.31). */
  ratios: Record<string, number>;
  /** Everything measured, written as JSON. */
  record: Record<string, unknown>;
  notes?: string[];
}

export interface BenchSuite {
  name: string;
  description: string;
  run(opts: BenchOptions): Promise<SuiteResult>;
}
