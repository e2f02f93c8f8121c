/**
 * Kiln castore over gRPC (`kiln/castore/grpc`): clients that are just more
 * BlobService / DirectoryService backends, adapters that expose any service
 * as `snix.castore.v1`, the server, and channel URLs. Pulls in node:http2
 * and connect, so the rest of castore never imports it statically.
 */
export { type BlobServiceServerOptions, createBlobServiceImpl, DEFAULT_READ_CHUNK_SIZE } from './blob-service-server.js';
export {
  DEFAULT_CONNECTION_WINDOW_SIZE,
  DEFAULT_KEEPALIVE_MS,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_MAX_SESSION_MEMORY_MIB,
  DEFAULT_STREAM_WINDOW_SIZE,
  GrpcChannel,
  type GrpcChannelOptions,
  openGrpcChannel,
} from './channel.js';
export { type ChannelAddress, parseChannelUrl } from './channel-url.js';
export { createDirectoryServiceImpl } from './directory-service-server.js';
export { DEFAULT_PUT_CHUNK_SIZE, GrpcBlobService, type GrpcBlobServiceOptions, grpcBlobServiceFromUrl } from './grpc-blob-service.js';
export { GrpcDirectoryService, type GrpcDirectoryServiceOptions, grpcDirectoryServiceFromUrl } from './grpc-directory-service.js';
export { type GrpcCastore, openGrpcCastore } from './open-grpc-castore.js';
export {
  type CastoreServer,
  type CastoreServerOptions,
  DEFAULT_CLOSE_GRACE_MS,
  type ListenAddress,
  parseListenAddress,
  startCastoreServer,
} from './server.js';
export {
  CASTORE_ERROR_CODE_TRAILER,
  type ConnectErrorMappingOptions,
  castoreCodeToGrpcCode,
  castoreErrorToConnectError,
  connectErrorToCastoreError,
} from './status.js';
