import { describe, expect, it } from 'vitest';
import { ManifestSchema } from '../../bundle/manifest.js';

const base = {
  version: 'v5.0.6',
  type: 'security',
  severity: 'high',
  compatible: ['Univa-GW-Pro'],
  kernel: '6.1.40-LTS',
  released: '2025-03-15',
  description: '',
  changelog: [],
  key_id: '0123456789abcdef',
};
const image = { name: 'rootfs.img', kind: 'rootfs', size: 1000, sha256: 'a'.repeat(64) };
const v2Fields = {
  compression: 'brotli',
  stored: { size: 400, sha256: 'b'.repeat(64) },
  deltas: [
    {
      source_sha256: 'c'.repeat(64),
      source_version: 'v5.0.5',
      artifact: { target: 'gantry-v5.0.6.from-v5.0.5.hop', size: 42, sha256: 'd'.repeat(64) },
    },
  ],
};

describe('bundle manifest v2', () => {
  it('should accept a v2 payload with its stored bytes and deltas, and a v1 payload without them', () => {
    expect(
      ManifestSchema.safeParse({ ...base, format: 'gantry-bundle-v2', payloads: [{ ...image, ...v2Fields }] })
        .success,
    ).toBe(true);
    expect(ManifestSchema.safeParse({ ...base, format: 'gantry-bundle-v1', payloads: [image] }).success).toBe(
      true,
    );
  });

  it('should refuse v2 fields in a v1 manifest and a v2 payload without them', () => {
    const v1 = ManifestSchema.safeParse({
      ...base,
      format: 'gantry-bundle-v1',
      payloads: [{ ...image, ...v2Fields }],
    });
    expect(v1.success).toBe(false);
    expect(JSON.stringify(v1.error?.issues)).toContain('is not part of gantry-bundle-v1');
    const bare = ManifestSchema.safeParse({ ...base, format: 'gantry-bundle-v2', payloads: [image] });
    expect(bare.success).toBe(false);
    expect(bare.error?.issues.map((i) => i.path.join('.'))).toEqual([
      'payloads.0.compression',
      'payloads.0.stored',
      'payloads.0.deltas',
    ]);
  });

  it('should refuse two deltas from one source, a delta from the image itself and an artifact path', () => {
    const twice = { ...v2Fields, deltas: [v2Fields.deltas[0], v2Fields.deltas[0]] };
    expect(
      ManifestSchema.safeParse({ ...base, format: 'gantry-bundle-v2', payloads: [{ ...image, ...twice }] })
        .success,
    ).toBe(false);
    const self = { ...v2Fields, deltas: [{ ...v2Fields.deltas[0], source_sha256: image.sha256 }] };
    expect(
      ManifestSchema.safeParse({ ...base, format: 'gantry-bundle-v2', payloads: [{ ...image, ...self }] })
        .success,
    ).toBe(false);
    const escape = {
      ...v2Fields,
      deltas: [
        { ...v2Fields.deltas[0], artifact: { ...v2Fields.deltas[0]!.artifact, target: '../root.json' } },
      ],
    };
    expect(
      ManifestSchema.safeParse({ ...base, format: 'gantry-bundle-v2', payloads: [{ ...image, ...escape }] })
        .success,
    ).toBe(false);
  });
});
