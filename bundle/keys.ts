import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { GantryError } from '../core/errors.js';
import { SIGNATURE_BYTES } from './manifest.js';

/** Hex digits of the key id written into manifests. */
export const KEY_ID_HEX_CHARS = 16;

export interface GeneratedKeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
  privateKeyPem: string;
  publicKeyPem: string;
  keyId: string;
}

export function generateKeyPair(): GeneratedKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKey,
    publicKey,
    privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    keyId: keyId(publicKey),
  };
}

/**
 * Generates a key pair into `dir` as `<name>.key` (PKCS#8 PEM, mode 0600) and `<name>.pub` (SPKI
 * PEM). Refuses to overwrite an existing private key: losing a signing key strands every device
 * that trusts it.
 */
export function writeKeyPair(
  dir: string,
  name = 'gantry-signing',
): { privateKeyPath: string; publicKeyPath: string; keyId: string } {
  fs.mkdirSync(dir, { recursive: true });
  const privateKeyPath = path.join(dir, `${name}.key`);
  const publicKeyPath = path.join(dir, `${name}.pub`);
  const pair = generateKeyPair();
  fs.writeFileSync(privateKeyPath, pair.privateKeyPem, { mode: 0o600, flag: 'wx' });
  fs.writeFileSync(publicKeyPath, pair.publicKeyPem, { mode: 0o644 });
  return { privateKeyPath, publicKeyPath, keyId: pair.keyId };
}

function assertEd25519(key: KeyObject, what: string): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new GantryError(
      'VALIDATION_ERROR',
      `${what} is a ${key.asymmetricKeyType ?? key.type} key; ed25519 expected`,
    );
  }
  return key;
}

function readPem(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new GantryError('VALIDATION_ERROR', `cannot read ${what} ${file}: ${(err as Error).message}`);
  }
}

/** Parses an ed25519 private key from PEM text. */
export function parsePrivateKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new GantryError('VALIDATION_ERROR', `not a PEM private key: ${(err as Error).message}`);
  }
  return assertEd25519(key, 'the private key');
}

/** Parses an ed25519 public key from PEM text (a private key PEM yields its public half). */
export function parsePublicKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new GantryError('VALIDATION_ERROR', `not a PEM public key: ${(err as Error).message}`);
  }
  return assertEd25519(key, 'the public key');
}

export function loadPrivateKey(file: string): KeyObject {
  return parsePrivateKey(readPem(file, 'private key'));
}

export function loadPublicKey(file: string): KeyObject {
  return parsePublicKey(readPem(file, 'public key'));
}

/** The 32 raw bytes of an ed25519 public key (a private key is reduced to its public half). */
export function rawPublicKey(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  assertEd25519(pub, 'the key');
  const jwk = pub.export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new GantryError('VALIDATION_ERROR', 'the key has no public component');
  return Buffer.from(jwk.x, 'base64url');
}

/** SHA-256 (hex) of the raw public key, all 64 digits; manifests carry a prefix of it. */
export function fullKeyId(key: KeyObject): string {
  return createHash('sha256').update(rawPublicKey(key)).digest('hex');
}

/** The id written into manifests: the first 16 hex digits of SHA-256 over the raw public key. */
export function keyId(key: KeyObject): string {
  return fullKeyId(key).slice(0, KEY_ID_HEX_CHARS);
}

/** Raw 64-byte ed25519 signature over the exact manifest bytes. */
export function signManifest(manifestBytes: Uint8Array, privateKey: KeyObject): Buffer {
  return sign(null, manifestBytes, assertEd25519(privateKey, 'the signing key'));
}

function readKeyIdField(manifestBytes: Uint8Array): string | undefined {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(manifestBytes).toString('utf8'));
    const id = (parsed as { key_id?: unknown } | null)?.key_id;
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Checks `sig` over the exact `manifestBytes` with the trusted key named by the manifest's
 * `key_id`. Returns the id of the key that verified; throws OTA_SIGNATURE_FAILED when the key is
 * not trusted or the signature does not verify.
 */
export function verifyManifestSignature(
  manifestBytes: Uint8Array,
  sig: Uint8Array,
  trustedKeys: readonly KeyObject[],
): string {
  const id = readKeyIdField(manifestBytes);
  if (!id || !/^[0-9a-f]{16,64}$/.test(id)) {
    throw new GantryError('OTA_SIGNATURE_FAILED', 'bundle manifest names no valid signing key (key_id)');
  }
  if (sig.length !== SIGNATURE_BYTES) {
    throw new GantryError('OTA_SIGNATURE_FAILED', `bundle signature is ${sig.length} bytes; 64 expected`, {
      key_id: id,
    });
  }
  const candidates = trustedKeys.filter((k) => fullKeyId(k).startsWith(id));
  if (candidates.length === 0) {
    throw new GantryError('OTA_SIGNATURE_FAILED', `bundle is signed by key ${id}, which is not trusted`, {
      key_id: id,
    });
  }
  for (const key of candidates) {
    const pub = key.type === 'private' ? createPublicKey(key) : key;
    if (verify(null, manifestBytes, pub, sig)) return id;
  }
  throw new GantryError('OTA_SIGNATURE_FAILED', `bundle manifest signature does not verify with key ${id}`, {
    key_id: id,
  });
}
