import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { io as ioClient, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { hashSecret } from '../../core/auth.js';
import type { TerminalOutput } from '../../api/schemas/zip.js';
import type { TerminalLine } from '../../services/zip-manifests.js';
import { GATEWAY, startTestGantry, tempDataDir, type TestGantry } from '../helpers/gantry.js';
import { configurationZip, ed25519Pair, makeZip, PNG_BYTES, pluginZip } from '../fixtures/zip/zips.js';

const OTHER_GATEWAY = 'GW-7781B2';

interface Reply {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

let g: TestGantry;
let admin: string;
let scratch: string;

beforeAll(async () => {
  g = await startTestGantry({ env: { GANTRY_GATEWAYS: `${GATEWAY},${OTHER_GATEWAY}` } });
  admin = await g.login();
  scratch = tempDataDir('gantry-zip-scratch-');
});
afterAll(async () => {
  await g.stop();
  fs.rmSync(scratch, { recursive: true, force: true });
});

async function reply(res: Response): Promise<Reply> {
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) };
  } catch {
    return { status: res.status, body: text };
  }
}

/** A browser-like multipart upload of `ota_zip_file`. */
async function upload(
  route: '/ota-configure' | '/ota-update',
  file: Buffer | null,
  opts: {
    token?: string | null;
    gateway?: string | null;
    filename?: string;
    field?: string;
    headers?: Record<string, string>;
  } = {},
): Promise<Reply> {
  const form = new FormData();
  if (file)
    form.append(
      opts.field ?? 'ota_zip_file',
      new Blob([new Uint8Array(file)]),
      opts.filename ?? 'archive.zip',
    );
  else form.append('comment', 'no file here');
  const headers: Record<string, string> = { ...opts.headers };
  const token = opts.token === undefined ? admin : opts.token;
  if (token) headers.authorization = `Bearer ${token}`;
  if (opts.gateway !== null) headers['x-gateway-id'] = opts.gateway ?? GATEWAY;
  return reply(await fetch(g.url + route, { method: 'POST', body: form, headers }));
}

/** Hand-built multipart (Node's FormData never sends an empty filename). */
async function rawMultipart(route: string, partHeaders: string, content = ''): Promise<Reply> {
  const boundary = '----gantry-test-boundary';
  const body = `--${boundary}\r\n${partHeaders}\r\n\r\n${content}\r\n--${boundary}--\r\n`;
  return reply(
    await fetch(g.url + route, {
      method: 'POST',
      body,
      headers: {
        authorization: `Bearer ${admin}`,
        'x-gateway-id': GATEWAY,
        'content-type': `multipart/form-data; boundary=${boundary}`,
      },
    }),
  );
}

async function progress(updateId: string, opts: { token?: string; gateway?: string } = {}): Promise<Reply> {
  return reply(
    await fetch(`${g.url}/ota-update-progress/${encodeURIComponent(updateId)}`, {
      headers: { authorization: `Bearer ${opts.token ?? admin}`, 'x-gateway-id': opts.gateway ?? GATEWAY },
    }),
  );
}

/** Starts an operation and waits (on the service, not on a clock) until it has finished. */
async function run(route: '/ota-configure' | '/ota-update', zip: Buffer, gateway = GATEWAY): Promise<Reply> {
  const res = await upload(route, zip, { gateway });
  expect(res.status).toBe(200);
  await g.deps.zipOps.settled(res.body.update_id);
  return progress(res.body.update_id, { gateway });
}

/** Terminal lines of one gateway as the hub sees them, until `until` matches one. */
function terminalLines(gatewayId: string, until: (l: TerminalLine) => boolean) {
  const lines: TerminalLine[] = [];
  let unsubscribe = () => {};
  const done = new Promise<TerminalLine[]>((resolve) => {
    unsubscribe = g.deps.provisioning.terminal.subscribe(gatewayId, (l) => {
      lines.push(l);
      if (until(l)) {
        unsubscribe();
        resolve(lines);
      }
    });
  });
  return { lines, done };
}

describe('POST /ota-configure', () => {
  it('should apply a valid configuration ZIP: settings, feed, keys, PIN, version', async () => {
    const pin = '4711';
    const { zip, key } = await configurationZip({ manifest: { safety_pin_hash: await hashSecret(pin) } });
    const res = await upload('/ota-configure', zip);
    expect(res.status).toBe(200);
    expect(Object.keys(res.body).sort()).toEqual(['message', 'progress', 'status', 'success', 'update_id']);
    expect(res.body).toMatchObject({ success: true, status: 'pending', progress: 0 });
    expect(res.body.update_id).toMatch(/^CFG-[0-9A-F]{12}$/);

    await g.deps.zipOps.settled(res.body.update_id);
    const done = await progress(res.body.update_id);
    expect(done.status).toBe(200);
    expect(done.body).toEqual({
      success: true,
      status: 'complete',
      progress: 100,
      message: 'Operation completed successfully',
    });

    const settings = await g.request('GET', '/api/v1/ota/settings', { token: admin });
    expect(settings.body.data.update_strategy).toBe('in-place');
    expect(settings.body.data.maintenance_window.time).toBe('03:30');

    const p = g.deps.provisioning;
    expect(p.feed(GATEWAY)).toEqual({
      metadataUrl: 'https://updates.example.com/metadata',
      targetsUrl: 'https://updates.example.com/targets',
      trustedRootPath: path.join(g.dataDir, 'gateways', GATEWAY, 'config', 'current', 'tuf', 'root.json'),
    });
    const der = (k: { export(o: { type: 'spki'; format: 'der' }): Buffer }) =>
      k.export({ type: 'spki', format: 'der' }).toString('hex');
    expect(p.trustedKeys(GATEWAY).map(der)).toContain(der(key.publicKey));
    expect(p.trustedKeys(OTHER_GATEWAY).map(der)).not.toContain(der(key.publicKey));
    expect(p.configurationVersion(GATEWAY)).toBe(createHash('sha256').update(zip).digest('hex'));

    // The provisioned PIN is the one the safety override now accepts.
    const override = (p: string) =>
      g.request('POST', '/api/v1/ota/safety/override', {
        token: admin,
        body: { enable: true, pin: p, reason: 'zip test', constraints: ['crane_motion'] },
      });
    const wrong = await override('0000');
    expect(wrong.status).toBe(403);
    expect(wrong.body.error.code).toBe('OTA_INVALID_PIN');
    const right = await override(pin);
    expect(right.status).toBe(200);
    await g.request('POST', '/api/v1/ota/safety/override', { token: admin, body: { enable: false } });

    // Persisted as a job with its transitions.
    const transitions = g.deps.jobs.transitions(res.body.update_id).map((t) => t.toState);
    expect(transitions).toEqual([
      'pending',
      'in_progress.extracting',
      'in_progress.validating',
      'in_progress.applying',
      'complete',
    ]);
    // The upload is gone once the operation is over.
    expect(fs.readdirSync(g.deps.zipOps.uploadDir())).toEqual([]);
  });

  it('should keep the previous configuration when a new one is refused', async () => {
    const before = g.deps.provisioning.configurationVersion(GATEWAY);
    const feedBefore = g.deps.provisioning.feed(GATEWAY);
    const rsa = `-----BEGIN PUBLIC KEY-----\n${'A'.repeat(64)}\n-----END PUBLIC KEY-----\n`;
    const { zip } = await configurationZip({
      manifest: { feed: { metadata_url: 'https://evil.example/m', targets_url: 'https://evil.example/t' } },
      extra: { 'keys/vendor.pub.pem': rsa },
    });
    const out = await run('/ota-configure', zip);
    expect(out.body).toMatchObject({ success: false, status: 'error', message: 'Operation failed' });
    expect(out.body.error).toMatch(/Signing key keys\/vendor.pub.pem is not an Ed25519 public key/);
    expect(g.deps.provisioning.configurationVersion(GATEWAY)).toBe(before);
    expect(g.deps.provisioning.feed(GATEWAY)).toEqual(feedBefore);
  });

  it('should refuse an unsafe archive as an operation error, naming why', async () => {
    const zip = await makeZip({
      'gantry-config.json': '{"kind":"configuration"}',
      link: { data: '/etc/shadow', unixPermissions: 0o120777 },
    });
    const out = await run('/ota-configure', zip);
    expect(out.body).toMatchObject({ success: false, status: 'error', progress: 10 });
    expect(out.body.error).toBe('Symbolic link in ZIP: link');
  });

  it('should refuse a manifest with an unknown field or a feed without a trusted root', async () => {
    const typo = await run(
      '/ota-configure',
      await makeZip({ 'gantry-config.json': '{"kind":"configuration","signing_key":"k.pem"}' }),
    );
    expect(typo.body.error).toMatch(/gantry-config.json: .*signing_key/);
    const noRoot = await run(
      '/ota-configure',
      await makeZip({
        'gantry-config.json': JSON.stringify({
          kind: 'configuration',
          feed: { metadata_url: 'https://a.example/m', targets_url: 'https://a.example/t' },
        }),
      }),
    );
    expect(noRoot.body.error).toMatch(/trusted_root: a feed needs a trusted_root/);
  });
});

describe('POST /ota-update (plugins)', () => {
  it('should install a plugin with a health-check hook that hooks() and runHooks() then run', async () => {
    const zip = await pluginZip({
      name: 'crane-telemetry',
      version: '2.1.0',
      hooks: { 'health-check': 'echo "healthy $GANTRY_PLUGIN_NAME $GANTRY_SLOT"; echo "note" >&2' },
      timeoutSeconds: 5,
    });
    const out = await run('/ota-update', zip);
    expect(out.body).toEqual({
      success: true,
      status: 'complete',
      progress: 100,
      message: 'Operation completed successfully',
    });

    const p = g.deps.provisioning;
    const dir = path.join(g.dataDir, 'gateways', GATEWAY, 'plugins', 'crane-telemetry', 'current');
    expect(p.hooks(GATEWAY, 'health-check')).toEqual([
      { plugin: 'crane-telemetry', path: path.join(dir, 'hooks', 'health.sh'), timeoutSeconds: 5 },
    ]);
    expect(p.hooks(GATEWAY, 'post-install')).toEqual([]);
    expect(fs.statSync(path.join(dir, 'hooks', 'health.sh')).mode & 0o777).toBe(0o755);

    const result = await p.runHooks(GATEWAY, 'health-check', { GANTRY_SLOT: 'B' });
    expect(result).toEqual({ ok: true, failures: [] });
    const logs = await g.request('GET', '/api/v1/ota/logs?limit=50', { token: admin });
    const messages = logs.body.data.logs.map(
      (l: { source: string; message: string }) => `${l.source}: ${l.message}`,
    );
    expect(messages).toContain('hook:crane-telemetry: healthy crane-telemetry B');
    expect(messages).toContain('hook:crane-telemetry: note');
  });

  it('should report a health-check hook that exits 1 as a failure', async () => {
    const out = await run(
      '/ota-update',
      await pluginZip({
        name: 'failing-check',
        hooks: { 'health-check': 'echo sensor offline >&2; exit 1' },
      }),
    );
    expect(out.body.status).toBe('complete');
    const result = await g.deps.provisioning.runHooks(GATEWAY, 'health-check', {});
    expect(result.ok).toBe(false);
    expect(result.failures).toEqual([{ plugin: 'failing-check', exitCode: 1, reason: 'exited with code 1' }]);
  });

  it('should fail the operation and restore the previous version when post-install exits 1', async () => {
    const v1 = await run(
      '/ota-update',
      await pluginZip({ name: 'plc-bridge', version: '1.0.0', hooks: { 'post-install': 'exit 0' } }),
    );
    expect(v1.body.status).toBe('complete');
    const v2 = await run(
      '/ota-update',
      await pluginZip({
        name: 'plc-bridge',
        version: '2.0.0',
        hooks: { 'post-install': 'echo cannot migrate >&2; exit 1' },
      }),
    );
    expect(v2.body).toMatchObject({ success: false, status: 'error', message: 'Operation failed' });
    expect(v2.body.error).toBe('Post-install hook of plc-bridge failed: exited with code 1');
    const installed = g.deps.provisioning.plugins(GATEWAY).find((pl) => pl.name === 'plc-bridge');
    expect(installed?.version).toBe('1.0.0');
  });

  it('should remove a first install whose post-install hook fails', async () => {
    const out = await run(
      '/ota-update',
      await pluginZip({ name: 'one-shot', hooks: { 'post-install': 'exit 3' } }),
    );
    expect(out.body.status).toBe('error');
    expect(g.deps.provisioning.plugins(GATEWAY).map((pl) => pl.name)).not.toContain('one-shot');
    expect(fs.existsSync(path.join(g.dataDir, 'gateways', GATEWAY, 'plugins', 'one-shot'))).toBe(false);
  });

  it('should kill a post-install hook that never ends at its timeout', async () => {
    const pidFile = path.join(scratch, 'hung.pid');
    const res = await upload(
      '/ota-update',
      await pluginZip({
        name: 'hung',
        hooks: { 'post-install': `echo $$ > ${pidFile}; sleep 300` },
        timeoutSeconds: 1,
      }),
    );
    await g.deps.zipOps.settled(res.body.update_id);
    const out = await progress(res.body.update_id);
    expect(out.body).toMatchObject({ success: false, status: 'error' });
    expect(out.body.error).toBe('Post-install hook of hung failed: timed out after 1 s');
    const pid = Number(fs.readFileSync(pidFile, 'utf8'));
    expect(() => process.kill(pid, 0)).toThrow();
  });
});

describe('documented refusals', () => {
  it('should answer 400 "No file provided" without an ota_zip_file part', async () => {
    for (const route of ['/ota-configure', '/ota-update'] as const) {
      const res = await upload(route, null);
      expect(res).toEqual({
        status: 400,
        body: { success: false, message: 'No file provided', error: 'VALIDATION_ERROR' },
      });
    }
    const notMultipart = await g.request('POST', '/ota-configure', {
      token: admin,
      body: { ota_zip_file: 'x' },
    });
    expect(notMultipart.status).toBe(400);
    expect(notMultipart.body.message).toBe('No file provided');
  });

  it('should answer 400 "No file selected" for a file part with an empty filename', async () => {
    const browser = await rawMultipart(
      '/ota-update',
      'Content-Disposition: form-data; name="ota_zip_file"; filename=""\r\nContent-Type: application/octet-stream',
    );
    expect(browser).toEqual({
      status: 400,
      body: { success: false, message: 'No file selected', error: 'VALIDATION_ERROR' },
    });
    const bare = await rawMultipart(
      '/ota-configure',
      'Content-Disposition: form-data; name="ota_zip_file"; filename=""',
    );
    expect(bare.body.message).toBe('No file selected');
  });

  it('should answer 400 "Invalid file type" for a PNG renamed .zip, and for a ZIP not named .zip', async () => {
    const png = await upload('/ota-configure', PNG_BYTES, { filename: 'config.zip' });
    expect(png).toEqual({
      status: 400,
      body: {
        success: false,
        message: 'Invalid file type. Please upload a ZIP file',
        error: 'VALIDATION_ERROR',
      },
    });
    const named = await upload('/ota-update', await pluginZip({}), { filename: 'plugin.tar' });
    expect(named.body.message).toBe('Invalid file type. Please upload a ZIP file');
    expect(fs.readdirSync(g.deps.zipOps.uploadDir())).toEqual([]);
  });

  it('should answer 413 for an upload over 64 MiB', async () => {
    const res = await upload('/ota-configure', Buffer.alloc(64 * 1024 * 1024 + 1));
    expect(res.status).toBe(413);
    expect(res.body).toMatchObject({ success: false, error: 'PAYLOAD_TOO_LARGE' });
    expect(fs.readdirSync(g.deps.zipOps.uploadDir())).toEqual([]);
  });

  it('should answer 404 "Update not found" for unknown ids and other gateways\u2019 ids', async () => {
    const unknown = await progress('CFG-000000000000');
    expect(unknown).toEqual({
      status: 404,
      body: { success: false, status: 'not_found', progress: 0, message: 'Update not found' },
    });
    const out = await run('/ota-update', await pluginZip({ name: 'other-gw' }), OTHER_GATEWAY);
    expect(out.body.status).toBe('complete');
    const otherId = g.deps.jobs.recent(OTHER_GATEWAY, 1)[0]!.id;
    expect((await progress(otherId, { gateway: OTHER_GATEWAY })).status).toBe(200);
    expect((await progress(otherId, { gateway: GATEWAY })).status).toBe(404);
  });

  it('should answer 409 to a second operation while one runs', async () => {
    const flag = path.join(scratch, 'release-409');
    const started = terminalLines(GATEWAY, (l) => l.line === 'waiting');
    const first = await upload(
      '/ota-update',
      await pluginZip({
        name: 'slow',
        hooks: { 'post-install': `echo waiting; while [ ! -e ${flag} ]; do sleep 0.05; done` },
        timeoutSeconds: 30,
      }),
    );
    expect(first.status).toBe(200);
    await started.done;

    for (const route of ['/ota-configure', '/ota-update'] as const) {
      const second = await upload(route, (await configurationZip()).zip);
      expect(second.status).toBe(409);
      expect(second.body).toEqual({
        success: false,
        message: `Another operation is in progress: plugin ${first.body.update_id}`,
        error: 'OTA_OPERATION_IN_PROGRESS',
      });
    }
    expect((await progress(first.body.update_id)).body).toMatchObject({
      success: true,
      status: 'in_progress',
      progress: 85,
      message: 'Running post-install hook',
    });

    fs.writeFileSync(flag, '');
    await g.deps.zipOps.settled(first.body.update_id);
    expect((await progress(first.body.update_id)).body.status).toBe('complete');
  });

  it('should answer 401 without a token, 403 below admin, 400 without a gateway', async () => {
    const zip = await pluginZip({});
    expect(await upload('/ota-update', zip, { token: null })).toEqual({
      status: 401,
      body: { success: false, message: 'Authentication required', error: 'AUTH_REQUIRED' },
    });
    expect((await upload('/ota-configure', zip, { token: 'not-a-jwt' })).body.error).toBe(
      'AUTH_INVALID_TOKEN',
    );
    const operator = await g.tokenFor('operator');
    const forbidden = await upload('/ota-update', zip, { token: operator });
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.error).toBe('FORBIDDEN');
    const noGateway = await upload('/ota-configure', zip, { gateway: null });
    expect(noGateway.status).toBe(400);
    expect(noGateway.body.error).toBe('GATEWAY_REQUIRED');
    const anon = await reply(
      await fetch(`${g.url}/ota-update-progress/CFG-1`, { headers: { 'x-gateway-id': GATEWAY } }),
    );
    expect(anon.status).toBe(401);
    // A viewer may follow progress.
    const viewer = await g.tokenFor('viewer');
    expect((await progress('CFG-000000000000', { token: viewer })).status).toBe(404);
  });

  it('should accept the session cookie from this origin and refuse it cross-origin', async () => {
    const zip = await pluginZip({ name: 'cookie-plugin' });
    const host = new URL(g.url).host;
    const cross = await upload('/ota-update', zip, {
      token: null,
      headers: { cookie: `session_token=${admin}`, origin: 'https://evil.example' },
    });
    expect(cross.status).toBe(403);
    expect(cross.body.error).toBe('CSRF_REJECTED');
    const same = await upload('/ota-update', zip, {
      token: null,
      headers: { cookie: `session_token=${admin}`, origin: `http://${host}` },
    });
    expect(same.status).toBe(200);
    await g.deps.zipOps.settled(same.body.update_id);
  });
});

describe('terminal output on /ota-update', () => {
  const hookZip = () =>
    pluginZip({
      name: 'chatty',
      hooks: { 'post-install': 'echo "hello from hook"; echo "warning: low disk" >&2' },
    });

  function connectSocketIo(token: string, gatewayId: string): Promise<Socket> {
    const socket = ioClient(`${g.url}/ota-update`, {
      auth: { token, gateway_id: gatewayId },
      reconnection: false,
    });
    return new Promise((resolve, reject) => {
      socket.once('connect', () => resolve(socket));
      socket.once('connect_error', (err) => {
        socket.close();
        reject(err);
      });
    });
  }

  it('should stream steps and hook lines to a stock socket.io-client, only for its gateway', async () => {
    const socket = await connectSocketIo(admin, GATEWAY);
    const other = await connectSocketIo(admin, OTHER_GATEWAY);
    const otherLines: TerminalOutput[] = [];
    other.on('terminal_output', (l: TerminalOutput) => otherLines.push(l));
    const lines: TerminalOutput[] = [];
    const finished = new Promise<void>((resolve) => {
      socket.on('terminal_output', (l: TerminalOutput) => {
        lines.push(l);
        if (l.line === 'Operation completed successfully') resolve();
      });
    });
    const res = await upload('/ota-update', await hookZip());
    await finished;
    const id = res.body.update_id;
    expect(
      lines.every((l) => l.update_id === id && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(l.timestamp)),
    ).toBe(true);
    expect(lines.map((l) => [l.stream, l.line])).toEqual(
      expect.arrayContaining([
        ['system', 'Extracting ZIP archive'],
        ['system', 'Validating plugin'],
        ['system', 'Installing plugin'],
        ['system', 'Running post-install hook'],
        ['stdout', 'hello from hook'],
        ['stderr', 'warning: low disk'],
        ['system', 'Operation completed successfully'],
      ]),
    );
    expect(otherLines).toEqual([]);
    socket.close();
    other.close();
  });

  it('should work over the websocket transport alone (the /socket.io/ upgrade is routed)', async () => {
    const socket = ioClient(`${g.url}/ota-update`, {
      auth: { token: admin, gateway_id: GATEWAY },
      transports: ['websocket'],
      reconnection: false,
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    });
    expect(socket.io.engine.transport.name).toBe('websocket');
    socket.close();
  });

  it('should refuse a socket.io connection without a valid token or to another gateway', async () => {
    await expect(connectSocketIo('', GATEWAY)).rejects.toThrow('Authentication required');
    await expect(connectSocketIo('bad', GATEWAY)).rejects.toThrow('Invalid session token');
    const restricted = await g.tokenFor('viewer', [OTHER_GATEWAY]);
    await expect(connectSocketIo(restricted, GATEWAY)).rejects.toThrow(/Not allowed/);
  });

  it('should stream the same lines to a plain WebSocket after the auth message', async () => {
    const ws = new WebSocket(`${g.url.replace('http', 'ws')}/ota-update`);
    const messages: Array<Record<string, string>> = [];
    const authOk = new Promise<void>((resolve, reject) => {
      ws.on('error', reject);
      ws.on('message', (raw) => {
        const msg = JSON.parse(String(raw));
        messages.push(msg);
        if (msg.type === 'auth_ok') resolve();
      });
    });
    await new Promise((resolve) => ws.once('open', resolve));
    ws.send(JSON.stringify({ type: 'auth', token: admin, gateway_id: GATEWAY }));
    await authOk;
    const finished = new Promise<void>((resolve) =>
      ws.on('message', (raw) => {
        if (JSON.parse(String(raw)).line === 'Operation completed successfully') resolve();
      }),
    );
    const res = await upload('/ota-update', await hookZip());
    await finished;
    expect(messages[0]).toMatchObject({ type: 'auth_ok', gateway_id: GATEWAY });
    expect(messages).toContainEqual(
      expect.objectContaining({
        type: 'terminal_output',
        update_id: res.body.update_id,
        stream: 'stdout',
        line: 'hello from hook',
      }),
    );
    ws.close();
  });

  it('should stop streaming to a session revoked by logout (ws closes 4401, socket.io disconnects)', async () => {
    await g.deps.users.create({
      username: 'term-leaver',
      password: 'password-123',
      role: 'viewer',
      gateways: ['*'],
    });
    const token = await g.login('term-leaver', 'password-123');
    const socket = await connectSocketIo(token, GATEWAY);
    const socketLines: TerminalOutput[] = [];
    socket.on('terminal_output', (l: TerminalOutput) => socketLines.push(l));
    const socketGone = new Promise<string>((resolve) =>
      socket.once('disconnect', (reason) => resolve(reason)),
    );

    const ws = new WebSocket(`${g.url.replace('http', 'ws')}/ota-update`);
    const wsLines: unknown[] = [];
    const wsClosed = new Promise<[number, string]>((resolve) =>
      ws.once('close', (code, reason) => resolve([code, String(reason)])),
    );
    const authOk = new Promise<void>((resolve) =>
      ws.on('message', (raw) => {
        const msg = JSON.parse(String(raw));
        if (msg.type === 'auth_ok') resolve();
        else wsLines.push(msg);
      }),
    );
    await new Promise((resolve) => ws.once('open', resolve));
    ws.send(JSON.stringify({ type: 'auth', token, gateway_id: GATEWAY }));
    await authOk;

    expect((await g.request('POST', '/api/v1/auth/logout', { token, gateway: null })).status).toBe(200);
    await run('/ota-update', await pluginZip({ name: 'after-logout' }));
    expect(await wsClosed).toEqual([4401, 'AUTH_INVALID_TOKEN']);
    expect(await socketGone).toBe('io server disconnect');
    expect(wsLines).toEqual([]);
    expect(socketLines).toEqual([]);
  });

  it('should close a plain WebSocket with 4401 on a bad token', async () => {
    const ws = new WebSocket(`${g.url.replace('http', 'ws')}/ota-update`);
    await new Promise((resolve) => ws.once('open', resolve));
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    ws.send(JSON.stringify({ type: 'auth', token: 'nope', gateway_id: GATEWAY }));
    expect(await closed).toBe(4401);
  });
});

describe('API reference', () => {
  it('should document the three ZIP routes in the OpenAPI document', async () => {
    const doc = await g.request('GET', '/api/v1/openapi.json', { gateway: null });
    expect(Object.keys(doc.body.paths)).toEqual(
      expect.arrayContaining(['/ota-configure', '/ota-update', '/ota-update-progress/{update_id}']),
    );
    expect(
      doc.body.paths['/ota-update'].post.requestBody.content['multipart/form-data'].schema.required,
    ).toEqual(['ota_zip_file']);
  });
});

describe('provisioning API', () => {
  it('should trust *.pem in <dataDir>/trusted-keys as a development fallback', () => {
    const key = ed25519Pair();
    const dir = path.join(g.dataDir, 'trusted-keys');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'dev.pem'), key.publicPem);
    fs.writeFileSync(path.join(dir, 'junk.pem'), 'not a key');
    const der = key.publicKey.export({ type: 'spki', format: 'der' }).toString('hex');
    const trusted = g.deps.provisioning
      .trustedKeys(OTHER_GATEWAY)
      .map((k) => k.export({ type: 'spki', format: 'der' }).toString('hex'));
    expect(trusted).toEqual([der]);
    fs.rmSync(dir, { recursive: true });
  });

  it('should drop configuration and plugins on reset', async () => {
    const out = await run('/ota-configure', (await configurationZip()).zip, OTHER_GATEWAY);
    expect(out.body.status).toBe('complete');
    expect(g.deps.provisioning.configurationVersion(OTHER_GATEWAY)).not.toBeNull();
    g.deps.provisioning.reset(OTHER_GATEWAY);
    expect(g.deps.provisioning.configurationVersion(OTHER_GATEWAY)).toBeNull();
    expect(g.deps.provisioning.feed(OTHER_GATEWAY)).toBeNull();
    expect(g.deps.provisioning.plugins(OTHER_GATEWAY)).toEqual([]);
  });
});
