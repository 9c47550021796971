/**
 * Where the idle server's resident memory goes (issue 16): starts the shipped server
 * (bin/gantry-server, no demo feed) as the foundation bench does, on a first start or, with
 * --restart, on a data dir a first start left; logs in, asks GET /status, waits a second, then
 * reports:
 * - VmRSS by mapping (/proc/<pid>/smaps): the node binary's file-backed pages, other files, malloc's
 *   heap, anonymous memory (V8's heap pages among it);
 * - V8's heap spaces and a heap snapshot's objects by kind, with the closures most often created at
 *   one place of the bundle (and that place's source), which is how the getters of esbuild's
 *   `__toESM` and zod's per-schema closures were found.
 *
 *   npx tsx bench/idle-breakdown.ts [--restart] [--keep-snapshot FILE] [--node-flags="FLAGS"]
 *
 * --node-flags=FLAGS (with the =, since the flags start with a dash): node or V8 flags added to the launcher's, to measure a setting before changing it.
 *
 * A measuring tool: the server runs with one more `--require` (a hook that writes the heap
 * statistics and the snapshot when asked), the launcher's flags otherwise.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { launcherFlags } from '../scripts/build-server.js';
import { gantryCommand, requestJson, ROOT, rssByMapping, startGantryChild } from './lib/gantry-child.js';

const { values } = parseArgs({
  options: {
    restart: { type: 'boolean', default: false },
    'keep-snapshot': { type: 'string' },
    'node-flags': { type: 'string', default: '' },
  },
});

const MiB = 1024 * 1024;
const fmt = (bytes: number) => (bytes / MiB).toFixed(1).padStart(6);

// node:v8 is required only when asked: required at start-up, it alone left the first start's
// malloc heap 2.6 MiB larger (4.7 -> 7.3 MiB), which this tool would then have reported as Gantry's.
const HOOK = `
process.on('SIGUSR2', () => {
  const v8 = require('node:v8');
  const fs = require('node:fs');
  const out = process.env.IDLE_BREAKDOWN_OUT;
  fs.writeFileSync(out + '.json', JSON.stringify({ spaces: v8.getHeapSpaceStatistics(), heap: v8.getHeapStatistics() }));
  v8.writeHeapSnapshot(out + '.heapsnapshot');
  fs.writeFileSync(out + '.done', '');
});
`;

interface Snapshot {
  snapshot: { meta: Record<string, unknown> };
  nodes: number[];
  strings: string[];
  locations?: number[];
}

/** Self sizes by node kind, and the closures created most often at one place of a script. */
function analyse(file: string, bundle: string[]) {
  const snap = JSON.parse(fs.readFileSync(file, 'utf8')) as Snapshot;
  const meta = snap.snapshot.meta as {
    node_fields: string[];
    node_types: string[][];
    location_fields: string[];
  };
  const width = meta.node_fields.length;
  const [ti, ni, si] = ['type', 'name', 'self_size'].map((f) => meta.node_fields.indexOf(f)) as [
    number,
    number,
    number,
  ];
  const types = meta.node_types[0]!;
  const bySort = new Map<string, { bytes: number; count: number }>();
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + ti]!]!;
    const name = snap.strings[snap.nodes[i + ni]!]!;
    const key = ['string', 'concatenated string', 'sliced string', 'code', 'hidden', 'number'].includes(type)
      ? type
      : `${type}: ${name.slice(0, 50)}`;
    const e = bySort.get(key) ?? { bytes: 0, count: 0 };
    e.bytes += snap.nodes[i + si]!;
    e.count++;
    bySort.set(key, e);
  }
  const closures = new Map<string, number>();
  const lf = meta.location_fields;
  const locs = snap.locations ?? [];
  const [oi, li, ci] = ['object_index', 'line', 'column'].map((f) => lf.indexOf(f)) as [
    number,
    number,
    number,
  ];
  for (let k = 0; k < locs.length; k += lf.length) {
    if (types[snap.nodes[locs[k + oi]! + ti]!] !== 'closure') continue;
    const key = `${locs[k + li]}:${locs[k + ci]}`;
    closures.set(key, (closures.get(key) ?? 0) + 1);
  }
  const places = [...closures.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 12)
    .map(([at, count]) => {
      const [line, column] = at.split(':').map(Number) as [number, number];
      const text = bundle[line] ?? '';
      return { count, at, source: text.slice(Math.max(0, column - 60), column + 60) };
    });
  return { bySort: [...bySort.entries()].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, 25), places };
}

async function main() {
  const cmd = gantryCommand({ build: false, log: (m) => console.error(m) });
  if (cmd.mode !== 'dist') throw new Error('no built server: run npm run build first');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'gantry-idle-breakdown-'));
  try {
    const hook = path.join(work, 'hook.cjs');
    fs.writeFileSync(hook, HOOK);
    const out = path.join(work, 'out');
    const dataDir = path.join(work, 'data');
    fs.mkdirSync(dataDir);
    const env = {
      GANTRY_DEMO_FEED: 'off',
      GANTRY_NODE_FLAGS: `${launcherFlags()} ${values['node-flags']} --require ${hook}`,
      IDLE_BREAKDOWN_OUT: out,
    };
    const g = await startGantryChild(cmd, { dataDir, env, restart: values.restart });
    try {
      const status = await requestJson('GET', `${g.url}/api/v1/ota/status`, { headers: g.headers });
      if (status.status !== 200) throw new Error(`GET /status answered ${status.status}`);
      await new Promise((r) => setTimeout(r, 1000));
      const byMapping = rssByMapping(g.pid);
      if (!byMapping) throw new Error('the server is gone');
      process.kill(g.pid, 'SIGUSR2');
      for (let i = 0; i < 600 && !fs.existsSync(`${out}.done`); i++)
        await new Promise((r) => setTimeout(r, 50));
      if (!fs.existsSync(`${out}.done`)) throw new Error('the server wrote no heap snapshot');

      console.log(`${values.restart ? 'Restart' : 'First start'} + login + GET /status, 1 s later`);
      console.log('\nVmRSS by mapping (MiB)');
      let total = 0;
      for (const [kind, bytes] of Object.entries(byMapping).sort((a, b) => b[1] - a[1])) {
        total += bytes;
        console.log(`${fmt(bytes)}  ${kind}`);
      }
      console.log(`${fmt(total)}  in all`);

      const stats = JSON.parse(fs.readFileSync(`${out}.json`, 'utf8')) as {
        spaces: Array<{ space_name: string; space_used_size: number; physical_space_size: number }>;
      };
      console.log('\nV8 heap spaces (MiB used / resident)');
      for (const s of stats.spaces.filter((x) => x.physical_space_size > 0))
        console.log(`${fmt(s.space_used_size)} / ${fmt(s.physical_space_size)}  ${s.space_name}`);

      const bundle = fs
        .readFileSync(path.join(ROOT, 'dist', 'server-bundle', 'server.cjs'), 'utf8')
        .split('\n');
      const { bySort, places } = analyse(`${out}.heapsnapshot`, bundle);
      console.log('\nHeap snapshot: self size by kind (MiB, count)');
      for (const [key, e] of bySort) console.log(`${fmt(e.bytes)}  ${String(e.count).padStart(7)}  ${key}`);
      console.log(
        '\nClosures created most often at one place (count, 0-based line:column of server.cjs, source there)',
      );
      for (const p of places) console.log(`${String(p.count).padStart(6)}  ${p.at.padEnd(12)} ${p.source}`);
      if (values['keep-snapshot']) fs.copyFileSync(`${out}.heapsnapshot`, values['keep-snapshot']);
    } finally {
      await g.stop();
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
