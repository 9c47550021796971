import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli, type CliIo } from '../../cli/bundle.js';
import { parseChunkIndex } from '../../delta/dynamic/chunk-index.js';
import { bytes } from './helpers.js';
import { makeTempDir } from '../helpers/temp.js';

function io(): CliIo & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { stdout, stderr, out: (l) => stdout.push(l), err: (l) => stderr.push(l), progress: false };
}

describe('gantry-bundle CLI', () => {
  let dir: string;
  let key: string;
  let pub: string;
  let bundle: string;

  beforeAll(async () => {
    dir = makeTempDir('gantry-cli-');
    fs.writeFileSync(path.join(dir, 'rootfs.img'), bytes(100_000, 3));
    fs.writeFileSync(path.join(dir, 'app.tar'), bytes(1_000, 4));
    const k = io();
    expect(await runCli(['keygen', '--out', path.join(dir, 'keys')], k)).toBe(0);
    key = path.join(dir, 'keys', 'gantry-signing.key');
    pub = path.join(dir, 'keys', 'gantry-signing.pub');
    expect(fs.statSync(key).mode & 0o777).toBe(0o600);
    bundle = path.join(dir, 'out.bundle');
    // the build command of the spec, plus an extra payload
    const b = io();
    const code = await runCli(
      [
        'build',
        '--key',
        key,
        '--image',
        path.join(dir, 'rootfs.img'),
        '--payload',
        `app:${path.join(dir, 'app.tar')}`,
        '--version',
        'v5.0.5',
        '--type',
        'security',
        '--severity',
        'critical',
        '--compatible',
        'Univa-GW-Pro',
        '--kernel',
        '6.1.40-LTS',
        '--description',
        'Security fixes',
        '--changelog',
        'a',
        '--changelog',
        'b',
        '--released',
        '2024-03-01',
        '-o',
        bundle,
      ],
      b,
    );
    expect(b.stderr).toEqual([]);
    expect(code).toBe(0);
  });

  it('should inspect a built bundle and print its manifest', async () => {
    const o = io();
    expect(await runCli(['inspect', bundle], o)).toBe(0);
    const text = o.stdout.join('\n');
    expect(text).toContain('"version": "v5.0.5"');
    expect(text).toContain('"description": "Security fixes"');
    expect(text).toContain('"changelog": [\n    "a",\n    "b"\n  ]');
    expect(text).toMatch(/payload app\.tar: 1000 bytes/);
    expect(text).toMatch(/NOT checked/);
  });

  it('should verify with the right key and fail with another', async () => {
    const ok = io();
    expect(await runCli(['verify', bundle, '--pubkey', pub], ok)).toBe(0);
    expect(ok.stdout.at(-1)).toMatch(/signature OK/);

    expect(await runCli(['keygen', '--out', path.join(dir, 'other')], io())).toBe(0);
    const bad = io();
    expect(
      await runCli(['verify', bundle, '--pubkey', path.join(dir, 'other', 'gantry-signing.pub')], bad),
    ).toBe(1);
    expect(bad.stderr.join('\n')).toMatch(/OTA_SIGNATURE_FAILED: .*not trusted/);
  });

  it('should exit non-zero with a message on a truncated bundle, a bad version or a missing option', async () => {
    const cut = path.join(dir, 'cut.bundle');
    fs.writeFileSync(cut, fs.readFileSync(bundle).subarray(0, 50_000));
    const t = io();
    expect(await runCli(['inspect', cut], t)).toBe(1);
    expect(t.stderr.join('\n')).toMatch(/OTA_INVALID_IMAGE: .*truncated/);

    const v = io();
    const args = [
      'build',
      '--key',
      key,
      '--image',
      path.join(dir, 'rootfs.img'),
      '--compatible',
      'M',
      '--kernel',
      'k',
    ];
    expect(
      await runCli([...args, '--version', '5.0', '--type', 'bugfix', '--severity', 'low', '-o', cut], v),
    ).toBe(1);
    expect(v.stderr.join('\n')).toMatch(/version: must look like v5\.0\.5/);

    const m = io();
    expect(await runCli(['build', '--key', key], m)).not.toBe(0);
    expect(m.stderr.join('\n')).toMatch(/required option/);

    // Issue 12.4: no test switch is signed into a bundle any more; a simulator's boots fail through
    // its own controls (`gantry simulator fail-boots`).
    const f = io();
    const good = ['--version', 'v5.0.6', '--type', 'bugfix', '--severity', 'low', '-o', cut];
    expect(await runCli([...args, ...good, '--fail-boot'], f)).not.toBe(0);
    expect(f.stderr.join('\n')).toMatch(/unknown option '--fail-boot'/);
  });

  it('should create a feed and add the bundle to it', async () => {
    const feed = path.join(dir, 'feed');
    expect(await runCli(['feed', 'init', feed, '--key', key], io())).toBe(0);
    const add = io();
    expect(await runCli(['feed', 'add', feed, bundle, '--key', key, '--bundle-pubkey', pub], add)).toBe(0);
    expect(add.stdout[0]).toMatch(/added out\.bundle \(v5\.0\.5/);
    const targets = JSON.parse(fs.readFileSync(path.join(feed, 'targets.json'), 'utf8')) as {
      signed: {
        version: number;
        targets: Record<string, { custom: { version: string; description: string } }>;
      };
    };
    expect(targets.signed.version).toBe(2);
    expect(targets.signed.targets['out.bundle']!.custom).toMatchObject({
      version: 'v5.0.5',
      description: 'Security fixes',
    });
    expect(fs.existsSync(path.join(feed, 'targets', 'out.bundle'))).toBe(true);

    const again = io();
    expect(await runCli(['feed', 'init', feed, '--key', key], again)).toBe(1);
    expect(again.stderr.join('\n')).toMatch(/already holds a feed/);
  });

  it('should build --dynamic: the chunk index and pack beside the bundle, named in the signed manifest, published by feed add', async () => {
    const out = path.join(dir, 'dyn.bundle');
    const b = io();
    const code = await runCli(
      [
        'build',
        '--key',
        key,
        '--image',
        path.join(dir, 'rootfs.img'),
        '--version',
        'v5.0.7',
        '--type',
        'security',
        '--severity',
        'high',
        '--compatible',
        'Univa-GW-Pro',
        '--kernel',
        '6.1.40-LTS',
        '--dynamic',
        '-o',
        out,
      ],
      b,
    );
    expect(b.stderr).toEqual([]);
    expect(code).toBe(0);
    expect(b.stdout.join('\n')).toMatch(/dynamic chunks: dyn\.gcix \(\d+ bytes, \d+ chunks\), dyn\.pack/);
    const index = parseChunkIndex(fs.readFileSync(path.join(dir, 'dyn.gcix')));
    expect(index.header.image).toEqual({
      size: 100_000,
      sha256: createHash('sha256')
        .update(fs.readFileSync(path.join(dir, 'rootfs.img')))
        .digest('hex'),
    });
    const o = io();
    expect(await runCli(['inspect', out], o)).toBe(0);
    const text = o.stdout.join('\n');
    const manifest = JSON.parse(text.slice(text.indexOf('{'), text.lastIndexOf('}') + 1)) as {
      payloads: {
        dynamic?: { index: { target: string; size: number }; pack: { target: string; size: number } };
      }[];
    };
    expect(manifest.payloads[0]!.dynamic).toMatchObject({
      index: { target: 'dyn.gcix', size: fs.statSync(path.join(dir, 'dyn.gcix')).size },
      pack: { target: 'dyn.pack', size: index.header.pack.size },
    });

    const feed = path.join(dir, 'dyn-feed');
    expect(await runCli(['feed', 'init', feed, '--key', key], io())).toBe(0);
    expect(await runCli(['feed', 'add', feed, out, '--key', key, '--bundle-pubkey', pub], io())).toBe(0);
    const targets = JSON.parse(fs.readFileSync(path.join(feed, 'targets.json'), 'utf8')) as {
      signed: { targets: Record<string, { length: number }> };
    };
    expect(targets.signed.targets['dyn.pack']!.length).toBe(index.header.pack.size);
    expect(fs.readFileSync(path.join(feed, 'targets', 'dyn.gcix'))).toEqual(
      fs.readFileSync(path.join(dir, 'dyn.gcix')),
    );
  });

  it('should refuse --dynamic for a v1 bundle', async () => {
    const e = io();
    const args = ['build', '--key', key, '--image', path.join(dir, 'rootfs.img'), '--version', 'v5.0.8'];
    args.push('--type', 'bugfix', '--severity', 'low');
    const more = [
      '--compatible',
      'Univa-GW-Pro',
      '--kernel',
      '6.1.40-LTS',
      '-o',
      path.join(dir, 'v1dyn.bundle'),
    ];
    expect(await runCli([...args, ...more, '--format', 'v1', '--dynamic'], e)).not.toBe(0);
    expect(e.stderr.join('\n')).toMatch(/--dynamic needs --format v2/);
  });
});
