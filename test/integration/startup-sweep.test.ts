import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { PARTIAL_FILE_KINDS } from '../../services/data-dir-sweep.js';
import { configurationZip, pluginZip } from '../fixtures/zip/zips.js';
import { GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { randomImage, stallingFeed, startTestFeed, type TestFeed } from '../helpers/feed.js';
import { freePort, spawnGantry, type GantryProcess } from '../helpers/process.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Issue 11 point 4, "nothing is left behind": what a killed Gantry leaves half-written in its data
 * dir is gone after the next start, and what a job resumes from is not.
 */

const OTHER = 'GW-7781B2';
const TWO_GATEWAYS = { GANTRY_GATEWAYS: `${GATEWAY},${OTHER}` };

const gatewayDir = (dataDir: string, id = GATEWAY) => path.join(dataDir, 'gateways', id);
const incomingDir = (dataDir: string) => path.join(gatewayDir(dataDir), 'uploads', 'incoming');
const zipUploadDir = (dataDir: string) => path.join(dataDir, 'uploads');

/** Files of `dir` and their sizes (none when it does not exist). */
function sizes(dir: string): Record<string, number> {
  if (!fs.existsSync(dir)) return {};
  return Object.fromEntries(fs.readdirSync(dir).map((n) => [n, fs.statSync(path.join(dir, n)).size]));
}

/**
 * A multipart POST whose body is sent only up to `sendBytes` of the file, the connection then held
 * open: a slow client, still uploading when the server is killed under it.
 */
function heldUpload(
  url: string,
  urlPath: string,
  o: { token: string; gateway: string; field: string; filename: string; data: Buffer; sendBytes: number },
): http.ClientRequest {
  const boundary = `gantry-sweep-${randomBytes(8).toString('hex')}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="${o.field}"; filename="${o.filename}"\r\n` +
      'Content-Type: application/octet-stream\r\n\r\n',
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const req = http.request(url + urlPath, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${o.token}`,
      'x-gateway-id': o.gateway,
      'content-type': `multipart/form-data; boundary=${boundary}`,
      'content-length': head.length + o.data.length + tail.length,
    },
  });
  req.on('error', () => undefined); // the server dies under it: that is the point
  req.on('response', (res) => res.resume());
  req.write(head);
  req.write(o.data.subarray(0, o.sendBytes));
  return req;
}

/** The resume point the store holds for a download job (read beside the server, or after it died). */
function storedResumeBytes(dataDir: string, jobId: string): number {
  const db = new Database(path.join(dataDir, 'gantry.db'), { readonly: true, fileMustExist: true });
  try {
    const row = db.prepare('SELECT artifact FROM jobs WHERE id = ?').get(jobId) as
      { artifact: string | null } | undefined;
    const artifact = row?.artifact ? (JSON.parse(row.artifact) as { resume?: { slotBytes?: number } }) : null;
    return artifact?.resume?.slotBytes ?? 0;
  } finally {
    db.close();
  }
}

async function form(
  g: TestGantry,
  urlPath: string,
  token: string,
  field: string,
  file: string,
  gateway = GATEWAY,
) {
  const body = new FormData();
  body.append(field, new Blob([new Uint8Array(fs.readFileSync(file))]), path.basename(file));
  const res = await fetch(g.url + urlPath, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'x-gateway-id': gateway },
    body,
  });
  return { status: res.status, body: (await res.json()) as any }; // eslint-disable-line @typescript-eslint/no-explicit-any
}

describe('start-up sweep of what a killed Gantry left in its data dir', () => {
  let feed: TestFeed | undefined;
  const children: GantryProcess[] = [];
  const requests: http.ClientRequest[] = [];
  const running: TestGantry[] = [];

  afterEach(async () => {
    for (const req of requests.splice(0)) req.destroy();
    for (const child of children.splice(0)) await child.kill('SIGKILL');
    for (const g of running.splice(0)) await g.stop();
    await feed?.close();
    feed = undefined;
    vi.restoreAllMocks();
  });

  it('should remove the bodies of uploads killed mid-body (manual, recovery, ZIP) and resume the download killed beside them', async () => {
    feed = await startTestFeed();
    const dataDir = tempDataDir();
    feed.trustIn(dataDir);
    const port = await freePort();
    const spawn = async () => {
      const child = await spawnGantry({ dataDir, port, env: { ...feed!.env, ...TWO_GATEWAYS } });
      children.push(child);
      return child;
    };

    const image = randomImage(3 * 1024 * 1024 + 77);
    const update = await feed.publish({ version: 'v5.0.5' }, image);
    const updateBytes = fs.readFileSync(update);
    const slow = stallingFeed(updateBytes, {
      burst: 64 * 1024,
      chunk: 16 * 1024,
      tickMs: 20,
      capBytes: Math.floor(updateBytes.length * 0.8),
    });
    feed.server.overrides.set(feed.targetUrlPath(update), slow.handler);

    const first = await spawn();
    const token = await first.login();

    // A download under way, with a durable resume point: the state a restart must resume from.
    expect(
      (await first.request('POST', '/api/v1/ota/check-updates', { token, body: { force: true } })).status,
    ).toBe(200);
    const download = await first.request('POST', '/api/v1/ota/download', {
      token,
      body: { update_id: 'update-001' },
    });
    expect(download.status, JSON.stringify(download.body)).toBe(200);
    const jobId: string = download.body.data.job_id;
    await waitFor(
      () => storedResumeBytes(dataDir, jobId),
      (bytes) => bytes > 0,
      'a durable resume point of the download',
    );

    // A recovery image stored whole before the kill: what recovery.json names must stay. (Both
    // bundles published once the feed was checked: the download is the only update offered.)
    const upload = fs.readFileSync(await feed.publish({ version: 'v5.0.6' }, randomImage(2 * 1024 * 1024)));
    const recovery = await feed.publish({ version: 'v5.0.1' }, randomImage(256 * 1024));
    const stored = await fetch(`${first.url}/api/v1/ota/recovery/upload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'x-gateway-id': GATEWAY },
      body: (() => {
        const f = new FormData();
        f.append('file', new Blob([new Uint8Array(fs.readFileSync(recovery))]), 'recovery.bundle');
        return f;
      })(),
    });
    expect(stored.status, await stored.clone().text()).toBe(200);
    const recoveryDir = path.join(gatewayDir(dataDir), 'recovery');
    const recoveryFiles = fs.readdirSync(recoveryDir).sort();

    // Three uploads whose bodies are still arriving: more than the upload writer's first 1 MiB
    // block, so some of each is on disk (device/slot-writer.ts writes whole blocks).
    const held = { token, data: upload, sendBytes: 1536 * 1024, filename: 'image.bundle' };
    requests.push(
      heldUpload(first.url, '/api/v1/ota/upload/verify', { ...held, gateway: GATEWAY, field: 'file' }),
      heldUpload(first.url, '/api/v1/ota/recovery/upload', { ...held, gateway: GATEWAY, field: 'file' }),
      heldUpload(first.url, '/ota-update', {
        ...held,
        gateway: OTHER,
        field: 'ota_zip_file',
        filename: 'plugin.zip',
      }),
    );
    const parts = await waitFor(
      () => sizes(incomingDir(dataDir)),
      (s) => Object.keys(s).length === 2 && Object.values(s).every((n) => n > 0),
      'both upload bodies on disk',
    );
    await waitFor(
      () => sizes(zipUploadDir(dataDir)),
      (s) => Object.keys(s).length === 1 && Object.values(s).every((n) => n > 0),
      'the ZIP body on disk',
    );

    expect((await first.kill('SIGKILL')).signal).toBe('SIGKILL');
    // What the kill left: the partial bodies nothing will ever finish.
    expect(Object.keys(sizes(incomingDir(dataDir))).every((n) => /^upload-.*\.part$/.test(n))).toBe(true);
    expect(Object.keys(sizes(incomingDir(dataDir)))).toHaveLength(2);
    expect(Object.keys(sizes(zipUploadDir(dataDir)))).toHaveLength(1);

    slow.serveAll();
    const second = await spawn();
    expect(sizes(incomingDir(dataDir))).toEqual({});
    expect(sizes(zipUploadDir(dataDir))).toEqual({});
    expect(fs.readdirSync(recoveryDir).sort()).toEqual(recoveryFiles);

    // The download was not touched: it resumes and completes onto slot B.
    const done = await waitFor(
      () => second.request('GET', `/api/v1/ota/progress?job_id=${jobId}`, { token }),
      (r) => ['downloaded', 'error', 'cancelled'].includes(r.body.data?.status),
      'the resumed download to settle',
    );
    expect(done.body.data.status, JSON.stringify(done.body.data)).toBe('downloaded');
    expect(fs.readFileSync(path.join(gatewayDir(dataDir), 'device', 'slot-B.img')).equals(image)).toBe(true);

    // Said where an operator looks: the gateway's log, and stderr for the data dir's own files.
    const logs = await second.request('GET', '/api/v1/ota/logs?limit=200', { token });
    const messages: string[] = logs.body.data.logs.map((l: { message: string }) => l.message);
    const sweepLine = messages.find((m) => m.startsWith('Start-up sweep: removed upload body'));
    expect(sweepLine).toBeDefined();
    for (const name of Object.keys(parts)) expect(sweepLine).toContain(name);
    expect(second.output()).toMatch(
      /Gantry: Start-up sweep: removed ZIP upload left by an interrupted run \(1, /,
    );
  });

  it('should remove every kind of partial file, as its writer names it, and keep the finished ones', async () => {
    feed = await startTestFeed();
    const dataDir = tempDataDir();
    feed.trustIn(dataDir);
    const env = { ...feed.env };
    const g1 = await startTestGantry({ dataDir, env });
    running.push(g1);
    const token = await g1.login();
    const gw = gatewayDir(dataDir);

    // Finished things of every kind, made by their writers: none of them may go.
    const verified = await form(
      g1,
      '/api/v1/ota/upload/verify',
      token,
      'file',
      await feed.publish({ version: 'v5.0.6' }, randomImage(128 * 1024)),
    );
    expect(verified.status, JSON.stringify(verified.body)).toBe(200);
    const recoveryUp = await form(
      g1,
      '/api/v1/ota/recovery/upload',
      token,
      'file',
      await feed.publish({ version: 'v5.0.1' }, randomImage(128 * 1024)),
    );
    expect(recoveryUp.status, JSON.stringify(recoveryUp.body)).toBe(200);
    const snap = await g1.request('POST', '/api/v1/ota/snapshot', {
      token,
      body: { name: 'kept', description: '' },
    });
    expect(snap.status, JSON.stringify(snap.body)).toBe(200);
    const bundle = await g1.request('POST', '/api/v1/ota/debug-bundle', { token, body: {} });
    expect(bundle.status, JSON.stringify(bundle.body)).toBe(200);
    for (const id of [snap.body.data.snapshot_id as string, bundle.body.data.bundle_id as string]) {
      await waitFor(
        () => g1.deps.jobs.get(id)?.state,
        (s) => s === 'complete',
        `${id} complete`,
      );
    }
    for (const [route, zip] of [
      ['/ota-configure', (await configurationZip()).zip],
      ['/ota-configure', (await configurationZip()).zip],
      ['/ota-update', await pluginZip({ name: 'crane-telemetry' })],
    ] as const) {
      const file = path.join(tempDataDir('gantry-zip-'), 'archive.zip');
      fs.writeFileSync(file, zip);
      const started = await form(g1, route, token, 'ota_zip_file', file);
      expect(started.status, JSON.stringify(started.body)).toBe(200);
      await g1.deps.zipOps.settled(started.body.update_id);
      expect(g1.deps.jobs.get(started.body.update_id)?.state).toBe('complete');
    }
    await g1.stop();
    running.splice(running.indexOf(g1), 1);

    const kept = (dir: string) => fs.readdirSync(dir).map((n) => path.join(dir, n));
    const finished = [
      ...kept(path.join(gw, 'uploads')),
      ...kept(path.join(gw, 'recovery')),
      ...kept(path.join(gw, 'snapshots')),
      ...kept(path.join(gw, 'debug')),
      ...kept(path.join(gw, 'config')),
      ...kept(path.join(gw, 'plugins', 'crane-telemetry')),
      ...kept(path.join(gw, 'device')),
      ...kept(path.join(dataDir, 'secrets')),
    ];
    expect(finished.map((f) => path.relative(dataDir, f)).sort()).toEqual(
      expect.arrayContaining([
        `gateways/${GATEWAY}/config/current`,
        `gateways/${GATEWAY}/config/previous`,
        `gateways/${GATEWAY}/plugins/crane-telemetry/current`,
        `gateways/${GATEWAY}/snapshots/${snap.body.data.snapshot_id}`,
        `gateways/${GATEWAY}/debug/${bundle.body.data.bundle_id}.tar.gz`,
        `gateways/${GATEWAY}/recovery/recovery.json`,
        `gateways/${GATEWAY}/device/slot-A.img`,
      ]),
    );

    // What kills leave, named as each writer names it (services/data-dir-sweep.ts lists them).
    const hex = (n: number) => randomBytes(n).toString('hex');
    const plant = (rel: string, opts: { dir?: boolean; bytes?: number } = {}) => {
      const p = path.join(dataDir, rel);
      if (opts.dir) {
        fs.mkdirSync(p, { recursive: true });
        fs.writeFileSync(path.join(p, 'image.img'), randomBytes(opts.bytes ?? 4096));
      } else {
        fs.mkdirSync(path.dirname(p), { recursive: true });
        fs.writeFileSync(p, randomBytes(opts.bytes ?? 4096));
      }
      return p;
    };
    const g = `gateways/${GATEWAY}`;
    const planted = [
      plant(`${g}/uploads/incoming/upload-${Date.now()}-${hex(6)}.part`, { bytes: 64 * 1024 }),
      plant(`${g}/uploads/${hex(32)}.bundle`),
      plant(`${g}/recovery/recovery-${hex(32)}.bundle`),
      plant(`${g}/recovery/recovery.bundle`),
      plant(`${g}/snapshots/.staging-snap-002`, { dir: true, bytes: 256 * 1024 }),
      plant(`${g}/snapshots/.deleting-snap-000-${hex(4)}`, { dir: true }),
      plant(`${g}/debug/.staging-debug-20250315-002`, { dir: true }),
      plant(`${g}/debug/.debug-20250315-002.tar.gz.part`),
      plant(`${g}/debug/debug-20250315-003.tar.gz`),
      plant(`${g}/config/.staging-CFG-${hex(6).toUpperCase()}`, { dir: true }),
      plant(`${g}/config/.trash-CFG-${hex(6).toUpperCase()}`, { dir: true }),
      plant(`${g}/config/.failed-CFG-${hex(6).toUpperCase()}`, { dir: true }),
      plant(`${g}/plugins/.staging-PLG-${hex(6).toUpperCase()}`, { dir: true }),
      plant(`${g}/plugins/crane-telemetry/.failed-PLG-${hex(6).toUpperCase()}`, { dir: true }),
      plant(`${g}/.deleting-uploads-${hex(4)}`, { dir: true }),
      plant(`${g}/device/.device.json.${process.pid + 1}.tmp`),
      plant(`${g}/device/gantry-setenv-${hex(3)}`, { dir: true }),
      plant(`${g}/components/staging/OTA-JOB-${hex(3).toUpperCase()}`, { dir: true }),
      plant(`${g}/feed/metadata/.root.json.${process.pid + 1}.tmp`),
      plant(`${g}/recovery/.recovery.json.${process.pid + 1}.tmp`),
      plant(`secrets/.jwt-secret.${process.pid + 1}.tmp`),
      plant(`uploads/${hex(16)}.upload`, { bytes: 64 * 1024 }),
    ];

    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const g2 = await startTestGantry({ dataDir, env });
    running.push(g2);

    expect(planted.filter((p) => fs.existsSync(p)).map((p) => path.relative(dataDir, p))).toEqual([]);
    expect(finished.filter((p) => !fs.existsSync(p)).map((p) => path.relative(dataDir, p))).toEqual([]);
    // Still whole to their readers, not only present.
    expect(g2.deps.snapshots.list(GATEWAY).map((s) => s.id)).toEqual([snap.body.data.snapshot_id]);
    expect(g2.deps.recovery.recoveryImage(g2.deps.gateways.get(GATEWAY)!)?.manifest.version).toBe('v5.0.1');
    const fetched = await fetch(`${g2.url}/api/v1/ota/debug/download/${bundle.body.data.bundle_id}.tar.gz`, {
      headers: { authorization: `Bearer ${token}`, 'x-gateway-id': GATEWAY },
    });
    expect(fetched.status).toBe(200);

    // Every declared kind was met and said (the gateway's log; stderr for the data dir's own).
    const said = [
      ...g2.deps.logs.list(GATEWAY, { limit: 200 }).logs.map((l) => l.message),
      ...warn.mock.calls.map((c) => String(c[0])),
    ].filter((m) => m.includes('Start-up sweep: removed'));
    const kinds = [...new Set(PARTIAL_FILE_KINDS.map((k) => k.what))];
    expect(kinds.filter((what) => !said.some((m) => m.includes(`removed ${what} left by`)))).toEqual([]);
  });
});
