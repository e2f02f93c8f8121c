/**
 * DSSE (Dead Simple Signing Envelope, secure-systems-lab/dsse protocol
 * v1.0.0): the signature covers the pre-authentication encoding
 *
 *   PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
 *
 * (LEN = the byte length in ASCII decimal, SP = one space), so neither the
 * payload type nor the payload can be changed without breaking it. The
 * envelope's JSON form: `payloadType`, `payload` (base64) and `signatures`
 * (`keyid` and base64 `sig`). Signatures are Ed25519 over the PAE bytes, so
 * any DSSE verifier (or `openssl pkeyutl -verify -rawin` over the PAE)
 * checks them.
 */
import { sign, verify } from 'node:crypto';
import { utf8 } from '../common/encoding.js';
import { ProvenanceError } from './errors.js';
import type { SigningKey, VerifyingKey } from './keys.js';

/** The payload type of an in-toto Statement (in-toto attestation spec v1, envelope.md). */
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';

export interface DsseSignature {
  /** Unauthenticated hint naming the key; Kiln writes `keyIdOf(publicKey)`. */
  readonly keyid?: string;
  /** base64 of the signature bytes. */
  readonly sig: string;
}

export interface DsseEnvelope {
  readonly payloadType: string;
  /** base64 of the payload bytes. */
  readonly payload: string;
  readonly signatures: readonly DsseSignature[];
}

/** The bytes a DSSE signature covers. */
export function preAuthEncoding(payloadType: string, payload: Uint8Array): Uint8Array {
  const type = utf8(payloadType);
  const header = utf8(`DSSEv1 ${type.byteLength} `);
  const middle = utf8(` ${payload.byteLength} `);
  const out = new Uint8Array(header.byteLength + type.byteLength + middle.byteLength + payload.byteLength);
  out.set(header, 0);
  out.set(type, header.byteLength);
  out.set(middle, header.byteLength + type.byteLength);
  out.set(payload, header.byteLength + type.byteLength + middle.byteLength);
  return out;
}

/** Signs `payload` into an envelope carrying one Ed25519 signature. */
export function signEnvelope(payload: Uint8Array, key: SigningKey, payloadType: string = IN_TOTO_PAYLOAD_TYPE): DsseEnvelope {
  const signature = sign(null, preAuthEncoding(payloadType, payload), key.privateKey);
  return {
    payloadType,
    payload: Buffer.from(payload).toString('base64'),
    signatures: [{ keyid: key.keyId, sig: signature.toString('base64') }],
  };
}

/** The envelope as JSON text (one line, the field order above). */
export function envelopeToJson(envelope: DsseEnvelope): string {
  return JSON.stringify({
    payloadType: envelope.payloadType,
    payload: envelope.payload,
    signatures: envelope.signatures.map((s) => (s.keyid === undefined ? { sig: s.sig } : { keyid: s.keyid, sig: s.sig })),
  });
}

const invalid = (message: string, cause?: unknown) =>
  new ProvenanceError('INVALID_ENVELOPE', `invalid DSSE envelope: ${message}`, cause === undefined ? {} : { cause });

/** Standard or URL-safe base64, padding optional (DSSE verifiers accept both alphabets). */
export function decodeDsseBase64(text: string, field: string): Uint8Array {
  const standard = text.replace(/-/g, '+').replace(/_/g, '/').replace(/=+$/, '');
  if (!/^[A-Za-z0-9+/]*$/.test(standard) || standard.length % 4 === 1) throw invalid(`${field} is not base64`);
  return new Uint8Array(Buffer.from(standard, 'base64'));
}

/** Parses and shape-checks an envelope's JSON; a truncated or malformed one fails with `INVALID_ENVELOPE`. */
export function envelopeFromJson(text: string | Uint8Array): DsseEnvelope {
  const source = typeof text === 'string' ? text : Buffer.from(text).toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(source);
  } catch (error) {
    throw invalid(`not valid JSON (truncated or corrupted?): ${(error as Error).message}`, error);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid('not a JSON object');
  const record = value as Record<string, unknown>;
  if (typeof record.payloadType !== 'string') throw invalid('payloadType is missing or not a string');
  if (typeof record.payload !== 'string') throw invalid('payload is missing or not a string');
  decodeDsseBase64(record.payload, 'payload');
  if (!Array.isArray(record.signatures) || record.signatures.length === 0) throw invalid('signatures is missing or empty');
  const signatures = record.signatures.map((s: unknown, i): DsseSignature => {
    if (typeof s !== 'object' || s === null) throw invalid(`signatures[${i}] is not an object`);
    const { keyid, sig } = s as Record<string, unknown>;
    if (typeof sig !== 'string' || sig === '') throw invalid(`signatures[${i}].sig is missing`);
    decodeDsseBase64(sig, `signatures[${i}].sig`);
    if (keyid !== undefined && typeof keyid !== 'string') throw invalid(`signatures[${i}].keyid is not a string`);
    return keyid === undefined ? { sig } : { keyid, sig };
  });
  return { payloadType: record.payloadType, payload: record.payload, signatures };
}

export interface VerifiedEnvelope {
  /** The authenticated payload bytes. */
  readonly payload: Uint8Array;
  /** The key id of the key whose signature verified. */
  readonly keyId: string;
}

/**
 * Checks the payload type and that at least one signature verifies with
 * `key` over the PAE (every signature is tried; `keyid` is only a hint).
 * Fails with `WRONG_PAYLOAD_TYPE` or `BAD_SIGNATURE` saying why.
 */
export function verifyEnvelope(
  envelope: DsseEnvelope,
  key: VerifyingKey,
  expectedPayloadType: string = IN_TOTO_PAYLOAD_TYPE,
): VerifiedEnvelope {
  if (envelope.payloadType !== expectedPayloadType) {
    throw new ProvenanceError(
      'WRONG_PAYLOAD_TYPE',
      `payload type is ${JSON.stringify(envelope.payloadType)}, expected ${JSON.stringify(expectedPayloadType)}`,
    );
  }
  const payload = decodeDsseBase64(envelope.payload, 'payload');
  const pae = preAuthEncoding(envelope.payloadType, payload);
  for (const signature of envelope.signatures) {
    const sig = decodeDsseBase64(signature.sig, 'sig');
    if (verify(null, pae, key.publicKey, sig)) return { payload, keyId: key.keyId };
  }
  const ids = envelope.signatures.map((s) => s.keyid).filter((id): id is string => id !== undefined);
  if (ids.length > 0 && !ids.includes(key.keyId)) {
    throw new ProvenanceError('BAD_SIGNATURE', `signed by key ${ids.join(', ')}, not by the given key ${key.keyId}`, {
      details: { keyIds: ids, expected: key.keyId },
    });
  }
  throw new ProvenanceError(
    'BAD_SIGNATURE',
    `the signature does not verify with key ${key.keyId}: the payload, its type or the signature was altered`,
    { details: { expected: key.keyId } },
  );
}
