import { z } from 'zod';
import { ArtifactRefSchema, Sha256Schema } from '../delta/artifact.js';

/** Tar entry names of a bundle, in the order they must appear. */
export const MANIFEST_ENTRY = 'manifest.json';
export const SIGNATURE_ENTRY = 'manifest.sig';
/** Version 1: payloads stored as they land on the slot. Still read and installed. */
export const BUNDLE_FORMAT_V1 = 'gantry-bundle-v1';
/** Version 2: payloads stored compressed, hop deltas and a dynamic (chunk) path beside them. */
export const BUNDLE_FORMAT_V2 = 'gantry-bundle-v2';
/** What the bundle tool writes by default. */
export const BUNDLE_FORMAT = BUNDLE_FORMAT_V2;
export const BUNDLE_FORMATS = [BUNDLE_FORMAT_V1, BUNDLE_FORMAT_V2] as const;
export type BundleFormat = (typeof BUNDLE_FORMATS)[number];
export const COMPRESSIONS = ['zstd', 'brotli', 'none'] as const;
export type Compression = (typeof COMPRESSIONS)[number];
export const SIGNATURE_BYTES = 64;

const IDENT = '[0-9A-Za-z-]+';
/** `v5.0.5`, `v5.1.0-custom`, `v5.1.0-rc.1+build.7`: semver with a mandatory leading `v`. */
export const VERSION_PATTERN = new RegExp(
  `^v(\\d+)\\.(\\d+)\\.(\\d+)(?:-(${IDENT}(?:\\.${IDENT})*))?(?:\\+${IDENT}(?:\\.${IDENT})*)?$`,
);

export const UPDATE_TYPES = ['security', 'feature', 'bugfix', 'maintenance'] as const;
export const SEVERITIES = ['critical', 'high', 'medium', 'low'] as const;
export const PAYLOAD_KINDS = ['rootfs', 'kernel', 'app', 'bootloader', 'firmware', 'files'] as const;

export const VersionSchema = z.lazy(() =>
  z.string().regex(VERSION_PATTERN, 'must look like v5.0.5 (semver with a leading v)'),
);

const isoDate = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, 'must be YYYY-MM-DD')
  .refine((s) => {
    const d = new Date(`${s}T00:00:00Z`);
    return !Number.isNaN(d.getTime()) && d.toISOString().startsWith(s);
  }, 'is not a calendar date');

/**
 * Payload names become tar entry names and, on the device, may become file names: plain names
 * only, so a signed-but-careless manifest can never address `../` or collide with the manifest.
 */
const payloadName = z
  .string()
  .regex(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$/, 'must be a plain file name (letters, digits, . _ -)')
  .refine((n) => n !== MANIFEST_ENTRY && n !== SIGNATURE_ENTRY, 'is reserved');

const byteCount = z.int().nonnegative().max(Number.MAX_SAFE_INTEGER);

/**
 * A hop delta: the operations that turn the image whose SHA-256 is `source_sha256` (a release the
 * publisher knew) into this payload's image. A gateway uses it only when its active slot's recorded
 * hash is exactly `source_sha256`.
 */
export const DeltaRefSchema = z.lazy(() =>
  z.strictObject({
    source_sha256: Sha256Schema,
    source_version: VersionSchema,
    artifact: ArtifactRefSchema,
  }),
);

/** The dynamic path: the signed chunk index of this payload's image and the pack holding its chunks. */
export const DynamicRefSchema = z.lazy(() =>
  z.strictObject({
    index: ArtifactRefSchema,
    pack: ArtifactRefSchema,
  }),
);

/**
 * A payload. `size`/`sha256` always describe the image that lands on the slot (uncompressed). In a
 * v2 bundle the tar entry holds `stored` bytes (`compression` applied to the image), and the
 * payload may name delta artifacts published beside the bundle as feed targets.
 */
export const PayloadSchema = z.lazy(() =>
  z.strictObject({
    name: payloadName,
    kind: z.enum(PAYLOAD_KINDS),
    size: byteCount,
    sha256: Sha256Schema,
    compression: z.enum(COMPRESSIONS).optional(),
    stored: z.strictObject({ size: byteCount, sha256: Sha256Schema }).optional(),
    deltas: z.array(DeltaRefSchema).optional(),
    dynamic: DynamicRefSchema.optional(),
  }),
);

// ---- components (multi-component bundles; README "Components: multi-component bundles and the rolling strategy") ----

export const COMPONENT_HANDLERS = ['ab-slot', 'file', 'plugin'] as const;
export const MAX_COMPONENTS = 32;
/** Component names and targets name directories, slot classes and plugins: plain names only. */
const plainName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,39}$/, 'must be a plain name (lowercase letters, digits, _ -, at most 40)');

export const ComponentRequirementSchema = z.lazy(() =>
  z
    .strictObject({
      component: plainName,
      /** The other component must be at this version or above. */
      min_version: VersionSchema.optional(),
      /** The other component must be below this version. */
      below_version: VersionSchema.optional(),
    })
    .refine((r) => r.min_version !== undefined || r.below_version !== undefined, {
      message: 'needs min_version or below_version',
    }),
);

export const ComponentSchema = z.lazy(() =>
  z.strictObject({
    name: plainName,
    version: VersionSchema,
    handler: z.enum(COMPONENT_HANDLERS),
    /** ab-slot: the slot class (`rootfs`, `app`, …); file: the directory's name; plugin: the plugin's name. */
    target: plainName,
    /** The payload(s) this component installs, by name; size and hashes are the payloads'. */
    payloads: z.array(z.string()).min(1).max(16),
    /** Install order: lower first; equal orders keep the manifest's order. */
    order: z.int().min(0).max(1000).default(0),
    /** Whether activating it needs a reboot (a root filesystem always does). */
    needs_reboot: z.boolean().default(false),
    requires: z.array(ComponentRequirementSchema).max(MAX_COMPONENTS).default([]),
  }),
);

/** Cross-field rules of `components`: names, payloads, targets and requirements that fit together. */
function checkComponents(
  m: {
    version: string;
    payloads: Array<{ name: string; kind: string }>;
    components?: Array<z.output<typeof ComponentSchema>>;
  },
  ctx: z.RefinementCtx,
): void {
  if (!m.components) return;
  const issue = (path: Array<string | number>, message: string) =>
    ctx.addIssue({ code: 'custom', path: ['components', ...path], message });
  const names = new Set<string>();
  const used = new Map<string, string>();
  const payloadKind = new Map(m.payloads.map((p) => [p.name, p.kind]));
  m.components.forEach((c, i) => {
    if (names.has(c.name)) issue([i, 'name'], `duplicate component ${c.name}`);
    names.add(c.name);
    if (c.handler === 'ab-slot' && c.payloads.length !== 1) {
      issue([i, 'payloads'], 'an ab-slot component installs exactly one payload (the slot image)');
    }
    const rootfs = c.handler === 'ab-slot' && c.target === 'rootfs';
    if (rootfs && c.version !== m.version) {
      issue([i, 'version'], `the rootfs component is the bundle's version (${m.version})`);
    }
    if (rootfs && !c.needs_reboot) issue([i, 'needs_reboot'], 'a rootfs component always needs a reboot');
    if (rootfs && c.requires.length > 0) {
      // The root filesystem is the base of the stack: never rolled back because of another component.
      issue([i, 'requires'], 'a rootfs component cannot require other components');
    }
    c.payloads.forEach((name, j) => {
      const kind = payloadKind.get(name);
      if (kind === undefined) issue([i, 'payloads', j], `no payload named ${name}`);
      else if ((kind === 'rootfs') !== rootfs) {
        issue([i, 'payloads', j], `payload ${name} (${kind}) ${rootfs ? 'is not' : 'is'} a rootfs image`);
      }
      const owner = used.get(name);
      if (owner !== undefined) issue([i, 'payloads', j], `payload ${name} is already installed by ${owner}`);
      used.set(name, c.name);
    });
    c.requires.forEach((r, j) => {
      if (r.component === c.name) issue([i, 'requires', j], 'a component cannot require itself');
    });
  });
  const targets = m.components.filter((c) => c.handler !== 'plugin').map((c) => `${c.handler}:${c.target}`);
  targets.forEach((t, i) => {
    if (targets.indexOf(t) !== i) issue([], `two components install into the same target ${t}`);
  });
  for (const p of m.payloads) {
    if (!used.has(p.name)) issue([], `payload ${p.name} belongs to no component`);
  }
}

export const ManifestSchema = z.lazy(() =>
  z
    .strictObject({
      format: z.enum(BUNDLE_FORMATS),
      version: VersionSchema,
      type: z.enum(UPDATE_TYPES),
      severity: z.enum(SEVERITIES),
      compatible: z.array(z.string().min(1)).min(1),
      kernel: z.string().min(1),
      released: isoDate,
      description: z.string(),
      changelog: z.array(z.string()),
      payloads: z.array(PayloadSchema).min(1),
      key_id: z.string().regex(/^[0-9a-f]{16,64}$/, 'must be 16 to 64 lowercase hex digits'),
      /** Absent: the bundle is one `rootfs` component (every bundle before multi-component ones). */
      components: z.array(ComponentSchema).min(1).max(MAX_COMPONENTS).optional(),
    })
    .superRefine((m, ctx) => {
      checkComponents(m, ctx);
      const seen = new Set<string>();
      m.payloads.forEach((p, i) => {
        for (const issue of payloadFormatIssues(m.format, p)) {
          ctx.addIssue({ code: 'custom', path: ['payloads', i, ...issue.path], message: issue.message });
        }
        if (seen.has(p.name)) {
          ctx.addIssue({
            code: 'custom',
            path: ['payloads', i, 'name'],
            message: `duplicate payload ${p.name}`,
          });
        }
        seen.add(p.name);
      });
    }),
);

/**
 * v1 payloads carry none of the v2 fields (a v1 reader would ignore them, so a v1 manifest that
 * had them would promise what v1 devices do not check); v2 payloads carry `compression` and
 * `stored` (`none` stores the image itself: `stored` then equals `size`/`sha256`) and `deltas`.
 * Two deltas from the same source would make the choice ambiguous.
 */
function payloadFormatIssues(format: BundleFormat, p: Payload): { path: string[]; message: string }[] {
  const issues: { path: string[]; message: string }[] = [];
  if (format === BUNDLE_FORMAT_V1) {
    for (const field of ['compression', 'stored', 'deltas', 'dynamic'] as const) {
      if (p[field] !== undefined)
        issues.push({ path: [field], message: `is not part of ${BUNDLE_FORMAT_V1}` });
    }
    return issues;
  }
  if (p.compression === undefined) issues.push({ path: ['compression'], message: 'is required' });
  if (p.stored === undefined) issues.push({ path: ['stored'], message: 'is required' });
  if (p.deltas === undefined) issues.push({ path: ['deltas'], message: 'is required (may be empty)' });
  if (p.compression === 'none' && p.stored && (p.stored.size !== p.size || p.stored.sha256 !== p.sha256)) {
    issues.push({ path: ['stored'], message: 'must equal size/sha256 when compression is none' });
  }
  const sources = new Set<string>();
  p.deltas?.forEach((d, j) => {
    if (sources.has(d.source_sha256)) {
      issues.push({ path: ['deltas', String(j), 'source_sha256'], message: 'duplicate delta source' });
    }
    sources.add(d.source_sha256);
    if (d.source_sha256 === p.sha256) {
      issues.push({ path: ['deltas', String(j), 'source_sha256'], message: 'is the image itself' });
    }
  });
  return issues;
}

export type Manifest = z.infer<typeof ManifestSchema>;
export type Component = z.infer<typeof ComponentSchema>;
export type ComponentRequirement = Component['requires'][number];
export type Payload = z.infer<typeof PayloadSchema>;
export type DeltaRef = z.infer<typeof DeltaRefSchema>;
export type DynamicRef = z.infer<typeof DynamicRefSchema>;

/** Bytes of the payload's tar entry: the stored (compressed) bytes in v2, the image in v1. */
export function storedSize(p: Payload): number {
  return p.stored?.size ?? p.size;
}

/** SHA-256 of the payload's tar entry. */
export function storedSha256(p: Payload): string {
  return p.stored?.sha256 ?? p.sha256;
}

/** How the tar entry is encoded (v1: not at all). */
export function compressionOf(p: Payload): Compression {
  return p.compression ?? 'none';
}
export type PayloadKind = Payload['kind'];
export type UpdateType = Manifest['type'];
export type Severity = Manifest['severity'];
/** What a bundle author supplies; format, payload sizes/hashes and key id are computed. */
export type ManifestFields = Omit<Manifest, 'format' | 'payloads' | 'key_id'>;
export type { ArtifactRef } from '../delta/artifact.js';

/** One line per zod issue, `payloads.0.sha256: must be …`, for error messages. */
export function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`).join('; ');
}

interface ParsedVersion {
  core: [number, number, number];
  pre: string[];
}

function parseVersion(v: string): ParsedVersion {
  const m = VERSION_PATTERN.exec(v);
  if (!m) throw new TypeError(`not a version: ${JSON.stringify(v)} (expected e.g. v5.0.5)`);
  return {
    core: [Number(m[1]), Number(m[2]), Number(m[3])],
    pre: m[4] ? m[4].split('.') : [],
  };
}

function compareIdentifiers(a: string, b: string): number {
  const an = /^\d+$/.test(a);
  const bn = /^\d+$/.test(b);
  if (an && bn) return Math.sign(Number(a) - Number(b));
  if (an) return -1;
  if (bn) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Semver precedence (build metadata ignored): -1, 0 or 1. A pre-release ranks below its release,
 * so `v5.1.0-custom` < `v5.1.0`. Throws a TypeError on a string that is not a version.
 */
export function compareVersions(a: string, b: string): -1 | 0 | 1 {
  const pa = parseVersion(a);
  const pb = parseVersion(b);
  for (let i = 0; i < 3; i++) {
    const d = pa.core[i]! - pb.core[i]!;
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  if (pa.pre.length === 0 || pb.pre.length === 0) {
    if (pa.pre.length === pb.pre.length) return 0;
    return pa.pre.length === 0 ? 1 : -1;
  }
  for (let i = 0; i < Math.max(pa.pre.length, pb.pre.length); i++) {
    const x = pa.pre[i];
    const y = pb.pre[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const c = compareIdentifiers(x, y);
    if (c !== 0) return c < 0 ? -1 : 1;
  }
  return 0;
}

export function isVersion(v: string): boolean {
  return VERSION_PATTERN.test(v);
}
