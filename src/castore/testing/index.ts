/**
 * Test kit for castore backends (`kiln/castore/testing`): fixtures with
 * reference digests, the conformance suites, and the host tools interop
 * tests need (certificates, Python grpcio). Imports node:test; use from
 * test files only.
 */
export * from './blob-service-conformance.js';
export * from './directory-service-conformance.js';
export * from './fixtures.js';
export * from './interop-tools.js';
