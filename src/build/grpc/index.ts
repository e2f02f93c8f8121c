/**
 * Kiln builds over gRPC (`kiln/build/grpc`): the server side (snix.build.v1
 * DoBuild, kiln.build.v1 events with re-attach and cancel, health, auth) for
 * any BuildService, and the client that is just another BuildService.
 * Pulls in node:http2 and connect; from-url.ts loads it only for `grpc+…`.
 */

export { type AbandonedBuildsSwept, sweepAbandonedBuildDirs, sweepAbandonedBuilds } from './abandoned-builds.js';
export { bearerTokenCheck, type KilnServer, type KilnServerOptions, startKilnServer } from './build-grpc-server.js';
export { type BuildRoutes, type BuildServerOptions, createBuildRoutes, REATTACH_GRACE_HEADER } from './build-server.js';
export { DispatchingBuildService, remoteCastoreOf } from './dispatching-build-service.js';
export {
  type BuilderInfo,
  type BuilderUrlParts,
  DEFAULT_REATTACH_GRACE_MS,
  GrpcBuildService,
  type GrpcBuildServiceOptions,
  splitBuilderUrl,
} from './grpc-build-service.js';
export { BUILD_ERROR_CODE_TRAILER } from './status.js';
