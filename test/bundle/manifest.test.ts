import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  compareVersions,
  generateKeyPair,
  keyId,
  loadPrivateKey,
  loadPublicKey,
  ManifestSchema,
  rawPublicKey,
  verifyManifestSignature,
  signManifest,
  writeKeyPair,
} from '../../bundle/index.js';
import { GantryError } from '../../core/errors.js';
import { fields } from './helpers.js';
import { makeTempDir } from '../helpers/temp.js';

describe('compareVersions', () => {
  it.each([
    ['v5.0.5', 'v5.0.4', 1],
    ['v5.0.4', 'v5.0.5', -1],
    ['v5.0.5', 'v5.0.5', 0],
    ['v5.10.0', 'v5.9.9', 1],
    ['v6.0.0', 'v5.99.99', 1],
    ['v5.1.0-custom', 'v5.1.0', -1],
    ['v5.1.0-custom', 'v5.0.9', 1],
    ['v5.1.0-rc.2', 'v5.1.0-rc.10', -1],
    ['v5.1.0-rc.1', 'v5.1.0-rc', 1],
    ['v5.1.0-1', 'v5.1.0-alpha', -1],
    ['v5.1.0+build.7', 'v5.1.0', 0],
  ])('should order %s against %s as %i', (a, b, expected) => {
    expect(compareVersions(a, b)).toBe(expected);
  });

  it('should refuse strings that are not versions', () => {
    expect(() => compareVersions('5.0.5', 'v5.0.5')).toThrow(/not a version/);
    expect(() => compareVersions('v5.0', 'v5.0.5')).toThrow(/not a version/);
  });

  const version = fc
    .tuple(
      fc.nat(20),
      fc.nat(20),
      fc.nat(20),
      fc.option(
        fc.array(fc.oneof(fc.constantFrom('rc', 'custom', 'alpha'), fc.nat(12).map(String)), {
          minLength: 1,
          maxLength: 3,
        }),
      ),
    )
    .map(([a, b, c, pre]) => `v${a}.${b}.${c}${pre ? `-${pre.join('.')}` : ''}`);

  it('should be a total order (antisymmetric and transitive)', () => {
    fc.assert(
      fc.property(version, version, version, (a, b, c) => {
        expect(compareVersions(a, b)).toBe(-compareVersions(b, a) || 0);
        if (compareVersions(a, b) <= 0 && compareVersions(b, c) <= 0)
          expect(compareVersions(a, c)).toBeLessThanOrEqual(0);
      }),
    );
  });
});

describe('ManifestSchema', () => {
  const base = {
    format: 'gantry-bundle-v1',
    ...fields(),
    payloads: [{ name: 'rootfs.img', kind: 'rootfs', size: 10, sha256: 'a'.repeat(64) }],
    key_id: '0123456789abcdef',
  };

  it('should accept a complete manifest, with a release or a pre-release version', () => {
    expect(ManifestSchema.safeParse(base).success).toBe(true);
    expect(ManifestSchema.safeParse({ ...base, version: 'v5.1.0-custom' }).success).toBe(true);
  });

  it.each([
    ['version without v', { version: '5.0.5' }],
    ['unknown type', { type: 'hotfix' }],
    ['impossible date', { released: '2024-02-30' }],
    ['no compatible model', { compatible: [] }],
    ['path in payload name', { payloads: [{ ...base.payloads[0], name: '../boot/vmlinuz' }] }],
    ['payload named like the manifest', { payloads: [{ ...base.payloads[0], name: 'manifest.json' }] }],
    ['uppercase hash', { payloads: [{ ...base.payloads[0], sha256: 'A'.repeat(64) }] }],
    ['duplicate payloads', { payloads: [base.payloads[0], base.payloads[0]] }],
    ['unknown field', { install_script: 'rm -rf /' }],
    // Issue 12.4: a signed format carries no test switch; the retired field is an unknown one.
    ['the retired boot_test field', { boot_test: { fail: true } }],
  ])('should refuse %s', (_what, patch) => {
    expect(ManifestSchema.safeParse({ ...base, ...patch }).success).toBe(false);
  });
});

describe('keys', () => {
  it('should derive a 16-hex key id from the raw public key, the same from either half', () => {
    const pair = generateKeyPair();
    expect(pair.keyId).toMatch(/^[0-9a-f]{16}$/);
    expect(keyId(pair.privateKey)).toBe(pair.keyId);
    expect(keyId(pair.publicKey)).toBe(pair.keyId);
    expect(rawPublicKey(pair.publicKey)).toHaveLength(32);
  });

  it('should write a key pair, load it back and refuse to overwrite the private key', () => {
    const dir = makeTempDir('gantry-keys-');
    const res = writeKeyPair(dir, 'k');
    const priv = loadPrivateKey(res.privateKeyPath);
    const pub = loadPublicKey(res.publicKeyPath);
    const msg = Buffer.from('{"key_id":"' + res.keyId + '"}');
    expect(verifyManifestSignature(msg, signManifest(msg, priv), [pub])).toBe(res.keyId);
    expect(() => writeKeyPair(dir, 'k')).toThrow(/EEXIST/);
    expect(() => loadPublicKey(path.join(dir, 'missing.pub'))).toThrow(GantryError);
  });

  it('should refuse a signature of the wrong length or by a key not trusted', () => {
    const pair = generateKeyPair();
    const msg = Buffer.from(`{"key_id":"${pair.keyId}"}`);
    const sig = signManifest(msg, pair.privateKey);
    expect(() => verifyManifestSignature(msg, sig.subarray(0, 63), [pair.publicKey])).toThrow(/63 bytes/);
    expect(() => verifyManifestSignature(msg, sig, [generateKeyPair().publicKey])).toThrow(/not trusted/);
    expect(() => verifyManifestSignature(Buffer.from('{}'), sig, [pair.publicKey])).toThrow(
      /names no valid signing key/,
    );
  });
});
