/** Serves any DirectoryService as `snix.castore.v1.DirectoryService` through connect. */
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import type { Directory as DirectoryMessage } from '../../gen/snix/castore/v1/castore_pb.js';
import type { DirectoryService as DirectoryServiceDesc } from '../../gen/snix/castore/v1/rpc_directory_pb.js';
import type { Directory } from '../directory.js';
import type { DirectoryService } from '../directory-service/directory-service.js';
import { CastoreError } from '../errors.js';
import { directoryFromMessage, directoryToMessage } from '../proto-convert.js';
import { releaseOnAbort } from './release-on-abort.js';
import { castoreErrorToConnectError, completeRequestStream, digestFromWire, notFound } from './status.js';

async function* validatedDirectories(messages: AsyncIterable<DirectoryMessage>, signal: AbortSignal): AsyncGenerator<Directory> {
  for await (const message of messages) yield directoryFromMessage(message);
  completeRequestStream(signal);
}

/**
 * The connect implementation of `snix.castore.v1.DirectoryService` over
 * `service`. Get without `recursive` answers exactly one directory or
 * NOT_FOUND; with it, the closure root first and breadth-first, or an empty
 * stream when the root is absent. Put validates every message and hands the
 * leaves-first closure to `putMany`; any validation failure is
 * INVALID_ARGUMENT and a stream cut off midway stores nothing.
 */
export function createDirectoryServiceImpl(service: DirectoryService): ServiceImpl<typeof DirectoryServiceDesc> {
  return {
    async *get(request, ctx: HandlerContext) {
      const { signal } = ctx;
      try {
        if (request.byWhat.case !== 'digest') throw new CastoreError('INVALID_DIGEST', 'invalid by_what: a digest is required');
        const digest = digestFromWire(request.byWhat.value, 'directory');
        if (!request.recursive) {
          const directory = await service.get(digest, { signal });
          if (!directory) throw notFound('directory', digest);
          yield directoryToMessage(directory);
          return;
        }
        for await (const directory of releaseOnAbort(service.getRecursive(digest, { signal }), signal)) yield directoryToMessage(directory);
      } catch (error) {
        throw castoreErrorToConnectError(error, signal);
      }
    },

    async put(requests, ctx: HandlerContext) {
      try {
        const root = await service.putMany(validatedDirectories(requests, ctx.signal), { signal: ctx.signal });
        return { rootDigest: root.bytes };
      } catch (error) {
        throw castoreErrorToConnectError(error, ctx.signal);
      }
    },
  };
}
