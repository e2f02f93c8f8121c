/**
 * The nix layer's one error class and its closed set of codes. Every parse
 * or validation failure in `kiln/nix` throws a `NixFormatError`; nothing else
 * escapes except abort reasons (rethrown untouched) and errors of the byte
 * sources the caller hands in. Depends only on common/.
 */
import { CodedError } from '../common/coded-error.js';

/**
 * - `INVALID_NIXBASE32`: a character outside Nix's alphabet, an impossible length or non-zero carry bits.
 * - `INVALID_HASH`: an unknown algorithm, a digest of the wrong length, or text in no accepted encoding.
 * - `INVALID_STORE_PATH`: a store path, store directory or store path name that breaks the rules.
 * - `INVALID_DERIVATION`: ATerm syntax (details carry the byte `offset`), duplicates, or a derivation
 *   (ATerm or JSON) that fails validation (details carry the `field`).
 * - `INVALID_NAR`: NAR syntax or rule violations (details carry the byte `offset` when reading),
 *   or a tree handed to the writer that cannot be archived.
 */
export type NixFormatErrorCode = 'INVALID_NIXBASE32' | 'INVALID_HASH' | 'INVALID_STORE_PATH' | 'INVALID_DERIVATION' | 'INVALID_NAR';

export class NixFormatError extends CodedError<NixFormatErrorCode> {
  override readonly name = 'NixFormatError';

  /** Normalizes anything thrown at a boundary; abort reasons must be rethrown before calling this. */
  static from(error: unknown, code: NixFormatErrorCode): NixFormatError {
    if (error instanceof NixFormatError) return error;
    const message = error instanceof Error ? error.message : String(error);
    return new NixFormatError(code, message, { cause: error });
  }
}

export function isNixFormatError(error: unknown, code?: NixFormatErrorCode): error is NixFormatError {
  return error instanceof NixFormatError && (code === undefined || error.code === code);
}
