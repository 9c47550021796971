import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { requestJson } from '../../bench/lib/gantry-child.js';
import { spawnReady, stopChild } from '../../bench/lib/process.js';
import { makeTempDir, tsxChildEnv } from '../helpers/temp.js';

/** The bench's counting static server (bench/lib/static-server.ts): what bench/delta.ts charges each update. */

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const SERVER = path.join(ROOT, 'bench', 'lib', 'static-server.ts');

const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

async function start(dir: string) {
  const server = await spawnReady<{ url: string; control: string }>(
    process.execPath,
    ['--import', 'tsx', SERVER, dir],
    { cwd: ROOT, env: tsxChildEnv() },
  );
  stops.push(() => stopChild(server.child));
  return server.ready;
}

function get(url: string, range?: string): Promise<{ status: number; body: Buffer }> {
  return fetch(url, { headers: range ? { range } : {} }).then(async (res) => ({
    status: res.status,
    body: Buffer.from(await res.arrayBuffer()),
  }));
}

describe('counting static server (bench)', () => {
  it('should count requests, ranges, 404s and bytes since the last reset, not its own control requests', async () => {
    const dir = makeTempDir();
    const data = Buffer.alloc(10_000, 7);
    fs.writeFileSync(path.join(dir, 'a.bin'), data);
    const { url, control } = await start(dir);

    expect((await get(`${url}/a.bin`)).body.equals(data)).toBe(true);
    const ranged = await get(`${url}/a.bin`, 'bytes=100-199');
    expect(ranged.status).toBe(206);
    expect(ranged.body.equals(data.subarray(100, 200))).toBe(true);
    // A last byte past the end is clamped, as nginx does.
    const tail = await get(`${url}/a.bin`, 'bytes=9990-20000');
    expect(tail.status).toBe(206);
    expect(tail.body.length).toBe(10);
    expect((await get(`${url}/missing`)).status).toBe(404);

    const stats = (await requestJson('GET', `${control}/stats`)).body;
    expect(stats).toMatchObject({ requests: 4, ranged: 2, notFound: 1, bodyBytes: 10_000 + 100 + 10 });
    // Heads and the 404's body are on the wire too.
    expect(stats.bytesOut).toBeGreaterThan(stats.bodyBytes);
    expect(stats.bytesIn).toBeGreaterThan(0);
    // Asking again counts nothing new: the control port is not the served one.
    expect((await requestJson('GET', `${control}/stats`)).body).toEqual(stats);

    const reset = (await requestJson('GET', `${control}/reset`)).body;
    expect(reset).toMatchObject({ requests: 0, bodyBytes: 0, bytesOut: 0, bytesIn: 0 });
    await get(`${url}/a.bin`, 'bytes=0-9');
    expect((await requestJson('GET', `${control}/stats`)).body).toMatchObject({ requests: 1, bodyBytes: 10 });
  });
});
