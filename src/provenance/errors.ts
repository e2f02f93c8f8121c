/**
 * The provenance layer's one error class and its closed set of codes.
 */
import { CodedError } from '../common/coded-error.js';

/**
 * - `INVALID_KEY`: a key file is not an Ed25519 key in the expected PEM form.
 * - `INVALID_ENVELOPE`: the DSSE envelope is not well-formed JSON of the right shape (truncated, a field missing, bad base64).
 * - `WRONG_PAYLOAD_TYPE`: the envelope's payload type is not the one expected.
 * - `BAD_SIGNATURE`: no signature of the envelope verifies with the given key.
 * - `INVALID_STATEMENT`: the payload is not an in-toto Statement v1 Kiln understands.
 * - `SUBJECT_MISMATCH`: an artifact's digests match no subject, or a subject's digests do not match the stored artifact.
 * - `SUBJECT_MISSING`: a subject's artifact is not in the store.
 * - `INVALID_RECORD`: a stored record (result cache, index entry) is unreadable.
 */
export type ProvenanceErrorCode =
  | 'INVALID_KEY'
  | 'INVALID_ENVELOPE'
  | 'WRONG_PAYLOAD_TYPE'
  | 'BAD_SIGNATURE'
  | 'INVALID_STATEMENT'
  | 'SUBJECT_MISMATCH'
  | 'SUBJECT_MISSING'
  | 'INVALID_RECORD';

export class ProvenanceError extends CodedError<ProvenanceErrorCode> {
  override readonly name = 'ProvenanceError';
}

export function isProvenanceError(error: unknown, code?: ProvenanceErrorCode): error is ProvenanceError {
  return error instanceof ProvenanceError && (code === undefined || error.code === code);
}
