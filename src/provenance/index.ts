/**
 * Kiln provenance (`kiln/provenance`): what went into a build, what came
 * out and where it ran, as a signed in-toto Statement v1 with an SLSA
 * provenance v1 predicate in a DSSE envelope (Ed25519, node:crypto), its
 * storage next to the outputs, verification, and reproducibility checks.
 * Imports nix-bridge (the castore → NAR source), nix, build, castore and
 * common through their index files.
 *
 * - keys: `generateSigningKeyPem`, `signingKeyFromPem`, `verifyingKeyFromPem`, `keyIdOf`.
 * - DSSE: `preAuthEncoding`, `signEnvelope`, `verifyEnvelope`, `envelopeFromJson`, `envelopeToJson`.
 * - statements: `buildProvenance` (SLSA v1, build type `https://kiln.dev/build/v1`; the Nix front end
 *   passes `nixBuildDefinition`), `reproducedStatement` (`https://kiln.dev/reproduced/v1`).
 * - digests of artifacts: `nodeDigests` (castore), `diskDigests` (a path on disk).
 * - `verifyProvenance`: signature, payload type, statement, subjects against the store or disk.
 * - storage: `storeEnvelope`, `listEnvelopes`, `readEnvelope` over a `Sidecar` (`sidecarForStore`).
 * - reproducibility: `compareOutputs` (differing files with a short text diff), the result cache
 *   (`recordResult`, `lookupResult`).
 * - runs: `RunObserver` (what a statement needs of a run, from its events), `SigningBuildService`
 *   (a builder that signs its own builds and sends the envelope on `finished`).
 */
export * from './compare-outputs.js';
export * from './digests.js';
export * from './dsse.js';
export * from './errors.js';
export * from './keys.js';
export * from './provenance-store.js';
export * from './result-cache.js';
export * from './run-observer.js';
export * from './sidecar.js';
export * from './signing-build-service.js';
export * from './slsa-provenance.js';
export * from './statement.js';
export * from './text-diff.js';
export * from './verify.js';
