import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { envelope, type RestMeta } from '../../api/meta.js';
import { adminProcedure, operatorProcedure, router, viewerProcedure } from '../../api/trpc.js';
import { buildOpenApi } from '../../rest-compat/openapi.js';
import { restRouteTable, type RestRoute } from '../../rest-compat/table.js';

/**
 * The REST routes are generated from the procedures' metadata: the table must hold exactly the
 * routes of the two spec documents (read here, at test time) plus Gantry's named additions, and the
 * OpenAPI document exactly the table.
 */

/** Where the two documents live beside the checkout (/work/shared/spec); GANTRY_SPEC_DIR overrides. */
const SPEC_DIR =
  process.env.GANTRY_SPEC_DIR ?? fileURLToPath(new URL('../../../shared/spec/', import.meta.url));
const SYSTEM_SPEC = path.join(SPEC_DIR, 'gateway-ota-system-api.rst');
const ZIP_SPEC = path.join(SPEC_DIR, 'ota-zip-updates.md');
const specPresent = fs.existsSync(SYSTEM_SPEC) && fs.existsSync(ZIP_SPEC);

/** `.. http:get:: /api/v1/ota/status` lines of the reStructuredText spec. */
function parseSystemApi(rst: string): string[] {
  return [...rst.matchAll(/^\.\. http:(get|post):: (\/api\/\S+)$/gm)].map(
    ([, method, path]) => `${method!.toUpperCase()} ${path}`,
  );
}

/** `**Endpoint:** \`GET /ota-update-progress/<update_id>\`` lines of the Markdown spec. */
function parseZipApi(md: string): string[] {
  return [...md.matchAll(/\*\*Endpoint:\*\* `(GET|POST) (\/\S+)`/g)].map(
    ([, method, path]) => `${method} ${path!.replace(/<(\w+)>/g, ':$1')}`,
  );
}

/**
 * The routes of the two documents, as of this writing: what the table is checked against when the
 * spec files are not beside the checkout (and checked against the files when they are).
 */
const SYSTEM_API = [
  'GET /api/v1/ota/status',
  'POST /api/v1/ota/snapshot',
  'POST /api/v1/ota/debug-bundle',
  'GET /api/v1/ota/updates',
  'POST /api/v1/ota/check-updates',
  'POST /api/v1/ota/auto-update',
  'POST /api/v1/ota/download',
  'POST /api/v1/ota/upload/verify',
  'POST /api/v1/ota/upload/deploy',
  'GET /api/v1/ota/settings',
  'POST /api/v1/ota/settings',
  'POST /api/v1/ota/recovery/rollback',
  'POST /api/v1/ota/recovery/restore',
  'POST /api/v1/ota/recovery/factory',
  'POST /api/v1/ota/recovery/upload',
  'GET /api/v1/ota/safety',
  'POST /api/v1/ota/safety/override',
  'GET /api/v1/ota/progress',
  'POST /api/v1/ota/install',
  'GET /api/v1/ota/logs',
  'GET /api/v1/ota/monitor',
  'POST /api/v1/ota/cancel',
];
const ZIP_API = ['POST /ota-configure', 'POST /ota-update', 'GET /ota-update-progress/:update_id'];

/** Routes no spec lists, each a decision written down in the README. */
const GANTRY_ADDITIONS = [
  'POST /api/v1/auth/login',
  'POST /api/v1/auth/logout',
  'GET /api/v1/ota/snapshots',
  // The spec names it only as POST /debug-bundle's `download_url`.
  'GET /api/v1/ota/debug/download/:file',
  'POST /api/v1/dev/simulator/sensors',
  'POST /api/v1/dev/simulator/boot-failures',
  'POST /api/v1/dev/simulator/self-test',
  'POST /api/v1/dev/simulator/ignored-reboots',
  'POST /api/v1/dev/simulator/slot-writes',
  'POST /api/v1/dev/simulator/reboot',
];

const key = (route: RestRoute) => `${route.rest.method.toUpperCase()} ${route.rest.path}`;

describe('REST route table', () => {
  const table = restRouteTable();

  it.skipIf(!specPresent)('should list the routes the spec files list, no more, no fewer', () => {
    expect(parseSystemApi(fs.readFileSync(SYSTEM_SPEC, 'utf8'))).toEqual(SYSTEM_API);
    expect(parseZipApi(fs.readFileSync(ZIP_SPEC, 'utf8'))).toEqual(ZIP_API);
  });

  it('should hold exactly the routes of gateway-ota-system-api.rst, ota-zip-updates.md and the additions', () => {
    expect(table.map(key).sort()).toEqual([...SYSTEM_API, ...ZIP_API, ...GANTRY_ADDITIONS].sort());
  });

  it('should say which spec each route comes from, and name none for the additions', () => {
    const bySpec = (spec: RestMeta['spec']) =>
      table
        .filter((r) => r.rest.spec === spec)
        .map(key)
        .sort();
    expect(bySpec('gateway-ota-system-api')).toEqual([...SYSTEM_API].sort());
    expect(bySpec('ota-zip-updates')).toEqual([...ZIP_API].sort());
    expect(bySpec(undefined)).toEqual([...GANTRY_ADDITIONS].sort());
  });

  it.skipIf(!specPresent)('should match the download_url the spec gives as an example', () => {
    const example = /"download_url": "([^"]+)"/.exec(fs.readFileSync(SYSTEM_SPEC, 'utf8'))?.[1];
    const route = table.find((r) => r.rest.reply.kind === 'file')!;
    expect(example).toBeDefined();
    expect(example).toMatch(new RegExp(`^${route.rest.path.replace(/:\w+/g, '[^/]+')}$`));
  });

  it('should take role and gateway from the builders: admin-only recovery, any role reading status', () => {
    const byKey = new Map(table.map((r) => [key(r), r]));
    expect(byKey.get('POST /api/v1/ota/recovery/factory')?.access).toEqual({ role: 'admin', gateway: true });
    expect(byKey.get('POST /api/v1/ota/install')?.access).toEqual({ role: 'operator', gateway: true });
    expect(byKey.get('GET /api/v1/ota/status')?.access).toEqual({ role: 'viewer', gateway: true });
    expect(byKey.get('POST /api/v1/auth/logout')?.access).toEqual({ role: 'viewer', gateway: false });
    expect(byKey.get('POST /api/v1/auth/login')?.access).toEqual({ role: null, gateway: false });
  });
});

describe('OpenAPI document', () => {
  const table = restRouteTable();
  const doc = buildOpenApi(table) as {
    paths: Record<string, Record<string, Record<string, unknown>>>;
  };

  it('should list exactly the routes of the table', () => {
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops).map((method) => `${method} ${path}`),
    );
    expect(documented.sort()).toEqual(table.map((r) => `${r.rest.method} ${r.openApiPath}`).sort());
  });

  it('should document each route with the role and gateway header its procedure enforces', () => {
    for (const route of table) {
      const op = doc.paths[route.openApiPath]![route.rest.method]!;
      const where = key(route);
      expect(op['x-gantry-role'], where).toBe(route.access.role);
      expect(op.description, where).toMatch(
        route.access.role ? new RegExp(`^Requires role: ${route.access.role}\\.`) : /^Public\./,
      );
      const params = op.parameters as { name: string; in: string }[];
      expect(
        params.some((p) => p.name === 'X-Gateway-ID' && p.in === 'header'),
        where,
      ).toBe(route.access.gateway);
    }
  });

  it('should take bodies, query parameters and forms from the procedures’ own schemas', () => {
    const op = (path: string, method: string) => doc.paths[path]![method]!;
    const settings = op('/api/v1/ota/settings', 'post').requestBody as {
      content: Record<string, { schema: { properties: Record<string, unknown> } }>;
    };
    expect(Object.keys(settings.content['application/json']!.schema.properties)).toContain(
      'maintenance_window',
    );
    const logs = op('/api/v1/ota/logs', 'get').parameters as { name: string; in: string }[];
    expect(logs.filter((p) => p.in === 'query').map((p) => p.name)).toEqual(
      expect.arrayContaining(['limit', 'level']),
    );
    const progress = op('/ota-update-progress/{update_id}', 'get').parameters as {
      name: string;
      in: string;
    }[];
    expect(progress).toContainEqual(expect.objectContaining({ name: 'update_id', in: 'path' }));
    expect(progress.some((p) => p.in === 'query')).toBe(false);
    const zip = op('/ota-update', 'post').requestBody as {
      content: Record<string, { schema: { required: string[] } }>;
    };
    expect(zip.content['multipart/form-data']!.schema.required).toEqual(['ota_zip_file']);
    const responses = op('/ota-update', 'post').responses as Record<string, { description: string }>;
    expect(responses['413']!.description).toMatch(/64 MiB/);
  });
});

describe('REST metadata checks', () => {
  const base = {
    tag: 'Test',
    summary: 'test route',
    reply: envelope('ok'),
  } as const;

  it('should refuse a route declared twice', () => {
    const meta: RestMeta = { ...base, method: 'get', path: '/t' };
    const r = router({
      a: viewerProcedure.meta({ rest: meta }).query(() => 1),
      b: viewerProcedure.meta({ rest: meta }).query(() => 2),
    });
    expect(() => restRouteTable(r)).toThrow(/GET \/t is declared twice/);
  });

  it('should refuse a GET that runs a mutation, and a POST that runs a query', () => {
    const get = router({
      a: viewerProcedure.meta({ rest: { ...base, method: 'get', path: '/t' } }).mutation(() => 1),
    });
    expect(() => restRouteTable(get)).toThrow(/needs a query/);
    const post = router({
      a: viewerProcedure.meta({ rest: { ...base, method: 'post', path: '/t' } }).query(() => 1),
    });
    expect(() => restRouteTable(post)).toThrow(/needs a mutation/);
  });

  it('should refuse a path parameter the input does not take', () => {
    const r = router({
      a: viewerProcedure
        .meta({ rest: { ...base, method: 'get', path: '/t/:id' } })
        .input(z.object({ other: z.string() }))
        .query(() => 1),
    });
    expect(() => restRouteTable(r)).toThrow(/fills id, not an input field/);
  });

  it('should refuse an upload authorized by a procedure with other access rules', () => {
    const upload = (authorize: string): RestMeta => ({
      ...base,
      method: 'post',
      path: '/t',
      upload: { form: z.object({ file: z.string() }), file: 'file', authorize, target: 'bundle' },
    });
    const r = router({
      authorize: operatorProcedure.query(() => true),
      store: adminProcedure
        .meta({ rest: upload('authorize') })
        .input(z.object({ path: z.string() }))
        .mutation(() => 1),
    });
    expect(() => restRouteTable(r)).toThrow(/authorized by a query with the same access/);
    const same = router({
      authorize: adminProcedure.query(() => true),
      store: adminProcedure
        .meta({ rest: upload('authorize') })
        .input(z.object({ path: z.string() }))
        .mutation(() => 1),
    });
    expect(restRouteTable(same).map((r) => r.procedure)).toEqual(['store']);
  });
});
