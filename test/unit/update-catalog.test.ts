import { describe, expect, it } from 'vitest';
import { generateKeyPair } from '../../bundle/keys.js';
import { signatureStatus } from '../../services/updates/catalog.js';

describe('GET /updates signature label (signatureStatus)', () => {
  const trusted = generateKeyPair();
  const stranger = generateKeyPair();
  const keys = [trusted.publicKey];

  it('should say verified only for a key id naming a trusted key', () => {
    expect(signatureStatus(trusted.keyId, keys)).toBe('verified');
    // Manifests may name the key by any 16-64 digit prefix of its full id.
    expect(signatureStatus(trusted.keyId.slice(0, 16), keys)).toBe('verified');
  });

  it('should say untrusted for a key the gateway does not trust, or when it trusts none', () => {
    expect(signatureStatus(stranger.keyId, keys)).toBe('untrusted');
    expect(signatureStatus(trusted.keyId, [])).toBe('untrusted');
  });

  // Regression (issue 11.3): an empty key id matched every trusted key by prefix.
  it('should say untrusted for a key id that cannot name a key, however short or odd', () => {
    for (const id of ['', trusted.keyId.slice(0, 4), trusted.keyId.toUpperCase(), 42, null]) {
      expect(signatureStatus(id, keys), JSON.stringify(id)).toBe('untrusted');
    }
  });

  it('should say unknown when the feed metadata names no key', () => {
    expect(signatureStatus(undefined, keys)).toBe('unknown');
  });
});
