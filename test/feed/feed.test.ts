import { createHash, sign } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { Metadata, MetadataKind, Signature, TargetFile } from '@tufjs/models';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildBundle, generateKeyPair, streamBundle, type ManifestFields } from '../../bundle/index.js';
import { GantryError } from '../../core/errors.js';
import {
  addTarget,
  FeedClient,
  initRepository,
  listRepositoryTargets,
  mapFeedError,
  refreshTimestamp,
  tufKey,
  verifyTargetHash,
} from '../../feed/index.js';
import { BufferSink, bytes, fields, MODEL } from '../bundle/helpers.js';
import { waitFor } from '../helpers/wait.js';
import { readAll, serveDir, tempDir, type StaticServer } from './helpers.js';

const feedKey = generateKeyPair();
const bundleKey = generateKeyPair();

async function makeBundle(
  dir: string,
  name: string,
  overrides: Partial<ManifestFields> = {},
  size = 200_000,
) {
  const file = path.join(dir, name);
  const image = bytes(size, name.length);
  await buildBundle({
    manifestFields: fields(overrides),
    payloadFiles: [{ name: 'rootfs.img', kind: 'rootfs', open: () => Readable.from([image]) }],
    privateKey: bundleKey.privateKey,
    out: file,
  });
  return file;
}

async function rejection(p: Promise<unknown>): Promise<GantryError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GantryError);
  return err as GantryError;
}

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

describe('TUF feed', () => {
  let work: string;
  let repo: string;
  let server: StaticServer;
  let bundleFile: string;

  const client = (): FeedClient =>
    new FeedClient({
      metadataDir: path.join(work, 'client-metadata'),
      metadataBaseUrl: server.url,
      targetBaseUrl: `${server.url}/targets`,
      trustedRoot: fs.readFileSync(path.join(repo, 'root.json')),
    });

  beforeEach(async () => {
    work = tempDir('gantry-feed-');
    repo = path.join(work, 'repo');
    initRepository(repo, { keys: feedKey.privateKey, expiresDays: 30 });
    bundleFile = await makeBundle(work, 'gantry-v5.0.5.bundle');
    await addTarget(repo, bundleFile, { keys: feedKey.privateKey });
    server = await serveDir(repo);
  });
  afterEach(async () => {
    await server.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('should write metadata with expiry dates without milliseconds', () => {
    for (const name of ['root.json', 'targets.json', 'snapshot.json', 'timestamp.json']) {
      const md = JSON.parse(fs.readFileSync(path.join(repo, name), 'utf8')) as {
        signed: { expires: string };
      };
      expect(md.signed.expires).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    }
    expect(fs.existsSync(path.join(repo, '1.root.json'))).toBe(true);
  });

  it('should list the target with its length, sha256 and release metadata', async () => {
    const data = fs.readFileSync(bundleFile);
    const targets = await client().refresh();
    expect(targets).toHaveLength(1);
    expect(targets[0]).toMatchObject({
      path: 'gantry-v5.0.5.bundle',
      length: data.length,
      sha256: sha256(data),
      hashes: { sha256: sha256(data) },
      custom: {
        version: 'v5.0.5',
        type: 'security',
        severity: 'critical',
        size: data.length,
        installed_size: 200_000,
        released: '2024-03-01',
        description: 'Security fixes',
        changelog: ['Fix CVE-2024-0001', 'Harden sshd'],
        compatible: [MODEL],
        kernel: '6.1.40-LTS',
        // The signer named by the bundle's manifest, so a gateway can say before downloading
        // whether it trusts it (issue 11.3: feed add recorded no key id).
        key_id: bundleKey.keyId,
      },
    });
    // 2.root.json does not exist: the 404 told the client its root is current.
    expect(server.requests.map((r) => r.url)).toContain('/2.root.json');
  });

  it('should see a target added after a first refresh, with cached metadata', async () => {
    const c = client();
    expect(await c.refresh()).toHaveLength(1);
    const second = await makeBundle(work, 'gantry-v5.1.0.bundle', { version: 'v5.1.0', type: 'feature' });
    await addTarget(repo, second, {
      keys: feedKey.privateKey,
      // Extra fields may not rename the signer: key_id is always the manifest's.
      custom: { channel: 'stable', key_id: 'ffffffffffffffff' },
    });
    const targets = await c.refresh();
    expect(targets.map((t) => [t.path, t.custom?.version])).toEqual([
      ['gantry-v5.0.5.bundle', 'v5.0.5'],
      ['gantry-v5.1.0.bundle', 'v5.1.0'],
    ]);
    expect(targets[1]!.custom).toMatchObject({ type: 'feature', channel: 'stable', key_id: bundleKey.keyId });
  });

  it('should refuse an expired timestamp (freeze attack) with a clear message', async () => {
    const longAgo = new Date(Date.now() - 400 * 86_400_000);
    refreshTimestamp(repo, { keys: feedKey.privateKey, expiresDays: 1, now: longAgo });
    const err = await rejection(client().refresh());
    expect(err.gantryCode).toBe('OTA_SIGNATURE_FAILED');
    expect(err.message).toMatch(/timestamp metadata has expired/);
  });

  it('should refuse a targets.json replaced by one signed with a wrong key', async () => {
    const intruder = generateKeyPair();
    const file = path.join(repo, 'targets.json');
    const md = Metadata.fromJSON(MetadataKind.Targets, JSON.parse(fs.readFileSync(file, 'utf8')));
    const evil = bytes(1000, 99);
    md.signed.targets['gantry-v5.0.5.bundle'] = new TargetFile({
      path: 'gantry-v5.0.5.bundle',
      length: evil.length,
      hashes: { sha256: sha256(evil) },
    });
    const k = tufKey(intruder.privateKey);
    md.sign(
      (b) => new Signature({ keyID: k.keyID, sig: sign(null, b, intruder.privateKey).toString('hex') }),
      false,
    );
    fs.writeFileSync(file, JSON.stringify(md.toJSON()));

    const err = await rejection(client().refresh());
    expect(err.gantryCode).toBe('OTA_SIGNATURE_FAILED');
    expect(err.message).toMatch(/not signed by the trusted keys.*targets was signed by 0\/1 keys/);
  });

  it('should refuse an older timestamp after a newer one was seen (rollback)', async () => {
    const older = fs.readFileSync(path.join(repo, 'timestamp.json'));
    refreshTimestamp(repo, { keys: feedKey.privateKey, expiresDays: 30 });
    const c = client();
    await c.refresh();
    fs.writeFileSync(path.join(repo, 'timestamp.json'), older);
    const err = await rejection(c.refresh());
    expect(err.gantryCode).toBe('OTA_SIGNATURE_FAILED');
    expect(err.message).toMatch(/rollback refused.*less than current version/);
  });

  it('should report an unreachable feed as OTA_DOWNLOAD_FAILED', async () => {
    const c = client();
    await server.close();
    const err = await rejection(c.refresh());
    expect(err.gantryCode).toBe('OTA_DOWNLOAD_FAILED');
  });

  it('should cut a feed that sends endless metadata, and answer a missing root version as the newest', async () => {
    let sent = 0;
    let closed = false;
    server.overrides.set('/timestamp.json', (_req, res) => {
      res.writeHead(200); // chunked, never ends
      const chunk = Buffer.alloc(16 * 1024, 0x20);
      const pump = (): void => {
        while (!res.destroyed && res.write(chunk)) sent += chunk.length;
        if (!res.destroyed) res.once('drain', pump);
      };
      res.on('close', () => {
        closed = true;
        res.removeAllListeners('drain');
      });
      pump();
    });
    const err = await rejection(client().refresh());
    expect(err.gantryCode).toBe('OTA_DOWNLOAD_FAILED');
    expect(err.message).toMatch(/sent more than the \d+ bytes allowed for \/timestamp\.json/);
    await waitFor(() => closed, Boolean, 'the endless response to be closed');
    expect(sent).toBeLessThan(4 * 1024 * 1024);
    // Getting here at all means the 404 for 2.root.json ended the root probe (DownloadHTTPError).
    expect(server.requests.map((r) => r.url)).toContain('/2.root.json');
  });

  it('should refuse to add a different bundle under an existing name, or sign with a foreign key', async () => {
    const other = await makeBundle(work, 'other.bundle', { version: 'v5.0.6' });
    fs.copyFileSync(other, path.join(work, 'gantry-v5.0.5.bundle'));
    await expect(
      addTarget(repo, path.join(work, 'gantry-v5.0.5.bundle'), { keys: feedKey.privateKey }),
    ).rejects.toThrow(/already has a different/);
    await expect(addTarget(repo, other, { keys: generateKeyPair().privateKey })).rejects.toThrow(
      /not the targets key/,
    );
    expect(listRepositoryTargets(repo).map((t) => t.path)).toEqual(['gantry-v5.0.5.bundle']);
  });

  it('should check the bundle signature when bundle keys are given', async () => {
    const other = await makeBundle(work, 'other.bundle', { version: 'v5.0.6' });
    const err = await rejection(
      addTarget(repo, other, { keys: feedKey.privateKey, bundleKeys: [generateKeyPair().publicKey] }),
    );
    expect(err.gantryCode).toBe('OTA_SIGNATURE_FAILED');
    await addTarget(repo, other, { keys: feedKey.privateKey, bundleKeys: [bundleKey.publicKey] });
  });

  describe('fetchTarget', () => {
    it('should stream the whole target, then resume from an offset with a Range request', async () => {
      const data = fs.readFileSync(bundleFile);
      const c = client();
      const [target] = await c.refresh();
      const whole = await readAll(await c.fetchTarget(target!));
      expect(whole.equals(data)).toBe(true);
      verifyTargetHash(sha256(whole), target!);

      const offset = 123_457;
      const tail = await readAll(await c.fetchTarget(target!, { offset }));
      expect(tail.equals(data.subarray(offset))).toBe(true);
      expect(server.requests.at(-1)).toMatchObject({ range: `bytes=${offset}-${data.length - 1}` });
      expect(Buffer.concat([data.subarray(0, offset), tail]).equals(data)).toBe(true);

      expect((await readAll(await c.fetchTarget(target!, { offset: data.length }))).length).toBe(0);
    });

    it('should cut a server that sends more than the declared length', async () => {
      const c = client();
      const [target] = await c.refresh();
      let sent = 0;
      server.overrides.set(`/targets/${target!.path}`, (_req, res) => {
        res.writeHead(200); // no content-length: chunked, endless
        const chunk = Buffer.alloc(64 * 1024, 0x41);
        const pump = (): void => {
          while (!res.destroyed && res.write(chunk)) sent += chunk.length;
          if (!res.destroyed) res.once('drain', pump);
        };
        res.on('close', () => res.removeAllListeners('drain'));
        pump();
      });
      const stream = await c.fetchTarget(target!);
      const err = await rejection(readAll(stream));
      expect(err.gantryCode).toBe('OTA_DOWNLOAD_FAILED');
      expect(err.message).toMatch(/sent more than the \d+ bytes the feed declares/);
      expect(sent).toBeLessThan(target!.length + 16 * 1024 * 1024);
    });

    it('should refuse a Content-Length other than the declared length before streaming', async () => {
      const c = client();
      const [target] = await c.refresh();
      server.overrides.set(`/targets/${target!.path}`, (_req, res) => {
        res.writeHead(200, { 'content-length': target!.length + 1 }).end(Buffer.alloc(target!.length + 1));
      });
      const err = await rejection(c.fetchTarget(target!));
      expect(err.gantryCode).toBe('OTA_DOWNLOAD_FAILED');
      expect(err.message).toMatch(/announces/);
    });

    it('should fail a body shorter than declared', async () => {
      const c = client();
      const [target] = await c.refresh();
      server.overrides.set(`/targets/${target!.path}`, (_req, res) => {
        res.writeHead(200).end(Buffer.alloc(100));
      });
      const err = await rejection(readAll(await c.fetchTarget(target!)));
      expect(err.gantryCode).toBe('OTA_DOWNLOAD_FAILED');
      expect(err.message).toMatch(/ended after 100 of/);
    });

    it('should refuse to resume from a server that ignores Range or answers another range', async () => {
      const c = client();
      const [target] = await c.refresh();
      server.overrides.set(`/targets/${target!.path}`, (_req, res) => {
        res.writeHead(200, { 'content-length': target!.length }).end(Buffer.alloc(target!.length));
      });
      const err = await rejection(c.fetchTarget(target!, { offset: 10 }));
      expect(err.message).toMatch(/ignored the Range request/);

      server.overrides.set(`/targets/${target!.path}`, (_req, res) => {
        res
          .writeHead(206, { 'content-range': `bytes 0-9/${target!.length}`, 'content-length': 10 })
          .end(Buffer.alloc(10));
      });
      const err2 = await rejection(c.fetchTarget(target!, { offset: 10 }));
      expect(err2.gantryCode).toBe('OTA_DOWNLOAD_FAILED');
      expect(err2.message).toMatch(/range bytes 0-9/);
    });

    it('should stop a stalled download on abort and free the connection', async () => {
      const c = client();
      const [target] = await c.refresh();
      let serverSawClose!: () => void;
      const closed = new Promise<void>((resolve) => (serverSawClose = resolve));
      server.overrides.set(`/targets/${target!.path}`, (_req, res) => {
        res.writeHead(200, { 'content-length': target!.length });
        res.write(Buffer.alloc(1000)); // then stall forever
        res.on('close', () => serverSawClose());
      });
      const ac = new AbortController();
      const stream = await c.fetchTarget(target!, { signal: ac.signal });
      const reading = readAll(stream);
      // The body's first bytes may come with the head, before any listener: abort once stalled.
      setTimeout(() => ac.abort(new Error('operator cancelled')), 100);
      await expect(reading).rejects.toThrow('operator cancelled');
      await closed;
    });

    it('should free the connection when the consumer destroys the stream', async () => {
      const c = client();
      const [target] = await c.refresh();
      let serverSawClose!: () => void;
      const closed = new Promise<void>((resolve) => (serverSawClose = resolve));
      server.overrides.set(`/targets/${target!.path}`, (_req, res) => {
        res.writeHead(200, { 'content-length': target!.length });
        res.write(Buffer.alloc(1000));
        res.on('close', () => serverSawClose());
      });
      const stream = await c.fetchTarget(target!);
      // Regression: a body built with Readable.from(async generator) parked on a stalled socket
      // ignored destroy(): its `finally` never ran, 'close' never came and the socket leaked.
      // Destroyed a turn later, once the reader is parked waiting on the stalled server.
      stream.once('data', () => setImmediate(() => stream.destroy()));
      stream.resume();
      await closed;
      expect(stream.destroyed).toBe(true);
    }, 5_000);

    it('should report a missing target as OTA_DOWNLOAD_FAILED', async () => {
      const err = await rejection(client().fetchTarget({ path: 'nope.bundle', length: 10 }));
      expect(err.gantryCode).toBe('OTA_DOWNLOAD_FAILED');
      expect(err.message).toMatch(/HTTP 404/);
    });

    it('should feed a fetched target straight into streamBundle', async () => {
      const c = client();
      const [target] = await c.refresh();
      const hash = createHash('sha256');
      const source = await c.fetchTarget(target!);
      source.on('data', (chunk: Buffer) => hash.update(chunk));
      const sink = new BufferSink();
      const res = await streamBundle(source, {
        trustedKeys: [bundleKey.publicKey],
        hardwareModel: MODEL,
        currentVersion: 'v5.0.4',
        openPayloadSink: async () => sink,
      });
      expect(res.manifest.version).toBe(target!.custom!.version);
      expect(sink.finished).toBe(true);
      verifyTargetHash(hash.digest('hex'), target!);
    });
    it('should lend a fetched target to streamBundle: a sink that keeps chunks a while sees them intact', async () => {
      const c = client();
      const [target] = await c.refresh();
      const source = await c.fetchTarget(target!);
      // Copies each chunk only just before calling back, a few turns later; with a high-water mark
      // that lets write() say "more" at once, only streamBundle waiting for the callback keeps the
      // source from reading over a lent chunk meanwhile.
      const kept: Buffer[] = [];
      const slowSink = new Writable({
        highWaterMark: 64 * 1024 * 1024,
        write(chunk: Buffer, _enc, cb) {
          setTimeout(() => {
            kept.push(Buffer.from(chunk));
            cb();
          }, 1);
        },
      });
      const res = await streamBundle(source, {
        trustedKeys: [bundleKey.publicKey],
        hardwareModel: MODEL,
        currentVersion: 'v5.0.4',
        openPayloadSink: async () => slowSink,
      });
      const image = Buffer.concat(kept);
      expect(sha256(image)).toBe(res.payloads[0]!.sha256);
      verifyTargetHash(res.sha256 ?? '', target!);
    });
  });

  it('should reject a hash that does not match the signed target', () => {
    const target = { path: 'a.bundle', hashes: { sha256: 'a'.repeat(64) } };
    expect(() => verifyTargetHash('a'.repeat(64), target)).not.toThrow();
    expect(() => verifyTargetHash('b'.repeat(64), target)).toThrow(
      /does not match the SHA-256 the feed signed/,
    );
  });
});

describe('mapFeedError', () => {
  class RuntimeError extends Error {}
  class ExpiredMetadataError extends Error {}
  class DownloadHTTPError extends Error {
    constructor(
      message: string,
      readonly statusCode: number,
    ) {
      super(message);
    }
  }

  it.each([
    [
      new RuntimeError('Unable to load targets error Error: targets was signed by 0/1 keys'),
      'OTA_SIGNATURE_FAILED',
      /not signed/,
    ],
    [
      new ExpiredMetadataError('Final timestamp.json is expired'),
      'OTA_SIGNATURE_FAILED',
      /timestamp metadata has expired/,
    ],
    [
      new RuntimeError('Unable to load targets error Error: targets.json is expired'),
      'OTA_SIGNATURE_FAILED',
      /expired/,
    ],
    [new Error('New snapshot version 1 is less than current version 2'), 'OTA_SIGNATURE_FAILED', /rollback/],
    [
      new RuntimeError('Unable to load snapshot metadata error Error: Expected hash abc but got def'),
      'OTA_SIGNATURE_FAILED',
      /hashes/,
    ],
    [
      new RuntimeError('Unable to load snapshot metadata error Error: Failed to download'),
      'OTA_DOWNLOAD_FAILED',
      /reach/,
    ],
    [new DownloadHTTPError('Failed to download', 500), 'OTA_DOWNLOAD_FAILED', /HTTP 500/],
    [new TypeError('fetch failed'), 'OTA_DOWNLOAD_FAILED', /reach/],
  ])('should map %s', (err, code, message) => {
    const mapped = mapFeedError(err);
    expect(mapped.gantryCode).toBe(code);
    expect(mapped.message).toMatch(message);
  });
});
