/**
 * Kiln build (`kiln/build`): the generic BuildRequest → BuildResponse
 * protocol, its validation, the BuildService contract and its events.
 * Depends on castore and common only; knows nothing of Nix. Sandbox
 * backends and gRPC are added beside it.
 */
export * from './build-events.js';
export * from './build-request.js';
export * from './build-service.js';
export { BwrapBuildService, type BwrapBuildServiceOptions } from './bwrap/bwrap-build-service.js';
export * from './dummy.js';
export * from './errors.js';
export * from './from-url.js';
export {
  type BuildOutput,
  type BuildResponse,
  buildRequestDigest,
  buildRequestFromJson,
  buildRequestFromMessage,
  buildRequestToJson,
  buildRequestToMessage,
  buildResponseFromMessage,
  buildResponseToJson,
  buildResponseToMessage,
} from './proto-convert.js';
export { DEFAULT_SANDBOX_DIR, type LocalSandboxOptions } from './sandbox/local-sandbox-service.js';
