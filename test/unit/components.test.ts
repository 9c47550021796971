import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import tar from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { describeIssues, ManifestSchema, type Component, type Manifest } from '../../bundle/manifest.js';
import { runCli, type CliIo } from '../../cli/bundle.js';
import { inspectBundle } from '../../bundle/stream.js';
import {
  ComponentBook,
  FileHandler,
  REBOOT_ATTEMPTS,
  rebootForActivation,
  type HandlerStep,
  type RebootPort,
} from '../../services/components/handlers.js';
import { checkPlan, orderedComponents } from '../../services/components/plan.js';
import { ComponentStateStore } from '../../services/components/state.js';
import type { GatewayRuntime } from '../../services/gateways.js';
import { makeTempDir } from '../helpers/temp.js';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

function manifest(components: unknown[], payloads?: Array<{ name: string; kind: string }>): unknown {
  return {
    format: 'gantry-bundle-v1',
    version: 'v5.1.0',
    type: 'feature',
    severity: 'medium',
    compatible: ['Univa-GW-Pro'],
    kernel: '6.1.40-LTS',
    released: '2025-03-15',
    description: '',
    changelog: [],
    payloads: (
      payloads ?? [
        { name: 'rootfs.img', kind: 'rootfs' },
        { name: 'app.img', kind: 'app' },
      ]
    ).map((p) => ({ ...p, size: 1, sha256: 'a'.repeat(64) })),
    key_id: 'b'.repeat(16),
    components,
  };
}

const rootfs = {
  name: 'rootfs',
  version: 'v5.1.0',
  handler: 'ab-slot',
  target: 'rootfs',
  payloads: ['rootfs.img'],
  needs_reboot: true,
};
const app = { name: 'app', version: 'v2.0.0', handler: 'ab-slot', target: 'app', payloads: ['app.img'] };

function issues(value: unknown): string {
  const parsed = ManifestSchema.safeParse(value);
  return parsed.success ? '' : describeIssues(parsed.error);
}

describe('manifest components', () => {
  it('should accept components with their defaults, and a bundle without them as before', () => {
    const parsed = ManifestSchema.parse(manifest([rootfs, { ...app, order: 2 }]));
    expect(parsed.components?.[1]).toMatchObject({ order: 2, needs_reboot: false, requires: [] });
    const { components: _none, ...single } = manifest([]) as { components: unknown };
    expect(
      ManifestSchema.parse({
        ...single,
        payloads: [{ name: 'rootfs.img', kind: 'rootfs', size: 1, sha256: 'a'.repeat(64) }],
      }).components,
    ).toBeUndefined();
  });

  it('should refuse components that do not fit together, naming the field', () => {
    expect(issues(manifest([rootfs, rootfs, app]))).toContain(
      'components.1.name: duplicate component rootfs',
    );
    expect(issues(manifest([rootfs]))).toContain('payload app.img belongs to no component');
    expect(issues(manifest([rootfs, { ...app, payloads: ['nope.img'] }]))).toContain(
      'no payload named nope.img',
    );
    expect(issues(manifest([{ ...rootfs, version: 'v5.0.0' }, app]))).toContain(
      "the rootfs component is the bundle's version",
    );
    expect(issues(manifest([{ ...rootfs, needs_reboot: false }, app]))).toContain('always needs a reboot');
    expect(issues(manifest([rootfs, { ...app, payloads: ['rootfs.img'] }]))).toContain('is a rootfs image');
    expect(
      issues(manifest([rootfs, { ...app, requires: [{ component: 'app', min_version: 'v1.0.0' }] }])),
    ).toContain('cannot require itself');
    expect(issues(manifest([rootfs, { ...app, requires: [{ component: 'rootfs' }] }]))).toContain(
      'needs min_version or below_version',
    );
    expect(issues(manifest([rootfs, { ...app, handler: 'docker' }]))).toContain('components.1.handler');
    expect(issues(manifest([rootfs, { ...app, target: '../etc' }]))).toContain('components.1.target');
  });
});

describe('the bundle check before a byte is written', () => {
  const plc = { ...app, name: 'plc', handler: 'plugin', target: 'plc-fw', payloads: ['plc.bin'] };
  const m = (components: unknown[]) =>
    ManifestSchema.parse(
      manifest(components, [
        { name: 'rootfs.img', kind: 'rootfs' },
        { name: 'app.img', kind: 'app' },
        { name: 'plc.bin', kind: 'firmware' },
      ]),
    ) as Manifest;
  const ctx = {
    installed: { rootfs: 'v5.0.4', app: 'v1.0.0', plc: 'v1.0.0' },
    floors: { app: 'v1.0.0' },
    allowDowngrade: false,
    targetProblem: () => null,
  };

  it('should install in order, ties in manifest order', () => {
    const list = orderedComponents(
      m([
        { ...plc, order: 1 },
        { ...app, order: 1 },
        { ...rootfs, order: 0 },
      ]),
    );
    expect(list.map((c) => c.name)).toEqual(['rootfs', 'plc', 'app']);
  });

  it('should refuse an order in which a step leaves a committed component without what it needs', () => {
    const needsRootfs = { ...app, order: 0, requires: [{ component: 'rootfs', min_version: 'v5.1.0' }] };
    expect(() => checkPlan(m([{ ...rootfs, order: 1 }, needsRootfs, { ...plc, order: 2 }]), ctx)).toThrow(
      'app v2.0.0 needs rootfs >= v5.1.0, has v5.0.4 after app is installed',
    );
    // The same with rootfs first is fine.
    expect(() =>
      checkPlan(
        m([
          { ...rootfs, order: 0 },
          { ...needsRootfs, order: 1 },
          { ...plc, order: 2 },
        ]),
        ctx,
      ),
    ).not.toThrow();
    // A later component breaking an earlier one's upper bound is refused too.
    const below = { ...plc, order: 1, requires: [{ component: 'app', below_version: 'v2.0.0' }] };
    expect(() => checkPlan(m([rootfs, below, { ...app, order: 2 }]), ctx)).toThrow(
      'plc v2.0.0 needs app < v2.0.0, has v2.0.0 after app is installed',
    );
  });

  it('should refuse a downgrade below a component floor, a missing target and a bundle without rootfs', () => {
    expect(() => checkPlan(m([rootfs, { ...app, version: 'v0.9.0' }, plc]), ctx)).toThrow(
      'app: downgrade refused (v0.9.0 is below v1.0.0)',
    );
    expect(() =>
      checkPlan(m([rootfs, app, plc]), {
        ...ctx,
        targetProblem: (c: Component) => (c.name === 'plc' ? 'plugin plc-fw is not installed' : null),
      }),
    ).toThrow('plc: plugin plc-fw is not installed');
    const noRootfs = ManifestSchema.parse(manifest([app], [{ name: 'app.img', kind: 'app' }])) as Manifest;
    expect(() => checkPlan(noRootfs, ctx)).toThrow('must carry its rootfs component');
  });
});

describe('the file handler', () => {
  async function tarOf(files: Record<string, string>): Promise<Buffer> {
    const pack = tar.pack();
    for (const [name, body] of Object.entries(files)) pack.entry({ name }, body);
    pack.finalize();
    const chunks: Buffer[] = [];
    for await (const c of pack) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  it('should place files atomically, keep the previous release and put it back on rollback', async () => {
    const dir = makeTempDir('gantry-file-handler-');
    const store = new ComponentStateStore(() => dir);
    const book = new ComponentBook(store);
    const reboots = { reboot: async () => undefined, notRebooted: () => undefined };
    const handler = new FileHandler(book, () => path.join(dir, 'components'), reboots);
    const gw = { id: 'GW-1' } as GatewayRuntime;
    const step = async (
      version: string,
      jobId: string,
      files: Record<string, string>,
    ): Promise<HandlerStep> => {
      const body = await tarOf(files);
      const file = path.join(dir, `${jobId}.tar`);
      fs.writeFileSync(file, body);
      return {
        gw,
        jobId,
        component: {
          name: 'config',
          version,
          handler: 'file',
          target: 'crane-config',
          payloads: ['cfg.tar'],
          order: 0,
          needs_reboot: false,
          requires: [],
        },
        payloads: [
          { payload: { name: 'cfg.tar', kind: 'files', size: body.length, sha256: sha(body) }, file },
        ],
        strategy: 'rolling',
        resumed: false,
        now: 1,
      };
    };
    const current = path.join(dir, 'components', 'files', 'crane-config', 'current');

    const v1 = await step('v1.0.0', 'J1', { 'limits.json': '{"max_load":10}', 'zones/a.json': 'A' });
    for (const verb of ['install', 'activate', 'check', 'commit'] as const) await handler[verb](v1);
    expect(fs.readFileSync(path.join(current, 'limits.json'), 'utf8')).toBe('{"max_load":10}');
    expect(store.get('GW-1', 'config')).toMatchObject({ version: 'v1.0.0', floor: 'v1.0.0', pending: null });

    const v2 = await step('v2.0.0', 'J2', { 'limits.json': '{"max_load":12}' });
    await handler.install(v2);
    // Installed but not active: the application still reads v1.
    expect(fs.readFileSync(path.join(current, 'limits.json'), 'utf8')).toBe('{"max_load":10}');
    await handler.activate(v2);
    expect(fs.readFileSync(path.join(current, 'limits.json'), 'utf8')).toBe('{"max_load":12}');
    await handler.rollback(v2);
    expect(fs.readFileSync(path.join(current, 'limits.json'), 'utf8')).toBe('{"max_load":10}');
    expect(store.get('GW-1', 'config')).toMatchObject({ version: 'v1.0.0', pending: null });

    // A payload that does not match its signed hash is never placed.
    const bad = await step('v3.0.0', 'J3', { 'limits.json': 'x' });
    fs.appendFileSync(bad.payloads[0]!.file, 'tampered');
    await expect(handler.install(bad)).rejects.toThrow('does not match its signed hash');
    // An archive entry escaping the directory is refused.
    const escape = await step('v3.0.1', 'J4', { '../outside.txt': 'x' });
    await expect(handler.install(escape)).rejects.toThrow('archive entry');
    expect(fs.existsSync(path.join(dir, 'components', 'files', 'outside.txt'))).toBe(false);
  });
});

describe('the reboot of an activation', () => {
  /** A gateway whose boot id changes only when a reboot request is honoured. */
  function rig(honoured: boolean[]) {
    const dir = makeTempDir('gantry-activation-reboot-');
    const book = new ComponentBook(new ComponentStateStore(() => dir));
    let boot = 1;
    const gw = { id: 'GW-1', device: { bootId: async () => `boot-${boot}` } } as unknown as GatewayRuntime;
    const said: string[] = [];
    const reboots: RebootPort = {
      reboot: async (_gw, reason) => {
        said.push(`reboot: ${reason}`);
        if (honoured.shift() ?? true) boot++;
      },
      notRebooted: (_gw, reason, attempt) => said.push(`not rebooted: ${reason} (${attempt})`),
    };
    const step = {
      gw,
      jobId: 'J1',
      component: {
        name: 'app',
        version: 'v2.0.0',
        handler: 'ab-slot',
        target: 'app',
        payloads: ['app.img'],
        order: 2,
        needs_reboot: true,
        requires: [],
      },
      payloads: [],
      strategy: 'rolling',
      resumed: false,
      now: 1,
    } as HandlerStep;
    book.setPending(step, { slot: 'B', release: null });
    return { book, reboots, step, said, boot: () => boot };
  }

  it('should reboot once, and not again when resumed on the boot it asked for', async () => {
    const r = rig([true]);
    await rebootForActivation(r.book, r.reboots, r.step);
    expect(r.said).toEqual(['reboot: activating app v2.0.0']);
    // Gantry starts on the new boot and resumes the activation: no second reboot.
    await rebootForActivation(r.book, r.reboots, r.step);
    expect(r.said).toHaveLength(1);
    expect(r.book.pending(r.step)).toMatchObject({ rebootRequested: true, rebootAttempts: 1 });
  });

  it('should ask again when the system is still on the same boot (the request did not take)', async () => {
    const r = rig([false, true]);
    await rebootForActivation(r.book, r.reboots, r.step);
    expect(r.said).toEqual([
      'reboot: activating app v2.0.0',
      'not rebooted: activating app v2.0.0 (2)',
      'reboot: activating app v2.0.0',
    ]);
    expect(r.boot()).toBe(2);
    expect(r.book.pending(r.step)).toMatchObject({ rebootAttempts: 2, rebootBootId: 'boot-1' });
  });

  it('should fail the activation after REBOOT_ATTEMPTS requests that never rebooted', async () => {
    const r = rig(Array.from({ length: REBOOT_ATTEMPTS }, () => false));
    await expect(rebootForActivation(r.book, r.reboots, r.step)).rejects.toThrow(
      `app: the gateway did not reboot after ${REBOOT_ATTEMPTS} requests`,
    );
    expect(r.said.filter((l) => l.startsWith('reboot:'))).toHaveLength(REBOOT_ATTEMPTS);
  });

  it('should not reboot for a component that does not need it', async () => {
    const r = rig([]);
    await rebootForActivation(r.book, r.reboots, {
      ...r.step,
      component: { ...r.step.component, needs_reboot: false },
    });
    expect(r.said).toEqual([]);
  });
});

describe('gantry-bundle build --components', () => {
  it('should build a signed multi-component bundle and refuse components that do not fit', async () => {
    const dir = makeTempDir('gantry-cli-components-');
    const out: string[] = [];
    const io: CliIo = { out: (l) => out.push(l), err: (l) => out.push(l), progress: false };
    expect(await runCli(['keygen', '--out', path.join(dir, 'keys')], io)).toBe(0);
    fs.writeFileSync(path.join(dir, 'rootfs.img'), Buffer.alloc(10_000, 1));
    fs.writeFileSync(path.join(dir, 'app.img'), Buffer.alloc(5_000, 2));
    fs.writeFileSync(
      path.join(dir, 'components.json'),
      JSON.stringify([
        rootfs,
        { ...app, order: 2, requires: [{ component: 'rootfs', min_version: 'v5.1.0' }] },
      ]),
    );
    const args = (components: string) => [
      'build',
      '--key',
      path.join(dir, 'keys', 'gantry-signing.key'),
      '--image',
      path.join(dir, 'rootfs.img'),
      '--payload',
      `app:${path.join(dir, 'app.img')}`,
      '--components',
      components,
      '--version',
      'v5.1.0',
      '--type',
      'feature',
      '--severity',
      'medium',
      '--compatible',
      'Univa-GW-Pro',
      '--kernel',
      '6.1.40-LTS',
      '-o',
      path.join(dir, 'out.bundle'),
    ];
    expect(await runCli(args(path.join(dir, 'components.json')), io), out.join('\n')).toBe(0);
    expect(out).toContain('component app v2.0.0: ab-slot into app, order 2, requires rootfs >= v5.1.0');
    const read = await inspectBundle(fs.createReadStream(path.join(dir, 'out.bundle')));
    expect(read.manifest.components?.map((c) => c.name)).toEqual(['rootfs', 'app']);

    fs.writeFileSync(path.join(dir, 'bad.json'), JSON.stringify([rootfs]));
    out.length = 0;
    expect(await runCli(args(path.join(dir, 'bad.json')), io)).not.toBe(0);
    expect(out.join('\n')).toContain('payload app.img belongs to no component');
  });
});
