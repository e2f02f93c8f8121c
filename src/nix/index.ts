/**
 * Kiln's Nix formats (`kiln/nix`): pure encodings and computations of Nix,
 * the counterpart of Snix's nix-compat. Depends only on common/ and node
 * built-ins (node:crypto); never on castore or build, so it can become a
 * package of its own.
 *
 * - `nixbase32`: Nix's base32 (`encodeNixbase32`, `decodeNixbase32`, strict).
 * - hashes: `NixHash` (md5, sha1, sha256, sha512) in base16, nixbase32, base64 and SRI text forms
 *   (`parseNixHash`, `formatNixHash`, `hashBytes`, `createNixHasher`).
 * - content addresses: `flat`, `nar` (`r:`), `text` (`parseMethodAlgo`, `parseContentAddress`).
 * - store paths: `StorePath` (parse base names and absolute paths in any store directory, order),
 *   and computing them (`makeTextStorePath`, `makeFixedOutputStorePath`, `makeOutputStorePath`).
 * - Nix strings: byte-preserving JS strings for derivation fields that may not be UTF-8
 *   (`nixStringToBytes`, `nixStringFromBytes`).
 * - derivations: the `Derivation` model, ATerm read/write (`parseDerivation`, `writeDerivation`,
 *   byte-exact), JSON (`derivationToJson`, `derivationFromJson`), the `.drv` path
 *   (`derivationPath`), `hashDerivationModulo`, output paths (`computeOutputPaths`,
 *   `DerivationHasher` for graphs loaded on demand).
 * - NAR: streaming writer over an abstract tree (`writeNar`, `hashNar`) and streaming validating
 *   reader (`NarReader`, `checkNar`), with NAR hash and size.
 *
 * Every failure is a `NixFormatError` with a closed `code`.
 */
export * from './aterm.js';
export * from './content-address.js';
export * from './derivation.js';
export * from './derivation-json.js';
export * from './derivation-paths.js';
export * from './errors.js';
export * from './hash.js';
export * from './nar.js';
export * from './nar-reader.js';
export * from './nar-writer.js';
export * from './nix-string.js';
export * from './nixbase32.js';
export * from './store-path.js';
