/** Test kit for the Nix bridge (`kiln/nix-bridge/testing`): the Nix 2.8 vectors and a store holding their source. Use from tests only. */
export * from './nix-vectors.js';
