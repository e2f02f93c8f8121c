/**
 * Kiln castore (`kiln/castore`): content-addressed blobs and directories,
 * their validated domain types, the BlobService and DirectoryService
 * contracts with their local backends, import and export of filesystem
 * trees. Depends only on common/ and the generated protobuf code; gRPC lives
 * in `kiln/castore/grpc`.
 */
export * from './b3-digest.js';
export * from './blob-service/blob-service.js';
export * from './blob-service/memory.js';
export * from './copy-closure.js';
export * from './directory.js';
export * from './directory-service/directory-service.js';
export * from './directory-service/memory.js';
export * from './errors.js';
export * from './export/materialize.js';
export * from './from-url.js';
export * from './fs-store.js';
export type { FileDigestCache, FileIdentity } from './import/file-digest-cache.js';
export * from './import/import-path.js';
export * from './import/ingest-entries.js';
export {
  DEFAULT_FILE_IMPORT_CONCURRENCY,
  type ImportProgress,
  rootName,
  type WalkFilesystemOptions,
  walkFilesystem,
} from './import/walk-filesystem.js';
export * from './node.js';
export * from './path-component.js';
export { decodeDirectory, entryFromJson, entryFromMessage, entryToJson, entryToMessage, type NamedNode } from './proto-convert.js';
export { ReferencePattern, ReferenceScanner, StreamScanner } from './refscan.js';
export type { StoreProblem, VerifyOptions, VerifyReport } from './verify.js';
