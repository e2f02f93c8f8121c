/**
 * Kiln's Nix bridge (`kiln/nix-bridge`): runs Nix derivations on Kiln's
 * Nix-unaware builders and records the results as Nix would, the
 * counterpart of Snix's glue. Imports nix, build, castore and common
 * through their index files only; depends on the BuildService contract,
 * never on a sandbox backend.
 *
 * - `derivationToBuildRequest`: a derivation and its input closure → BuildRequest, with the
 *   environment and files Nix 2.8's sandbox gives a builder (`derivationEnvironment`).
 * - `outputsToPathInfos`: a BuildResponse → path infos (NAR hash and size streamed from the castore,
 *   references, fixed-output verification, Nix's output checks).
 * - `PathInfoService`: the path-info index (memory, LMDB).
 * - `LocalNixStore`: `.drv` files and input sources read from the local Nix store.
 * - `NixBuilder`: realises a derivation graph, inputs first, N at a time.
 */
export * from './castore-to-nar.js';
export * from './derivation-environment.js';
export * from './derivation-to-build-request.js';
export * from './errors.js';
export * from './lmdb-path-info-service.js';
export * from './local-nix-store.js';
export * from './nar-to-castore.js';
export * from './nix-builder.js';
export * from './outputs-to-path-infos.js';
export * from './path-info.js';
export * from './path-info-service.js';
export * from './structured-attrs.js';
