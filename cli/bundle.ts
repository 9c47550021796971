#!/usr/bin/env node
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import cliProgress from 'cli-progress';
import { Command, CommanderError, Option } from 'commander';
import { z } from 'zod';
import {
  BUNDLE_FORMAT_V1,
  BUNDLE_FORMAT_V2,
  COMPRESSIONS,
  compareVersions,
  DEFAULT_COMPRESSION,
  isVersion,
  type Compression,
  type DeltaRef,
  type DynamicRef,
  buildBundle,
  ComponentSchema,
  describeIssues,
  type Component,
  inspectBundle,
  loadPrivateKey,
  loadPublicKey,
  PAYLOAD_KINDS,
  SEVERITIES,
  UPDATE_TYPES,
  verifyBundle,
  writeKeyPair,
  type ManifestFields,
  type PayloadInput,
  type PayloadKind,
  type StreamedBundle,
} from '../bundle/index.js';
import { findGantryError } from '../core/errors.js';
import { buildDynamicArtifacts } from '../delta/dynamic/publish.js';
import { buildHopDelta } from '../delta/hop/build.js';
import { addTarget, initRepository, refreshTimestamp } from '../feed/index.js';

/**
 * `gantry-bundle`: make signing keys, build/inspect/verify bundles and maintain a static TUF feed.
 * Every failure ends with a one-line message on stderr and a non-zero exit code.
 */

export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  /** Whether to draw progress bars (stderr is a terminal). */
  progress: boolean;
}

const defaultIo: CliIo = {
  out: (l) => process.stdout.write(`${l}\n`),
  err: (l) => process.stderr.write(`${l}\n`),
  progress: Boolean(process.stderr.isTTY),
};

const collect = (value: string, previous: string[]): string[] => [...previous, value];

function today(): string {
  return new Date().toISOString().slice(0, 10);
}

/** Reads a file as a stream, drawing a byte progress bar on stderr when interactive. */
function readWithProgress(file: string, io: CliIo, label: string): { stream: Readable; stop(): void } {
  const stream = fs.createReadStream(file);
  if (!io.progress) return { stream, stop: () => undefined };
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}% {value}/{total} bytes`, stream: process.stderr },
    cliProgress.Presets.shades_classic,
  );
  bar.start(fs.statSync(file).size, 0);
  let read = 0;
  stream.on('data', (chunk) => {
    read += chunk.length;
    bar.update(read);
  });
  return { stream, stop: () => bar.stop() };
}

function describeBundle(res: StreamedBundle, io: CliIo): void {
  io.out(JSON.stringify(res.manifest, null, 2));
  for (const p of res.payloads) io.out(`payload ${p.name}: ${p.size} bytes, sha256 ${p.sha256} OK`);
}

/** The `components` of a manifest from a JSON file, checked field by field (the whole manifest is checked at build). */
function readComponents(file: string): Component[] {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`--components ${file}: not readable JSON (${(err as Error).message})`);
  }
  const parsed = z.array(ComponentSchema).safeParse(raw);
  if (!parsed.success) throw new Error(`--components ${file}: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

/** The earlier releases to build hop deltas from: `--delta-from` pairs, then the newest of `--releases`. */
function deltaSources(opts: {
  deltaFrom: string[];
  releases?: string;
  deltas: number;
  version: string;
}): { version: string; image: string }[] {
  const sources = opts.deltaFrom.map((spec) => {
    const i = spec.indexOf('=');
    const version = spec.slice(0, i);
    const image = spec.slice(i + 1);
    if (i < 1 || !isVersion(version))
      throw new Error(`--delta-from must be VERSION=IMAGE (e.g. v5.0.4=old.img); got ${spec}`);
    if (!fs.existsSync(image)) throw new Error(`--delta-from image not found: ${image}`);
    return { version, image };
  });
  if (opts.releases) {
    if (!Number.isInteger(opts.deltas) || opts.deltas < 0) throw new Error('--deltas must be a whole number');
    const found = fs
      .readdirSync(opts.releases)
      .filter((f) => f.endsWith('.img') && isVersion(f.slice(0, -4)))
      .map((f) => ({ version: f.slice(0, -4), image: path.join(opts.releases!, f) }))
      .filter((r) => compareVersions(r.version, opts.version) < 0)
      .sort((a, b) => compareVersions(b.version, a.version))
      .slice(0, opts.deltas);
    for (const r of found) if (!sources.some((s) => s.version === r.version)) sources.push(r);
  }
  return sources;
}

/** The image's chunk index and pack, written beside the bundle (`feed add` publishes them with it). */
async function dynamicArtifacts(
  opts: { format: 'v1' | 'v2'; image?: string; output: string },
  io: CliIo,
): Promise<DynamicRef> {
  if (opts.format !== 'v2' || !opts.image) throw new Error('--dynamic needs --format v2 and an --image');
  const base = path.basename(opts.output).replace(/\.[^.]*$/, '');
  const index = `${base}.gcix`;
  const pack = `${base}.pack`;
  const dir = path.dirname(opts.output);
  const built = await buildDynamicArtifacts(opts.image, {
    indexFile: path.join(dir, index),
    packFile: path.join(dir, pack),
  });
  io.out(
    `dynamic chunks: ${index} (${built.index.size} bytes, ${built.chunks} chunks), ${pack} (${built.pack.size} bytes, ${built.frames} frames)`,
  );
  return {
    index: { target: index, size: built.index.size, sha256: built.index.sha256 },
    pack: { target: pack, size: built.pack.size, sha256: built.pack.sha256 },
  };
}

function parsePayloadSpec(spec: string): PayloadInput {
  const i = spec.indexOf(':');
  const kind = spec.slice(0, i) as PayloadKind;
  if (i < 1 || !(PAYLOAD_KINDS as readonly string[]).includes(kind)) {
    throw new Error(`--payload must be KIND:FILE with KIND one of ${PAYLOAD_KINDS.join(', ')}; got ${spec}`);
  }
  return { kind, path: spec.slice(i + 1) };
}

export function createProgram(io: CliIo = defaultIo): Command {
  const program = new Command('gantry-bundle')
    .description('Build, inspect and verify Gantry update bundles, and publish them in a TUF feed')
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .exitOverride()
    .showHelpAfterError();

  program
    .command('keygen')
    .description('generate an ed25519 signing key pair (<name>.key, <name>.pub)')
    .requiredOption('--out <dir>', 'directory to write the key pair into')
    .option('--name <name>', 'file name stem', 'gantry-signing')
    .action((opts: { out: string; name: string }) => {
      const res = writeKeyPair(opts.out, opts.name);
      io.out(`private key: ${res.privateKeyPath} (keep it secret)`);
      io.out(`public key:  ${res.publicKeyPath}`);
      io.out(`key id:      ${res.keyId}`);
    });

  program
    .command('build')
    .description('build and sign a bundle')
    .requiredOption('--key <pem>', 'ed25519 private key (PEM) to sign with')
    .option('--image <file>', 'root filesystem image (payload rootfs.img)')
    .option('--payload <kind:file>', 'an extra payload, e.g. app:app.tar (repeatable)', collect, [])
    .option(
      '--components <file.json>',
      'the manifest `components` (JSON array: name, version, handler, target, payloads, order, needs_reboot, requires)',
    )
    .requiredOption('--version <version>', 'release version, e.g. v5.0.5')
    .addOption(new Option('--type <type>', 'update type').choices(UPDATE_TYPES).makeOptionMandatory())
    .addOption(new Option('--severity <severity>', 'severity').choices(SEVERITIES).makeOptionMandatory())
    .option('--compatible <model>', 'hardware model the bundle is for (repeatable)', collect, [])
    .requiredOption('--kernel <version>', 'kernel version the image carries')
    .option('--description <text>', 'one-line description', '')
    .option('--changelog <line>', 'changelog line (repeatable)', collect, [])
    .option('--released <date>', 'release date YYYY-MM-DD', today())
    .requiredOption('-o, --output <file>', 'bundle file to write')
    .addOption(new Option('--format <format>', 'bundle format').choices(['v1', 'v2']).default('v2'))
    .addOption(
      new Option('--compression <codec>', 'v2: how payloads are stored')
        .choices([...COMPRESSIONS])
        .default(DEFAULT_COMPRESSION),
    )
    .option('--compression-level <n>', 'zstd 1-19 (default 19), brotli 0-11 (default 11)', (v) => Number(v))
    .option(
      '--delta-from <version=image>',
      'v2: also build a hop delta from this earlier release image to --image (repeatable)',
      collect,
      [],
    )
    .option(
      '--releases <dir>',
      'v2: earlier release images named <version>.img; hop deltas from the --deltas newest older than --version',
    )
    .option('--deltas <k>', 'how many releases of --releases get a hop delta', (v) => Number(v), 3)
    .addOption(
      new Option('--delta-mode <mode>', 'hop delta operations: ext4 (file-aware) when both images are ext4')
        .choices(['auto', 'ext4', 'blocks'])
        .default('auto'),
    )
    .addOption(
      new Option(
        '--hop-compat <format>',
        'hop deltas readable by: current gateways, or v1 (gateways from before BSDIFF and source digests; larger)',
      )
        .choices(['current', 'v1'])
        .default('current'),
    )
    .option(
      '--dynamic',
      'v2: also publish the image as content-defined chunks (<output>.gcix index, <output>.pack), the fallback for gateways no hop delta fits',
      false,
    )
    .action(
      async (opts: {
        key: string;
        image?: string;
        payload: string[];
        components?: string;
        version: string;
        type: ManifestFields['type'];
        severity: ManifestFields['severity'];
        compatible: string[];
        kernel: string;
        description: string;
        changelog: string[];
        released: string;
        output: string;
        format: 'v1' | 'v2';
        compression: Compression;
        compressionLevel?: number;
        deltaFrom: string[];
        releases?: string;
        deltas: number;
        deltaMode: 'auto' | 'ext4' | 'blocks';
        hopCompat: 'current' | 'v1';
        dynamic: boolean;
      }) => {
        const payloadFiles: PayloadInput[] = [];
        if (opts.image) payloadFiles.push({ kind: 'rootfs', path: opts.image, name: 'rootfs.img' });
        payloadFiles.push(...opts.payload.map(parsePayloadSpec));
        if (payloadFiles.length === 0) throw new Error('give an --image or at least one --payload');
        if (opts.compatible.length === 0) throw new Error('give at least one --compatible hardware model');
        for (const p of payloadFiles) {
          if ('path' in p && !fs.existsSync(p.path)) throw new Error(`payload file not found: ${p.path}`);
        }
        const manifestFields: ManifestFields = {
          version: opts.version,
          type: opts.type,
          severity: opts.severity,
          compatible: opts.compatible,
          kernel: opts.kernel,
          released: opts.released,
          description: opts.description,
          changelog: opts.changelog,
        };
        if (opts.components) manifestFields.components = readComponents(opts.components);
        const sources = deltaSources(opts);
        if (sources.length && (opts.format !== 'v2' || !opts.image)) {
          throw new Error('hop deltas need --format v2 and an --image');
        }
        const deltas: DeltaRef[] = [];
        for (const src of sources) {
          const target = `${path.basename(opts.output).replace(/\.[^.]*$/, '')}.from-${src.version}.hop`;
          const built = await buildHopDelta({
            source: src.image,
            target: opts.image!,
            out: path.join(path.dirname(opts.output), target),
            codec: opts.compression,
            mode: opts.deltaMode,
            compat: opts.hopCompat,
          });
          deltas.push({
            source_sha256: built.source.sha256,
            source_version: src.version,
            artifact: { target, size: built.size, sha256: built.sha256 },
          });
          const ops = Object.entries(built.ops)
            .map(([k, n]) => `${n} ${k}`)
            .join(', ');
          io.out(`hop delta ${target} from ${src.version}: ${built.size} bytes (${built.mode}: ${ops})`);
        }
        const res = await buildBundle({
          manifestFields,
          payloadFiles,
          privateKey: loadPrivateKey(opts.key),
          out: opts.output,
          format: opts.format === 'v1' ? BUNDLE_FORMAT_V1 : BUNDLE_FORMAT_V2,
          compression: opts.compression,
          compressionLevel: opts.compressionLevel,
          deltas: deltas.length ? { 'rootfs.img': deltas } : undefined,
          dynamic: opts.dynamic ? { 'rootfs.img': await dynamicArtifacts(opts, io) } : undefined,
        });
        io.out(`wrote ${opts.output} (${fs.statSync(opts.output).size} bytes)`);
        io.out(`version ${res.manifest.version}, signed by key ${res.manifest.key_id}`);
        for (const p of res.manifest.payloads)
          io.out(`payload ${p.name} (${p.kind}): ${p.size} bytes, sha256 ${p.sha256}`);
        for (const c of res.manifest.components ?? []) {
          const needs = c.requires.map(
            (r) =>
              `${r.component}${r.min_version ? ` >= ${r.min_version}` : ''}${r.below_version ? ` < ${r.below_version}` : ''}`,
          );
          io.out(
            `component ${c.name} ${c.version}: ${c.handler} into ${c.target}, order ${c.order}` +
              `${c.needs_reboot ? ', needs a reboot' : ''}${needs.length ? `, requires ${needs.join(', ')}` : ''}`,
          );
        }
      },
    );

  program
    .command('inspect')
    .description('print a bundle manifest and check its structure and payload hashes (not its signature)')
    .argument('<file>', 'bundle file')
    .action(async (file: string) => {
      const { stream, stop } = readWithProgress(file, io, 'inspect');
      try {
        const res = await inspectBundle(stream);
        stop();
        describeBundle(res, io);
        io.out(
          `structure and hashes OK; signature by key ${res.manifest.key_id} NOT checked (use verify --pubkey)`,
        );
      } finally {
        stop();
      }
    });

  program
    .command('verify')
    .description("verify a bundle's signature, structure and payload hashes")
    .argument('<file>', 'bundle file')
    .requiredOption('--pubkey <pem>', 'trusted public key (PEM; repeatable)', collect, [])
    .action(async (file: string, opts: { pubkey: string[] }) => {
      const trustedKeys = opts.pubkey.map(loadPublicKey);
      const { stream, stop } = readWithProgress(file, io, 'verify');
      try {
        const res = await verifyBundle(stream, { trustedKeys });
        stop();
        describeBundle(res, io);
        io.out(`signature OK (key ${res.keyId}); structure and hashes OK`);
      } finally {
        stop();
      }
    });

  const feed = program.command('feed').description('maintain a static TUF update feed');
  feed
    .command('init')
    .description('create an empty feed in DIR (root, targets, snapshot, timestamp signed with --key)')
    .argument('<dir>', 'feed directory')
    .requiredOption('--key <pem>', 'ed25519 private key (PEM) for every TUF role')
    .option('--expires-days <n>', 'metadata lifetime in days', (v) => Number(v), 365)
    .action((dir: string, opts: { key: string; expiresDays: number }) => {
      initRepository(dir, { keys: loadPrivateKey(opts.key), expiresDays: opts.expiresDays });
      io.out(`feed created in ${dir}`);
      io.out(`ship ${path.join(dir, 'root.json')} to gateways as their trusted root`);
    });
  feed
    .command('add')
    .description('add a bundle to the feed and re-sign targets, snapshot and timestamp')
    .argument('<dir>', 'feed directory')
    .argument('<bundle>', 'bundle file')
    .requiredOption('--key <pem>', 'ed25519 private key (PEM) of the feed')
    .option(
      '--bundle-pubkey <pem>',
      "check the bundle's signature with this key first (repeatable)",
      collect,
      [],
    )
    .option('--name <name>', 'target name (default: the bundle file name)')
    .option('--expires-days <n>', 'metadata lifetime in days', (v) => Number(v), 365)
    .action(
      async (
        dir: string,
        bundle: string,
        opts: { key: string; bundlePubkey: string[]; name?: string; expiresDays: number },
      ) => {
        const res = await addTarget(dir, bundle, {
          keys: loadPrivateKey(opts.key),
          expiresDays: opts.expiresDays,
          targetName: opts.name,
          bundleKeys: opts.bundlePubkey.length ? opts.bundlePubkey.map(loadPublicKey) : undefined,
        });
        io.out(`added ${res.path} (${res.custom.version}, ${res.length} bytes, sha256 ${res.sha256})`);
        io.out(`targets.json is now version ${res.targetsVersion}`);
      },
    );
  feed
    .command('timestamp')
    .description('re-sign timestamp.json with a fresh expiry (run it from cron)')
    .argument('<dir>', 'feed directory')
    .requiredOption('--key <pem>', 'ed25519 private key (PEM) of the timestamp role')
    .option('--expires-days <n>', 'timestamp lifetime in days', (v) => Number(v), 7)
    .action((dir: string, opts: { key: string; expiresDays: number }) => {
      const version = refreshTimestamp(dir, {
        keys: loadPrivateKey(opts.key),
        expiresDays: opts.expiresDays,
      });
      io.out(`timestamp.json is now version ${version}`);
    });

  return program;
}

/** Runs the CLI and resolves to its exit code (never throws). */
export async function runCli(argv: readonly string[], io: CliIo = defaultIo): Promise<number> {
  const program = createProgram(io);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed its message (usage errors); help and --version exit 0.
      return err.exitCode;
    }
    const gantry = findGantryError(err);
    io.err(
      gantry
        ? `gantry-bundle: ${gantry.gantryCode}: ${gantry.message}`
        : `gantry-bundle: ${(err as Error).message}`,
    );
    return 1;
  }
}

// Through npm's bin symlink argv[1] is the link, so compare real paths.
const entry = process.argv[1];
const invokedDirectly = (() => {
  try {
    return entry !== undefined && import.meta.url === pathToFileURL(fs.realpathSync(entry)).href;
  } catch {
    return false;
  }
})();
if (invokedDirectly) {
  process.exitCode = await runCli(process.argv.slice(2));
}
