/**
 * Test kit for the Nix bridge (`kiln/nix-bridge/testing`): the Nix 2.8
 * vectors and a store holding their source, `.drv` files written from
 * parts, and a BuildService that runs no sandbox. Use from tests only.
 */
export * from './derivation-files.js';
export * from './fake-build-service.js';
export * from './nix-vectors.js';
