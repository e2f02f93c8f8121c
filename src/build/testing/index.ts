/** Test kit for build backends (`kiln/build/testing`): host requirement checks and the sandbox conformance suite. Use from tests only. */
export * from './sandbox-conformance.js';
export * from './sandbox-requirements.js';
export * from './shell-request.js';
