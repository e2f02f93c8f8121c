/**
 * Ed25519 signing keys (node:crypto): generation, PEM files (PKCS#8 private,
 * SPKI public) and the key id every signature names, the lowercase hex
 * SHA-256 of the public key's SPKI DER encoding (the same bytes `openssl
 * pkey -pubin -outform DER` prints), so anyone holding the public key can
 * recompute it.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { ProvenanceError } from './errors.js';

export interface SigningKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly keyId: string;
}

export interface VerifyingKey {
  readonly publicKey: KeyObject;
  readonly keyId: string;
}

/** The key id of an Ed25519 public key: hex SHA-256 of its SPKI DER. */
export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex');
}

/** A fresh key pair as PEM text: PKCS#8 private key, SPKI public key. */
export function generateSigningKeyPem(): { privateKeyPem: string; publicKeyPem: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }) as string,
    keyId: keyIdOf(publicKey),
  };
}

function requireEd25519(key: KeyObject, what: string): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new ProvenanceError('INVALID_KEY', `${what} is a ${key.asymmetricKeyType ?? 'symmetric'} key, not Ed25519`);
  }
  return key;
}

/** Parses a PKCS#8 PEM Ed25519 private key. */
export function signingKeyFromPem(pem: string | Uint8Array, what = 'the signing key'): SigningKey {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: Buffer.from(pem), format: 'pem' });
  } catch (error) {
    throw new ProvenanceError('INVALID_KEY', `${what} is not a PEM private key: ${(error as Error).message}`, { cause: error });
  }
  requireEd25519(privateKey, what);
  const publicKey = createPublicKey(privateKey);
  return { privateKey, publicKey, keyId: keyIdOf(publicKey) };
}

/** Parses an SPKI PEM Ed25519 public key (a private key is refused: verifiers should not hold one). */
export function verifyingKeyFromPem(pem: string | Uint8Array, what = 'the public key'): VerifyingKey {
  const text = Buffer.from(pem).toString('utf8');
  if (/-----BEGIN (ENCRYPTED |RSA |EC )?PRIVATE KEY-----/.test(text)) {
    throw new ProvenanceError('INVALID_KEY', `${what} is a private key; pass the public key (the .pub file)`);
  }
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: text, format: 'pem' });
  } catch (error) {
    throw new ProvenanceError('INVALID_KEY', `${what} is not a PEM public key: ${(error as Error).message}`, { cause: error });
  }
  requireEd25519(publicKey, what);
  return { publicKey, keyId: keyIdOf(publicKey) };
}
