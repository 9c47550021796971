import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatBytes } from '../../core/format.js';
import { GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { randomImage, startTestFeed, type TestFeed } from '../helpers/feed.js';
import { waitFor } from '../helpers/wait.js';

/** SECTION 3: a signed bundle uploaded by hand (multipart), verified, deployed to slot B, installed. */

const FAST_POLICY = { retryDelayMs: 10, checkpointMs: 0, checkpointBytes: 256 * 1024 };

/** An answer as TestGantry.request gives it (the body parsed when it is JSON). */
type Reply = Omit<Awaited<ReturnType<TestGantry['request']>>, 'headers'>;

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** POST /upload/verify with a real multipart body, as a browser's FormData sends it. */
async function uploadVerify(
  g: TestGantry,
  opts: { token?: string; file?: { data: Buffer; name: string }; version?: string },
): Promise<Reply> {
  const form = new FormData();
  if (opts.version !== undefined) form.append('version', opts.version);
  if (opts.file) form.append('file', new Blob([new Uint8Array(opts.file.data)]), opts.file.name);
  const headers: Record<string, string> = { 'x-gateway-id': GATEWAY };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  const res = await fetch(`${g.url}/api/v1/ota/upload/verify`, { method: 'POST', headers, body: form });
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) };
  } catch {
    return { status: res.status, body: text };
  }
}

/**
 * Sends the headers and the first 64 KiB of a 16 MiB multipart upload and waits for the answer
 * WITHOUT ever finishing the body: only a server that decides before reading the body answers.
 */
function answerBeforeBody(g: TestGantry, token: string | undefined): Promise<Reply> {
  const boundary = 'gantry-test-boundary';
  return new Promise((resolve, reject) => {
    const req = http.request(`${g.url}/api/v1/ota/upload/verify`, {
      method: 'POST',
      headers: {
        'x-gateway-id': GATEWAY,
        'content-type': `multipart/form-data; boundary=${boundary}`,
        'content-length': String(16 * 1024 * 1024),
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (s: string) => (text += s));
      res.on('end', () => {
        req.destroy();
        resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) });
      });
    });
    req.write(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.img"\r\n` +
        'Content-Type: application/octet-stream\r\n\r\n',
    );
    req.write(Buffer.alloc(64 * 1024, 7));
  });
}

describe('manual upload: verify → deploy → install', () => {
  let feed: TestFeed;
  let g: TestGantry;
  let operator: string;
  let bundle: Buffer;
  let checksum: string;
  const image = randomImage(2 * 1024 * 1024 + 11);
  const NAME = 'custom-v5.1.0.img';

  beforeAll(async () => {
    feed = await startTestFeed();
    bundle = fs.readFileSync(await feed.publish({ version: 'v5.1.0', kernel: '6.2.0-LTS' }, image));
    checksum = `sha256:${sha256(bundle)}`;
    const dataDir = tempDataDir();
    feed.trustIn(dataDir);
    g = await startTestGantry({ dataDir, transferPolicy: FAST_POLICY });
    operator = await g.tokenFor('operator');
  });
  afterAll(async () => {
    await g.stop();
    await feed.close();
  });

  const uploadsDir = () => path.join(g.dataDir, 'gateways', GATEWAY, 'uploads');
  const incoming = () => {
    const dir = path.join(uploadsDir(), 'incoming');
    return fs.existsSync(dir) ? fs.readdirSync(dir) : [];
  };
  const storedBundles = () => fs.readdirSync(uploadsDir()).filter((f) => f.endsWith('.bundle'));
  const progress = (jobId: string) =>
    g.request('GET', `/api/v1/ota/progress?job_id=${jobId}`, { token: operator });

  it('should refuse a viewer with 403 before accepting the body', async () => {
    const viewer = await g.tokenFor('viewer');
    const res = await answerBeforeBody(g, viewer);
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('FORBIDDEN');
    expect(incoming()).toEqual([]);
  });

  it('should refuse an upload without a token with 401 before accepting the body', async () => {
    const res = await answerBeforeBody(g, undefined);
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('AUTH_REQUIRED');
    expect(incoming()).toEqual([]);
  });

  it('should answer 400 when the form has no file', async () => {
    const res = await uploadVerify(g, { token: operator, version: 'v5.1.0-custom' });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('VALIDATION_ERROR');
    expect(res.body.error.message).toMatch(/file/);
  });

  it('should refuse a tampered bundle with 422 and delete the uploaded file', async () => {
    const tampered = Buffer.from(bundle);
    tampered[tampered.length - 2048]! ^= 0xff; // inside the payload, before the tar trailer
    const res = await uploadVerify(g, { token: operator, file: { data: tampered, name: NAME } });
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    expect(['OTA_INVALID_IMAGE', 'OTA_SIGNATURE_FAILED']).toContain(res.body.error.code);
    expect(res.body.error.message).toMatch(/SHA-256|signature/);
    expect(incoming()).toEqual([]);
    expect(storedBundles()).toEqual([]);
    // Nothing unverified can be deployed.
    const deploy = await g.request('POST', '/api/v1/ota/upload/deploy', {
      token: operator,
      body: { filename: NAME, checksum: `sha256:${sha256(tampered)}` },
    });
    expect(deploy.status).toBe(404);
  });

  it('should refuse an unsigned raw image with 422', async () => {
    const res = await uploadVerify(g, {
      token: operator,
      file: { data: randomImage(256 * 1024), name: 'rootfs-v5.1.0.img' },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    expect(['OTA_INVALID_IMAGE', 'OTA_SIGNATURE_FAILED']).toContain(res.body.error.code);
    expect(incoming()).toEqual([]);
    expect(storedBundles()).toEqual([]);
  });

  it('should refuse an upload larger than GANTRY_MAX_UPLOAD_BYTES with 413 and keep nothing of it', async () => {
    const dataDir = tempDataDir();
    feed.trustIn(dataDir);
    const small = await startTestGantry({ dataDir, env: { GANTRY_MAX_UPLOAD_BYTES: String(64 * 1024) } });
    try {
      const token = await small.tokenFor('operator');
      const res = await uploadVerify(small, { token, file: { data: bundle, name: NAME } });
      expect(res.status, JSON.stringify(res.body)).toBe(413);
      expect(res.body.error.code).toBe('PAYLOAD_TOO_LARGE');
      const dir = path.join(dataDir, 'gateways', GATEWAY, 'uploads', 'incoming');
      expect(fs.existsSync(dir) ? fs.readdirSync(dir) : []).toEqual([]);
    } finally {
      await small.stop();
    }
  });

  it('should answer 404 to a deploy whose checksum matches no verified upload', async () => {
    const verify = await uploadVerify(g, { token: operator, file: { data: bundle, name: NAME } });
    expect(verify.status).toBe(200);
    const res = await g.request('POST', '/api/v1/ota/upload/deploy', {
      token: operator,
      body: { filename: NAME, checksum: `sha256:${'0'.repeat(64)}` },
    });
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('NOT_FOUND');
  });

  it('should refuse to deploy onto the booted slot A with 400', async () => {
    const res = await g.request('POST', '/api/v1/ota/upload/deploy', {
      token: operator,
      body: { filename: NAME, checksum, target_partition: 'A' },
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('VALIDATION_ERROR');
    expect(res.body.error.message).toMatch(/booted/);
  });

  it('should verify an upload, deploy it to slot B, install it and boot it', async () => {
    const verify = await uploadVerify(g, {
      token: operator,
      version: 'v5.1.0-custom',
      file: { data: bundle, name: NAME },
    });
    expect(verify.status, JSON.stringify(verify.body)).toBe(200);
    expect(verify.body).toMatchObject({ success: true, message: 'Image verified successfully' });
    expect(verify.body.data).toEqual({
      verified: true,
      file: { name: NAME, size: formatBytes(bundle.length), checksum, version: 'v5.1.0-custom' },
      metadata: { kernel: '6.2.0-LTS', signature: 'verified' },
      compatibility: { hardware: 'compatible' },
    });
    // The verified upload left the incoming area for the gateway's kept uploads.
    expect(incoming()).toEqual([]);
    expect(storedBundles()).toContain(`${sha256(bundle)}.bundle`);

    const deploy = await g.request('POST', '/api/v1/ota/upload/deploy', {
      token: operator,
      body: { filename: NAME, version: 'v5.1.0-custom', target_partition: 'B', checksum },
    });
    expect(deploy.status, JSON.stringify(deploy.body)).toBe(200);
    expect(deploy.body.message).toBe('Manual image deployment started');
    expect(deploy.body.data).toMatchObject({
      status: 'deploying',
      image: { name: NAME, version: 'v5.1.0-custom' },
      target_partition: 'B',
    });
    const jobId: string = deploy.body.data.job_id;
    expect(jobId).toMatch(/^MANUAL-DEPLOY-/);

    const done = await waitFor(
      () => progress(jobId),
      (r) => ['downloaded', 'error', 'cancelled'].includes(r.body.data?.status),
      'deployment written',
    );
    expect(done.body.data.status, JSON.stringify(done.body.data)).toBe('downloaded');
    expect(done.body.data.progress.percentage).toBe(100);
    const slotB = path.join(g.dataDir, 'gateways', GATEWAY, 'device', 'slot-B.img');
    expect(fs.readFileSync(slotB).equals(image)).toBe(true);

    const install = await g.request('POST', '/api/v1/ota/install', {
      token: operator,
      body: { job_id: jobId },
    });
    expect(install.status, JSON.stringify(install.body)).toBe(200);
    expect(install.body.data).toMatchObject({ job_id: jobId, status: 'installing', target_partition: 'B' });
    await waitFor(
      () => progress(jobId),
      (r) => r.body.data?.status === 'complete',
      'deployment complete',
    );
    const status = await waitFor(
      () => g.request('GET', '/api/v1/ota/status', { token: operator }),
      (r) => r.body.data.partitions.active.id === 'B' && r.body.data.partitions.active.status === 'healthy',
      'slot B booted and committed',
    );
    // The label was for display: the signed manifest's version is what runs.
    expect(status.body.data.gateway).toMatchObject({ os_version: 'v5.1.0', kernel: '6.2.0-LTS' });
    expect(status.body.data.partitions.active).toMatchObject({ booted: true, version: 'v5.1.0' });
  });
});
