import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createTRPCClient, httpLink, type TRPCClient } from '@trpc/client';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { AppRouter } from '../../api/routers/_app.js';
import { trpcError } from '../helpers/trpc.js';
import { GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { randomImage, startTestFeed, type TestFeed } from '../helpers/feed.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A manual upload is verified while it is received (one pass over its bytes): the stored file is
 * not read back; the procedure answers from the server's record of that receive, and only a file
 * with no record (a tRPC client naming a path) is verified by reading it.
 */

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('manual upload verified while received', () => {
  let feed: TestFeed;
  let stranger: TestFeed;
  let g: TestGantry;
  let operator: string;
  let bundle: Buffer;
  let untrusted: Buffer;
  const NAME = 'custom-v5.2.0.bundle';

  beforeAll(async () => {
    feed = await startTestFeed();
    stranger = await startTestFeed(); // another vendor key, not trusted by the gateway
    const image = randomImage(2 * 1024 * 1024 + 3);
    bundle = fs.readFileSync(await feed.publish({ version: 'v5.2.0', kernel: '6.2.1-LTS' }, image));
    untrusted = fs.readFileSync(await stranger.publish({ version: 'v5.2.0' }, image));
    const dataDir = tempDataDir();
    feed.trustIn(dataDir);
    g = await startTestGantry({ dataDir });
    operator = await g.tokenFor('operator');
  });
  afterAll(async () => {
    await g.stop();
    await feed.close();
    await stranger.close();
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  const uploadsDir = () => path.join(g.dataDir, 'gateways', GATEWAY, 'uploads');
  const incomingDir = () => path.join(uploadsDir(), 'incoming');
  const incoming = () => (fs.existsSync(incomingDir()) ? fs.readdirSync(incomingDir()) : []);
  const gateway = () => g.deps.gateways.get(GATEWAY)!;

  /** fs.createReadStream calls on anything in the gateway's upload area. */
  /** Files under the uploads dir opened for reading (streams, or a LendingFileReader's open). */
  function spyUploadReads() {
    const streams = vi.spyOn(fs, 'createReadStream');
    const opens = vi.spyOn(fs.promises, 'open');
    return () =>
      [
        ...streams.mock.calls.map(([p]) => String(p)),
        ...opens.mock.calls.filter(([, flags]) => flags === 'r').map(([p]) => String(p)),
      ].filter((p) => path.resolve(p).startsWith(uploadsDir() + path.sep));
  }

  async function uploadVerify(data: Buffer, name = NAME, version?: string) {
    const form = new FormData();
    if (version) form.append('version', version);
    form.append('file', new Blob([new Uint8Array(data)]), name);
    const res = await fetch(`${g.url}/api/v1/ota/upload/verify`, {
      method: 'POST',
      headers: { authorization: `Bearer ${operator}`, 'x-gateway-id': GATEWAY },
      body: form,
    });
    return { status: res.status, body: (await res.json()) as any }; // eslint-disable-line @typescript-eslint/no-explicit-any
  }

  function trpc(): TRPCClient<AppRouter> {
    return createTRPCClient<AppRouter>({
      links: [
        httpLink({
          url: `${g.url}/api/trpc`,
          headers: () => ({ authorization: `Bearer ${operator}`, 'x-gateway-id': GATEWAY }),
        }),
      ],
    });
  }

  it('should verify a bundle as it arrives and never read the stored file back', async () => {
    const reads = spyUploadReads();
    const res = await uploadVerify(bundle, NAME, 'v5.2.0-lab');
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.data).toEqual({
      verified: true,
      file: {
        name: NAME,
        size: expect.any(String),
        checksum: `sha256:${sha256(bundle)}`,
        version: 'v5.2.0-lab',
      },
      metadata: { kernel: '6.2.1-LTS', signature: 'verified' },
      compatibility: { hardware: 'compatible' },
    });
    expect(reads()).toEqual([]);
    expect(incoming()).toEqual([]);
    const stored = path.join(uploadsDir(), `${sha256(bundle)}.bundle`);
    expect(fs.readFileSync(stored).equals(bundle)).toBe(true);
  });

  it('should refuse a tampered payload with 422 OTA_INVALID_IMAGE, reading nothing back, keeping nothing', async () => {
    const reads = spyUploadReads();
    const tampered = Buffer.from(bundle);
    tampered[tampered.length - 4096]! ^= 0x01;
    const res = await uploadVerify(tampered, 'tampered.bundle');
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    expect(res.body.error.code).toBe('OTA_INVALID_IMAGE');
    expect(res.body.error.message).toMatch(/rootfs\.img does not match its signed SHA-256/);
    expect(reads()).toEqual([]);
    expect(incoming()).toEqual([]);
    expect(fs.existsSync(path.join(uploadsDir(), `${sha256(tampered)}.bundle`))).toBe(false);
  });

  it('should refuse a bundle signed by an untrusted key with 422 OTA_SIGNATURE_FAILED', async () => {
    const res = await uploadVerify(untrusted, 'stranger.bundle');
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    expect(res.body.error.code).toBe('OTA_SIGNATURE_FAILED');
    expect(incoming()).toEqual([]);
  });

  it('should refuse a file that is not a bundle with 422 OTA_INVALID_IMAGE', async () => {
    const res = await uploadVerify(randomImage(3 * 1024 * 1024), 'rootfs.img');
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    expect(res.body.error.code).toBe('OTA_INVALID_IMAGE');
    expect(res.body.error.message).toMatch(/not a valid tar archive/);
    expect(incoming()).toEqual([]);
  });

  it('should keep nothing of an upload whose form the procedure refuses', async () => {
    const res = await uploadVerify(bundle, NAME, 'v'.repeat(65));
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expect(res.body.error.code).toBe('VALIDATION_ERROR');
    expect(res.body.error.message).toMatch(/version/);
    await waitFor(
      async () => incoming(),
      (files) => files.length === 0,
      'refused upload removed',
    );
  });

  it('should remove the partial file when the client goes away mid-body', async () => {
    const boundary = 'gantry-abort-boundary';
    await new Promise<void>((resolve) => {
      const req = http.request(`${g.url}/api/v1/ota/upload/verify`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${operator}`,
          'x-gateway-id': GATEWAY,
          'content-type': `multipart/form-data; boundary=${boundary}`,
          'content-length': String(bundle.length + 1024),
        },
      });
      req.on('error', () => resolve());
      req.write(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.bundle"\r\n` +
          'Content-Type: application/octet-stream\r\n\r\n',
      );
      req.write(bundle.subarray(0, 1024 * 1024), () => {
        // The part file exists once the body is flowing; then the client vanishes.
        void waitFor(
          async () => incoming(),
          (files) => files.length === 1,
          'part file created',
        ).then(() => {
          req.destroy();
          resolve();
        });
      });
    });
    await waitFor(
      async () => incoming(),
      (files) => files.length === 0,
      'partial upload removed',
    );
    // Recorded as what it is (the client left), not as a server error.
    await waitFor(
      () => g.deps.logs.list(GATEWAY, { limit: 20 }).logs.map((l) => l.message),
      (messages) => messages.some((m) => /Upload abandoned: the client closed the connection/.test(m)),
      'abandoned upload logged',
    );
  });

  it('should verify by reading a file it has no record of (a tRPC client naming a path)', async () => {
    fs.mkdirSync(incomingDir(), { recursive: true });
    const file = path.join(incomingDir(), 'upload-by-hand.part');
    fs.writeFileSync(file, bundle);
    const reads = spyUploadReads();
    const out = await trpc().updates.verifyUpload.mutate({
      path: file,
      originalName: 'by-hand.bundle',
      size: bundle.length,
      sha256: sha256(bundle),
    });
    expect(out).toMatchObject({ verified: true, file: { name: 'by-hand.bundle', version: 'v5.2.0' } });
    expect(reads()).toEqual([file]);

    // The hash is the server's own, read with the file: none given is fine, a wrong one is refused.
    fs.writeFileSync(file, bundle);
    const unhashed = await trpc().updates.verifyUpload.mutate({
      path: file,
      originalName: 'by-hand.bundle',
      size: bundle.length,
    });
    expect(unhashed.file.checksum).toBe(`sha256:${sha256(bundle)}`);
    fs.writeFileSync(file, bundle);
    const wrong = await trpcError(
      trpc().updates.verifyUpload.mutate({
        path: file,
        originalName: 'by-hand.bundle',
        size: bundle.length,
        sha256: '0'.repeat(64),
      }),
    );
    expect(wrong.data).toMatchObject({ gantryCode: 'VALIDATION_ERROR' });
    expect(fs.existsSync(file)).toBe(false);

    const tampered = Buffer.from(bundle);
    tampered[tampered.length - 4096]! ^= 0x01;
    fs.writeFileSync(file, tampered);
    const err = await trpcError(
      trpc().updates.verifyUpload.mutate({
        path: file,
        originalName: 'by-hand.bundle',
        size: tampered.length,
        sha256: sha256(tampered),
      }),
    );
    expect(err.data).toMatchObject({ gantryCode: 'OTA_INVALID_IMAGE' });
    expect(fs.existsSync(file)).toBe(false);
  });

  it('should take no verification outcome from the caller, and no size or hash other than received', async () => {
    const received = await g.deps.updates.receiveUpload(gateway(), Readable.from([bundle]));
    expect(received.verification.ok).toBe(true);
    const input = {
      path: received.path,
      originalName: 'claimed.bundle',
      size: received.size,
      sha256: received.sha256!,
    };
    expect(received.sha256).toBe(sha256(bundle));
    const claimed = await trpcError(
      trpc().updates.verifyUpload.mutate({ ...input, verification: { ok: true } } as typeof input),
    );
    expect(claimed.data).toMatchObject({ gantryCode: 'VALIDATION_ERROR' });

    const other = '0'.repeat(64);
    const lying = await trpcError(trpc().updates.verifyUpload.mutate({ ...input, sha256: other }));
    expect(lying.data).toMatchObject({ gantryCode: 'VALIDATION_ERROR' });
    expect(lying.message).toMatch(/received upload/);
    // The record was consumed and its file removed: nothing left to claim.
    expect(fs.existsSync(received.path)).toBe(false);
    const again = await trpcError(trpc().updates.verifyUpload.mutate(input));
    expect(again.data).toMatchObject({ gantryCode: 'VALIDATION_ERROR' });
    expect(again.message).toMatch(/not an upload of this gateway/);
  });
});
