import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildHopDelta } from '../../delta/hop/build.js';
import { GATEWAY } from '../helpers/gantry.js';
import { stallingFeed } from '../helpers/feed.js';
import { useRestartableGantry } from '../helpers/restartable.js';
import { waitFor } from '../helpers/wait.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * kill -9 in the middle of a hop delta install: Gantry as a child process, killed while the feed
 * holds the delta back, started again on the same data dir. The delta goes on from what the work
 * directory kept (one ranged GET for the rest), the image is verified whole, the active slot is
 * never written.
 */
describe('hop delta: the server killed with SIGKILL mid-delta', () => {
  const rig = useRestartableGantry();
  const spawn = () => rig.spawn();
  const slotFile = (slot: 'A' | 'B') =>
    path.join(rig.dataDir, 'gateways', GATEWAY, 'device', `slot-${slot}.img`);

  it('should resume the delta with one ranged GET after the restart and end downloaded with the exact image', async () => {
    const first = await spawn();
    const token = await first.login();
    const slotA = fs.readFileSync(slotFile('A'));
    // The next release: the factory image with changes and some new data (incompressible, so the
    // delta is large enough to be held back mid-way).
    const v2 = Buffer.concat([slotA, createHash('sha512').update('x').digest(), Buffer.alloc(0)]);
    const extra = Buffer.alloc(256 * 1024);
    for (let i = 0; i < extra.length; i += 32) createHash('sha256').update(`n${i}`).digest().copy(extra, i);
    const image = Buffer.concat([v2, extra]);
    const src = path.join(rig.feed.workDir, 'a.img');
    const tgt = path.join(rig.feed.workDir, 'b.img');
    fs.writeFileSync(src, slotA);
    fs.writeFileSync(tgt, image);
    const built = await buildHopDelta({
      source: src,
      target: tgt,
      out: path.join(rig.feed.workDir, 'crash.hop'),
    });
    await rig.feed.publish({ version: 'v5.0.5' }, image, {
      build: {
        format: 'gantry-bundle-v2',
        deltas: {
          'rootfs.img': [
            {
              source_sha256: sha256(slotA),
              source_version: 'v5.0.4',
              artifact: { target: 'crash.hop', size: built.size, sha256: built.sha256 },
            },
          ],
        },
      },
    });
    const delta = fs.readFileSync(path.join(rig.feed.dir, 'targets', 'crash.hop'));
    const slow = stallingFeed(delta, {
      burst: 32 * 1024,
      chunk: 1024,
      tickMs: 20,
      capBytes: Math.floor(delta.length * 0.6),
    });
    rig.feed.server.overrides.set('/targets/crash.hop', slow.handler);

    const check = await first.request('POST', '/api/v1/ota/check-updates', { token, body: { force: true } });
    expect(check.status, JSON.stringify(check.body)).toBe(200);
    const start = await first.request('POST', '/api/v1/ota/download', {
      token,
      body: { update_id: 'update-001', target_partition: 'B' },
    });
    expect(start.status, JSON.stringify(start.body)).toBe(200);
    const jobId: string = start.body.data.job_id;
    await waitFor(
      () => first.request('GET', `/api/v1/ota/progress?job_id=${jobId}`, { token }),
      (r) => r.body.data?.delivery?.path === 'hop' && r.body.data.delivery.wire_bytes > 32 * 1024,
      'the delta half downloaded',
    );
    const exit = await first.kill('SIGKILL');
    rig.forget(first);
    expect(exit.signal).toBe('SIGKILL');
    const partial = path.join(
      rig.dataDir,
      'gateways',
      GATEWAY,
      'delta-work',
      jobId,
      `${built.sha256}.hop.partial`,
    );
    const kept = fs.statSync(partial).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(delta.length);

    slow.serveAll();
    const seen = rig.feed.server.requests.length;
    const second = await spawn();
    const done = await waitFor(
      () => second.request('GET', `/api/v1/ota/progress?job_id=${jobId}`, { token }),
      (r) => ['downloaded', 'error', 'cancelled'].includes(r.body.data?.status),
      'the resumed job to settle',
    );
    expect(done.body.data.status, JSON.stringify(done.body.data)).toBe('downloaded');
    expect(done.body.data.delivery.path).toBe('hop');
    expect(fs.readFileSync(slotFile('B')).equals(image)).toBe(true);
    expect(fs.readFileSync(slotFile('A')).equals(slotA)).toBe(true);
    const deltaGets = rig.feed.server.requests.slice(seen).filter((r) => r.url === '/targets/crash.hop');
    expect(deltaGets).toHaveLength(1);
    expect(deltaGets[0]!.range).toBe(`bytes=${kept}-${delta.length - 1}`);
    // The work directory is gone once the image is on the slot.
    expect(fs.existsSync(path.dirname(partial))).toBe(false);
  });
});
