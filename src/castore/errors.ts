/**
 * The castore layer's one error class and its closed set of codes.
 * Depends only on common/.
 */
import { CodedError } from '../common/coded-error.js';

/**
 * - `NOT_FOUND`: an object that had to exist is absent (plain lookups return `undefined` instead).
 * - `INVALID_DIGEST`: a digest of the wrong length or text form.
 * - `INVALID_NAME`: an entry name breaks the path-component rules.
 * - `INVALID_NODE`: a symlink target, size or entry kind is invalid.
 * - `INVALID_DIRECTORY`: unsorted or duplicate names, or a directory closure that does not validate.
 * - `INTEGRITY_MISMATCH`: stored or received bytes do not hash to the digest they claim.
 * - `INVALID_URL`: a store URL no backend accepts.
 * - `BACKEND_FAILURE`: the storage medium or transport failed.
 */
export type CastoreErrorCode =
  | 'NOT_FOUND'
  | 'INVALID_DIGEST'
  | 'INVALID_NAME'
  | 'INVALID_NODE'
  | 'INVALID_DIRECTORY'
  | 'INTEGRITY_MISMATCH'
  | 'INVALID_URL'
  | 'BACKEND_FAILURE';

export class CastoreError extends CodedError<CastoreErrorCode> {
  override readonly name = 'CastoreError';

  /** Normalizes anything thrown at a boundary; abort reasons must be rethrown before calling this. */
  static from(error: unknown, code: CastoreErrorCode = 'BACKEND_FAILURE'): CastoreError {
    if (error instanceof CastoreError) return error;
    const message = error instanceof Error ? error.message : String(error);
    return new CastoreError(code, message, { cause: error });
  }
}

export function isCastoreError(error: unknown, code?: CastoreErrorCode): error is CastoreError {
  return error instanceof CastoreError && (code === undefined || error.code === code);
}
