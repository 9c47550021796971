import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { incomingUploadDir } from '../../services/updates/uploads.js';
import { GATEWAY, startTestGantry, type TestGantry } from '../helpers/gantry.js';
import { waitFor } from '../helpers/wait.js';

/**
 * What the reference promises, checked against what the server enforces, route by route, for
 * every route the served OpenAPI document lists: the role it names (x-gantry-role) is the least
 * role that gets through, and the gateway header it names is required. Then the one multipart
 * reader: the four upload routes refuse the same bad forms the same way.
 */

const ROLES = ['viewer', 'operator', 'admin'] as const;
type Role = (typeof ROLES)[number];
const MAX_UPLOAD = 64 * 1024;

interface Operation {
  'x-gantry-role': Role | null;
  parameters: { name: string; in: string }[];
  requestBody?: { content: Record<string, { schema: { properties: Record<string, { format?: string }> } }> };
}
interface Route {
  method: string;
  path: string;
  op: Operation;
}

/** A refusal in either documented shape: the envelope's `error.code`, or the ZIP routes' `error`. */
function refusal(path: string, body: unknown): { code: string; message: string } {
  if (path.startsWith('/api/')) {
    expect(body).toMatchObject({
      success: false,
      error: { code: expect.any(String), message: expect.any(String) },
    });
    const b = body as { error: { code: string }; message: string };
    return { code: b.error.code, message: b.message };
  }
  const b0 = body as { status?: string; message: string };
  // GET /ota-update-progress answers an unknown id in its progress shape, as documented.
  if (b0.status === 'not_found') return { code: 'NOT_FOUND', message: b0.message };
  expect(Object.keys(body as object).sort()).toEqual(['error', 'message', 'success']);
  const b = body as { error: string; message: string };
  return { code: b.error, message: b.message };
}

describe('REST access rules, as documented', () => {
  let g: TestGantry;
  let routes: Route[];
  const tokens = {} as Record<Role, string>;

  beforeAll(async () => {
    g = await startTestGantry({ env: { GANTRY_MAX_UPLOAD_BYTES: String(MAX_UPLOAD) } });
    for (const role of ROLES) tokens[role] = await g.tokenFor(role);
    const doc = await g.request('GET', '/api/v1/openapi.json', { gateway: null });
    routes = Object.entries(doc.body.paths as Record<string, Record<string, Operation>>).flatMap(
      ([path, ops]) => Object.entries(ops).map(([method, op]) => ({ method, path, op })),
    );
  });
  afterAll(() => g.stop());

  /**
   * A request that gets through the access checks but stops at the input (a JSON array where an
   * object or a form is expected; an id that does not exist), so no route does anything for real.
   * A POST taking no input at all (logout) does run: it gets a user of its own.
   */
  async function call(route: Route, opts: { token?: string; gateway?: boolean }) {
    const path = route.path.replace(/\{\w+\}/g, 'no-such-id');
    const body = route.method === 'post' ? [] : undefined;
    return g.request(route.method.toUpperCase(), path, {
      token: opts.token,
      gateway: opts.gateway === false ? null : GATEWAY,
      ...(route.op.requestBody || body === undefined ? { body } : {}),
    });
  }

  it('should document a role for every route but login, and require the gateway header on /api/v1/ota', () => {
    expect(routes.length).toBeGreaterThan(25);
    for (const { method, path, op } of routes) {
      expect(op['x-gantry-role'] === null, `${method} ${path}`).toBe(path === '/api/v1/auth/login');
      const gateway = op.parameters.some((p) => p.name === 'X-Gateway-ID' && p.in === 'header');
      expect(gateway, `${method} ${path}`).toBe(!path.startsWith('/api/v1/auth/'));
    }
  });

  it('should refuse every role below the documented one, and let the documented one through', async () => {
    for (const route of routes) {
      const where = `${route.method.toUpperCase()} ${route.path}`;
      const role = route.op['x-gantry-role'];
      const anonymous = await call(route, {});
      if (role === null) {
        expect(anonymous.status, where).not.toBe(401);
        continue;
      }
      expect(anonymous.status, where).toBe(401);
      expect(refusal(route.path, anonymous.body).code, where).toBe('AUTH_REQUIRED');
      for (const lower of ROLES.slice(0, ROLES.indexOf(role))) {
        const res = await call(route, { token: tokens[lower] });
        expect(res.status, `${where} as ${lower}`).toBe(403);
        expect(refusal(route.path, res.body).code, `${where} as ${lower}`).toBe('FORBIDDEN');
      }
      const runsForReal = route.method === 'post' && !route.op.requestBody;
      const res = await call(route, { token: runsForReal ? await g.tokenFor(role) : tokens[role] });
      expect([200, 400, 404], `${where} as ${role}: ${JSON.stringify(res.body)}`).toContain(res.status);
      if (res.status !== 200) {
        expect(refusal(route.path, res.body).code, where).toMatch(/^(VALIDATION_ERROR|NOT_FOUND)$/);
      }
    }
  });

  it('should require X-Gateway-ID exactly where the document names it', async () => {
    for (const route of routes) {
      const where = `${route.method.toUpperCase()} ${route.path}`;
      const documented = route.op.parameters.some((p) => p.name === 'X-Gateway-ID');
      const runsForReal = route.method === 'post' && !route.op.requestBody;
      const res = await call(route, {
        token: runsForReal ? await g.tokenFor('admin') : tokens.admin,
        gateway: false,
      });
      if (documented) {
        expect(res.status, where).toBe(400);
        expect(refusal(route.path, res.body).code, where).toBe('GATEWAY_REQUIRED');
      } else if (res.status !== 200) {
        expect(refusal(route.path, res.body).code, where).not.toBe('GATEWAY_REQUIRED');
      }
    }
  });

  describe('multipart uploads', () => {
    const uploads = () =>
      routes
        .filter((r) => r.op.requestBody?.content['multipart/form-data'])
        .map((r) => {
          const { properties } = r.op.requestBody!.content['multipart/form-data']!.schema;
          const field = Object.keys(properties).find((name) => properties[name]!.format === 'binary')!;
          return { path: r.path, field };
        });

    const leftovers = () =>
      [incomingUploadDir(g.deps.gateways, GATEWAY), g.deps.zipOps.uploadDir()].flatMap((dir) =>
        fs.existsSync(dir)
          ? fs.readdirSync(dir).filter((name) => !fs.statSync(`${dir}/${name}`).isDirectory())
          : [],
      );

    /** Hand-built multipart (Node's FormData never sends an empty filename or a cut body). */
    async function send(path: string, body: Buffer) {
      const res = await fetch(g.url + path, {
        method: 'POST',
        body: new Uint8Array(body),
        headers: {
          authorization: `Bearer ${tokens.admin}`,
          'x-gateway-id': GATEWAY,
          'content-type': 'multipart/form-data; boundary=gantry-form-boundary',
        },
      });
      return { status: res.status, body: (await res.json()) as unknown };
    }

    const part = (headers: string, content: string | Buffer) =>
      Buffer.concat([
        Buffer.from(`--gantry-form-boundary\r\n${headers}\r\n\r\n`),
        Buffer.from(content),
        Buffer.from('\r\n'),
      ]);
    const file = (field: string, name: string, content: string | Buffer) =>
      part(
        `Content-Disposition: form-data; name="${field}"; filename="${name}"\r\nContent-Type: application/octet-stream`,
        content,
      );
    const END = Buffer.from('--gantry-form-boundary--\r\n');

    it('should be the four routes of the two documents', () => {
      expect(
        uploads()
          .map((u) => u.path)
          .sort(),
      ).toEqual([
        '/api/v1/ota/recovery/upload',
        '/api/v1/ota/upload/verify',
        '/ota-configure',
        '/ota-update',
      ]);
    });

    it.each([
      [
        'no file part',
        () => Buffer.concat([part('Content-Disposition: form-data; name="note"', 'x'), END]),
        400,
        'No file provided',
      ],
      [
        'a file in another field',
        () => Buffer.concat([file('other', 'a.bin', 'x'), END]),
        400,
        'No file provided',
      ],
      [
        'an empty filename (a browser’s file input with nothing chosen)',
        (field: string) => Buffer.concat([file(field, '', ''), END]),
        400,
        'No file selected',
      ],
      [
        'two files in the field',
        (field: string) =>
          Buffer.concat([file(field, 'a.bin', 'first'), file(field, 'b.bin', 'second'), END]),
        400,
        /^Only one file may be sent in /,
      ],
      [
        'a body cut before its end',
        (field: string) => file(field, 'a.bin', 'partial'),
        400,
        /^Invalid multipart body: /,
      ],
      [
        'a file over the limit',
        (field: string) => Buffer.concat([file(field, 'big.bin', Buffer.alloc(MAX_UPLOAD + 1)), END]),
        413,
        `File too large: at most ${MAX_UPLOAD} bytes`,
      ],
    ] as const)(
      'should refuse %s the same way on each route, keeping nothing',
      async (_what, body, status, message) => {
        for (const { path, field } of uploads()) {
          // The ZIP routes' own limit is 64 MiB; the other cases are the same on all four.
          if (status === 413 && !path.startsWith('/api/')) continue;
          const res = await send(path, body(field));
          expect(res.status, `${path}: ${JSON.stringify(res.body)}`).toBe(status);
          const { code, message: said } = refusal(path, res.body);
          expect(code, path).toBe(status === 413 ? 'PAYLOAD_TOO_LARGE' : 'VALIDATION_ERROR');
          if (typeof message === 'string') expect(said, path).toBe(message);
          else expect(said, path).toMatch(message);
        }
        await waitFor(leftovers, (files) => files.length === 0, 'refused uploads removed');
      },
    );

    it('should answer a JSON body to an upload route with "No file provided"', async () => {
      for (const { path } of uploads()) {
        const res = await g.request('POST', path, { token: tokens.admin, body: { file: 'x' } });
        expect(res.status, path).toBe(400);
        expect(refusal(path, res.body)).toEqual({ code: 'VALIDATION_ERROR', message: 'No file provided' });
      }
    });
  });
});
