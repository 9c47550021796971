import { describe, expect, it } from 'vitest';
import type { Payload } from '../../bundle/manifest.js';
import { choosePath, matchingHop } from '../../delta/choice.js';
import type { DeltaPlan } from '../../delta/path.js';

const plan = (path: 'hop' | 'dynamic', plannedBytes: number): DeltaPlan => ({
  path,
  plannedBytes,
  requests: 1,
  apply: async () => ({ wireBytes: plannedBytes }),
});

const payload: Payload = {
  name: 'rootfs.img',
  kind: 'rootfs',
  size: 1000,
  sha256: 'a'.repeat(64),
  compression: 'brotli',
  stored: { size: 500, sha256: 'b'.repeat(64) },
  deltas: [
    {
      source_sha256: 'c'.repeat(64),
      source_version: 'v1.0.0',
      artifact: { target: 'x.hop', size: 10, sha256: 'd'.repeat(64) },
    },
  ],
};

describe('delivery path choice', () => {
  it('should match a hop delta only by the exact source hash', () => {
    expect(matchingHop(payload, 'c'.repeat(64))?.artifact.target).toBe('x.hop');
    expect(matchingHop(payload, 'e'.repeat(64))).toBeNull();
    expect(matchingHop(payload, null)).toBeNull();
  });

  it('should take the hop when there is one, without asking the dynamic path', async () => {
    let asked = false;
    const choice = await choosePath({
      hop: plan('hop', 10),
      fullBytes: 500,
      threshold: 0.6,
      planDynamic: async () => {
        asked = true;
        return plan('dynamic', 1);
      },
    });
    expect(choice.path).toBe('hop');
    expect(asked).toBe(false);
  });

  it('should take the dynamic path only under the threshold of the full download', async () => {
    const under = await choosePath({
      hop: null,
      fullBytes: 500,
      threshold: 0.6,
      planDynamic: async () => plan('dynamic', 299),
    });
    expect(under.path).toBe('dynamic');
    expect(under.plannedBytes).toBe(299);
    const over = await choosePath({
      hop: null,
      fullBytes: 500,
      threshold: 0.6,
      planDynamic: async () => plan('dynamic', 300),
    });
    expect(over.path).toBe('full');
    expect(over.plan).toBeNull();
    expect(over.plannedBytes).toBe(500);
    const none = await choosePath({
      hop: null,
      fullBytes: 500,
      threshold: 0.6,
      planDynamic: async () => null,
    });
    expect(none.path).toBe('full');
    const noDynamic = await choosePath({ hop: null, fullBytes: 500, threshold: 0.6, planDynamic: null });
    expect(noDynamic.path).toBe('full');
  });
});
