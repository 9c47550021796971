import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import prettier from 'prettier';
import type { SuiteResult, Table } from './suite.js';

export function formatTable(table: Table): string {
  const cells = [table.columns, ...table.rows.map((r) => r.map(String))];
  const widths = table.columns.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? '').length)));
  const line = (row: string[]) =>
    row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  return [
    table.title,
    `  ${line(table.columns)}`,
    `  ${widths.map((w) => '-'.repeat(w)).join('  ')}`,
    ...table.rows.map((row) => `  ${line(row.map(String))}`),
  ].join('\n');
}

export function formatResult(name: string, result: SuiteResult): string {
  const parts = [`== ${name} ==`, ...result.tables.map(formatTable)];
  const ratios = Object.entries(result.ratios);
  if (ratios.length) {
    const width = Math.max(...ratios.map(([k]) => k.length));
    parts.push(['ratios', ...ratios.map(([k, v]) => `  ${k.padEnd(width)}  ${v.toFixed(2)}`)].join('\n'));
  }
  if (result.notes?.length) parts.push(['notes', ...result.notes.map((n) => `  - ${n}`)].join('\n'));
  return parts.join('\n\n');
}

/** Where and on what the numbers were taken: results only compare within one machine and run. */
export function machineInfo() {
  const cpus = os.cpus();
  return {
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    arch: os.arch(),
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    totalMemoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
  };
}

/** Writes `<dir>/<name>.json`, formatted as `prettier --check .` (npm run lint) expects. */
export async function writeResult(dir: string, name: string, result: SuiteResult): Promise<string> {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.json`);
  const doc = {
    suite: name,
    generatedAt: new Date().toISOString(),
    machine: machineInfo(),
    ratios: result.ratios,
    ...result.record,
    notes: result.notes ?? [],
  };
  const options = (await prettier.resolveConfig(file)) ?? {};
  fs.writeFileSync(file, await prettier.format(JSON.stringify(doc), { ...options, parser: 'json' }));
  return file;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function round(value: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
