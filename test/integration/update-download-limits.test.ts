import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Override } from '../feed/helpers.js';
import { GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { randomImage, startTestFeed, type TestFeed } from '../helpers/feed.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Issue 11.6: what bounds a download that a feed keeps alive without finishing, and what a resume
 * does when the part already on the slot no longer matches. Real loopback servers, small policies.
 */

const FAST_POLICY = {
  retryDelayMs: 5,
  checkpointMs: 0,
  checkpointBytes: 128 * 1024,
  maxAttempts: 3,
  threadHashingMinBytes: 0,
};

/** Answers a GET (or a Range) of `data` with the status and headers a static server would send. */
function head(data: Buffer, rangeHeader: string | undefined) {
  const m = /^bytes=(\d+)-(\d*)$/.exec(rangeHeader ?? '');
  const start = m ? Number(m[1]) : 0;
  const body = data.subarray(start);
  const headers = {
    'content-length': body.length,
    ...(m ? { 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
  };
  return { status: m ? 206 : 200, headers, body, start };
}

/** A feed that sends a first burst, then `chunk` bytes every `tickMs`: it finishes, eventually. */
function trickling(data: Buffer, opts: { burst: number; chunk: number; tickMs: number }): Override {
  return (req, res) => {
    const { status, headers, body } = head(data, req.headers.range);
    res.writeHead(status, headers);
    let sent = Math.min(opts.burst, body.length);
    res.write(body.subarray(0, sent));
    const timer = setInterval(() => {
      const next = Math.min(sent + opts.chunk, body.length);
      res.write(body.subarray(sent, next));
      sent = next;
      if (sent === body.length) {
        clearInterval(timer);
        res.end();
      }
    }, opts.tickMs);
    res.on('close', () => clearInterval(timer));
  };
}

describe('update downloads: slow feeds and damaged resumes', () => {
  let feed: TestFeed;
  let g: TestGantry;
  let token: string;
  let dataDir: string;
  const image = randomImage(2 * 1024 * 1024 + 11);

  beforeEach(async () => {
    feed = await startTestFeed();
    dataDir = tempDataDir();
    feed.trustIn(dataDir);
  });
  afterEach(async () => {
    await g?.stop();
    await feed.close();
  });

  async function boot(policy: Record<string, number> = {}): Promise<void> {
    g = await startTestGantry({ dataDir, env: feed.env, transferPolicy: { ...FAST_POLICY, ...policy } });
    token = await g.login();
    const check = await g.request('POST', '/api/v1/ota/check-updates', { token, body: { force: true } });
    expect(check.status, JSON.stringify(check.body)).toBe(200);
  }
  const download = () =>
    g.request('POST', '/api/v1/ota/download', { token, body: { update_id: 'update-001' } });
  const finalState = (jobId: string) =>
    waitFor(
      () => g.request('GET', `/api/v1/ota/progress?job_id=${jobId}`, { token }),
      (r) => ['downloaded', 'error', 'cancelled', 'complete'].includes(r.body.data?.status),
      `job ${jobId} to settle`,
    );
  const slotFile = (slot: 'A' | 'B') => path.join(dataDir, 'gateways', GATEWAY, 'device', `slot-${slot}.img`);
  const targetRequests = (bundle: string) =>
    feed.server.requests.filter((r) => r.url === feed.targetUrlPath(bundle)).map((r) => r.range);
  const logMessages = async (): Promise<string[]> => {
    const logs = await g.request('GET', '/api/v1/ota/logs?limit=200', { token });
    return logs.body.data.logs.map((l: { message: string }) => l.message);
  };

  it('should end a download that trickles above the speed floor at the transfer time limit, releasing the lock', async () => {
    const bundle = await feed.publish({ version: 'v5.0.5' }, image);
    // ~80 KiB/s: the 2 MiB bundle would take ~25 s; the limit is 1 s. The floor (1 B/s) never cuts it.
    feed.server.overrides.set(
      feed.targetUrlPath(bundle),
      trickling(fs.readFileSync(bundle), { burst: 64 * 1024, chunk: 2048, tickMs: 25 }),
    );
    await boot({ maxTransferMs: 1000, slowFloorBytesPerSecond: 1, slowWindowMs: 300 });
    const start = await download();
    expect(start.status).toBe(200);
    const end = await finalState(start.body.data.job_id);
    expect(end.body.data.status).toBe('error');
    expect(end.body.data.error.code).toBe('OTA_DOWNLOAD_FAILED');
    expect(end.body.data.error.message).toMatch(
      /not finished within 1 s, the time limit of a whole transfer/,
    );
    // One attempt, never aborted as slow: only the time limit ended it.
    expect(targetRequests(bundle)).toEqual([undefined]);

    // The operation lock went with the job: the next download may start, and completes.
    feed.server.overrides.clear();
    const again = await download();
    expect(again.status, JSON.stringify(again.body)).toBe(200);
    expect((await finalState(again.body.data.job_id)).body.data.status).toBe('downloaded');
  });

  it('should abort each attempt of a feed trickling below the floor after a first burst, then fail', async () => {
    const bundle = await feed.publish({ version: 'v5.0.5' }, image);
    // 64 KiB at once, then ~12 KiB/s against a floor of 64 KiB/s measured over 300 ms.
    feed.server.overrides.set(
      feed.targetUrlPath(bundle),
      trickling(fs.readFileSync(bundle), { burst: 64 * 1024, chunk: 256, tickMs: 20 }),
    );
    await boot({ slowWindowMs: 300, slowFloorBytesPerSecond: 64 * 1024 });
    const end = await finalState((await download()).body.data.job_id);
    expect(end.body.data.status).toBe('error');
    expect(end.body.data.error.code).toBe('OTA_DOWNLOAD_FAILED');
    expect(end.body.data.error.message).toMatch(
      /^Download failed after 3 attempts: slow retrieval: \d+ bytes in 0\.3 s$/,
    );
    const messages = await logMessages();
    expect(messages.filter((m) => /transfer attempt \d failed \(slow retrieval/.test(m))).toHaveLength(2);
  });

  /**
   * Serves the bundle; the n-th plain (not Range) request for each n in `cutOn` sends part of it,
   * waits until some of it is durable on slot B, flips a byte of what is already there (a slot
   * that rotted, a write the disk lost) and drops the connection. A resumed attempt asks for the
   * bundle head with a plain request, then for the rest with a Range.
   */
  function damagingFeed(data: Buffer, cutOn: number[]): Override {
    let plain = 0;
    return (req, res) => {
      const { status, headers, body } = head(data, req.headers.range);
      res.writeHead(status, headers);
      if (req.headers.range || !cutOn.includes(++plain)) {
        res.end(body);
        return;
      }
      res.write(body.subarray(0, Math.floor(body.length * 0.6)));
      void waitFor(
        () => {
          const job = g.deps.jobs.recent(GATEWAY).find((j) => j.kind === 'download');
          return job ? g.deps.updates.progress(g.deps.gateways.get(GATEWAY)!, job.id).percentage : 0;
        },
        (pct) => pct > 0,
        'a durable checkpoint',
      ).then(() => {
        const fd = fs.openSync(slotFile('B'), 'r+');
        try {
          const byte = Buffer.alloc(1);
          fs.readSync(fd, byte, 0, 1, 100);
          byte[0] = byte[0]! ^ 0xff;
          fs.writeSync(fd, byte, 0, 1, 100);
        } finally {
          fs.closeSync(fd);
        }
        res.socket?.destroy();
      });
    };
  }

  // Regression (issue 11.6): a resume whose slot prefix failed its hash ended the job in
  // OTA_INVALID_IMAGE, and the operator had to start again.
  it('should restart from byte 0 by itself when the part already on the slot fails its hash on resume', async () => {
    const bundle = await feed.publish({ version: 'v5.0.5' }, image);
    feed.server.overrides.set(feed.targetUrlPath(bundle), damagingFeed(fs.readFileSync(bundle), [1]));
    await boot();
    const end = await finalState((await download()).body.data.job_id);
    expect(end.body.data.status, JSON.stringify(end.body.data)).toBe('downloaded');
    expect(fs.readFileSync(slotFile('B')).equals(image)).toBe(true);
    // Cut; resumed (head, then the rest by Range) and failed its hash; restarted from byte 0.
    const requests = targetRequests(bundle);
    expect(requests).toHaveLength(4);
    expect(requests[2]).toMatch(/^bytes=[1-9]\d*-\d+$/);
    expect([requests[0], requests[1], requests[3]]).toEqual([undefined, undefined, undefined]);
    const messages = await logMessages();
    expect(
      messages.filter((m) =>
        /the part already on slot B failed its hash on resume \(payload rootfs\.img does not match its signed SHA-256\); restarting the transfer from byte 0/.test(
          m,
        ),
      ),
    ).toHaveLength(1);
  });

  it('should restart only once: a second damaged resume fails the job with OTA_INVALID_IMAGE', async () => {
    const bundle = await feed.publish({ version: 'v5.0.5' }, image);
    // The 3rd plain request is the restarted transfer: it is cut and damaged too.
    feed.server.overrides.set(feed.targetUrlPath(bundle), damagingFeed(fs.readFileSync(bundle), [1, 3]));
    await boot();
    const end = await finalState((await download()).body.data.job_id);
    expect(end.body.data.status).toBe('error');
    expect(end.body.data.error.code).toBe('OTA_INVALID_IMAGE');
    expect(end.body.data.error.message).toMatch(
      /does not match its signed SHA-256 \(after the transfer restarted from byte 0\)$/,
    );
    const requests = targetRequests(bundle);
    expect(requests.map((r) => (r === undefined ? 'plain' : 'range'))).toEqual([
      'plain',
      'plain',
      'range',
      'plain',
      'plain',
      'range',
    ]);
    await waitFor(
      async () => (await g.deps.gateways.get(GATEWAY)!.device.slots()).B.state,
      (s) => s === 'invalid',
      'slot B invalid',
    );
  });
});
