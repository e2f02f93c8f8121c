/**
 * The Nix bridge's one error class and its closed set of codes. Format
 * errors of derivations, store paths and hashes stay `NixFormatError`s
 * (from `kiln/nix`); build and store errors from the layers below pass
 * through unchanged.
 */
import { CodedError } from '../common/coded-error.js';

/**
 * - `INVALID_DERIVATION`: a `.drv` file that parses but is not what its path says (another derivation
 *   path, other output paths), or attributes Nix would reject (`__json`, `passAsFile`, `exportReferencesGraph`).
 * - `DERIVATION_REJECTED`: a derivation this bridge refuses to build, as Nix's sandbox would or because it
 *   cannot (`__noChroot`, `builtin:` builders, required system features, a foreign system).
 * - `NOT_FOUND`: a `.drv` file, or a store path's path info, that is not there.
 * - `SOURCE_MISSING`: an input source that the local Nix store does not hold (or holds but not as valid).
 * - `SOURCE_CORRUPT`: an input source whose contents no longer hash to what the Nix database records.
 * - `BUILD_FAILED`: the builder ran the derivation and it failed (exit status, missing output, …).
 * - `DEPENDENCY_FAILED`: an input derivation failed, so this one was not built.
 * - `HASH_MISMATCH`: a fixed-output derivation produced other contents than its declared hash.
 * - `OUTPUT_REJECTED`: an output breaks a rule Nix checks when registering outputs (references from a
 *   fixed output, a flat fixed output that is not a plain file, a reference cycle between outputs).
 * - `INVALID_PATH_INFO`: a path-info record that cannot be read back (a corrupt index).
 */
export type NixBridgeErrorCode =
  | 'INVALID_DERIVATION'
  | 'DERIVATION_REJECTED'
  | 'NOT_FOUND'
  | 'SOURCE_MISSING'
  | 'SOURCE_CORRUPT'
  | 'BUILD_FAILED'
  | 'DEPENDENCY_FAILED'
  | 'HASH_MISMATCH'
  | 'OUTPUT_REJECTED'
  | 'INVALID_PATH_INFO';

export class NixBridgeError extends CodedError<NixBridgeErrorCode> {
  override readonly name = 'NixBridgeError';
}

export function isNixBridgeError(error: unknown, code?: NixBridgeErrorCode): error is NixBridgeError {
  return error instanceof NixBridgeError && (code === undefined || error.code === code);
}
