/**
 * Test kit for castore backends (`kiln/castore/testing`): fixtures with
 * reference digests and the conformance suites. Imports node:test; use from
 * test files only.
 */
export * from './blob-service-conformance.js';
export * from './directory-service-conformance.js';
export * from './fixtures.js';
