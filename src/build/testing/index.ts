/** Test kit for build backends (`kiln/build/testing`): host requirement checks. Use from tests only. */
export * from './sandbox-requirements.js';
