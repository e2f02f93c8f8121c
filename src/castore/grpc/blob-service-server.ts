/**
 * Serves any BlobService as `snix.castore.v1.BlobService` through connect.
 * (server.ts additionally answers Read and Put on a lean HTTP/2 path; this is
 * the reference implementation both follow.)
 */
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import type { BlobChunk, BlobService as BlobServiceDesc } from '../../gen/snix/castore/v1/rpc_blobstore_pb.js';
import type { BlobService } from '../blob-service/blob-service.js';
import { releaseOnAbort } from './release-on-abort.js';
import { castoreErrorToConnectError, completeRequestStream, digestFromWire, notFound } from './status.js';

/**
 * Largest `BlobChunk.data` the server sends. It stays well under the 4 MiB
 * message limit most gRPC peers enforce by default; bench/grpc-blob-throughput.ts
 * measured it as the fastest size (larger pieces gave no gain).
 */
export const DEFAULT_READ_CHUNK_SIZE = 1 << 20;

export interface BlobServiceServerOptions {
  /** Largest chunk a Read response message carries; default `DEFAULT_READ_CHUNK_SIZE`. */
  readChunkSize?: number;
}

/** Splits chunks larger than `size` without copying; smaller ones pass as they are. */
export async function* limitChunkSize(chunks: AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Uint8Array> {
  for await (const chunk of chunks) {
    if (chunk.byteLength <= size) {
      if (chunk.byteLength > 0) yield chunk;
      continue;
    }
    for (let offset = 0; offset < chunk.byteLength; offset += size) yield chunk.subarray(offset, offset + size);
  }
}

async function* chunkData(requests: AsyncIterable<BlobChunk>, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  for await (const request of requests) if (request.data.byteLength > 0) yield request.data;
  completeRequestStream(signal);
}

/**
 * The connect implementation of `snix.castore.v1.BlobService` over `service`:
 * Stat answers NOT_FOUND for absent blobs and an empty chunk list otherwise;
 * Read streams the verified bytes; Put stores the uploaded stream and answers
 * its digest, storing nothing when the stream is cut off.
 */
export function createBlobServiceImpl(service: BlobService, options: BlobServiceServerOptions = {}): ServiceImpl<typeof BlobServiceDesc> {
  const readChunkSize = options.readChunkSize ?? DEFAULT_READ_CHUNK_SIZE;
  return {
    async stat(request, ctx: HandlerContext) {
      try {
        const digest = digestFromWire(request.digest, 'blob');
        if (!(await service.has(digest, { signal: ctx.signal }))) throw notFound('blob', digest);
        return { chunks: [] };
      } catch (error) {
        throw castoreErrorToConnectError(error, ctx.signal);
      }
    },

    async *read(request, ctx: HandlerContext) {
      try {
        const digest = digestFromWire(request.digest, 'blob');
        const stream = await service.read(digest, { signal: ctx.signal });
        if (!stream) throw notFound('blob', digest);
        for await (const data of releaseOnAbort(limitChunkSize(stream, readChunkSize), ctx.signal)) yield { data };
      } catch (error) {
        throw castoreErrorToConnectError(error, ctx.signal);
      }
    },

    async put(requests, ctx: HandlerContext) {
      try {
        const { digest } = await service.put(chunkData(requests, ctx.signal), { signal: ctx.signal });
        return { digest: digest.bytes };
      } catch (error) {
        throw castoreErrorToConnectError(error, ctx.signal);
      }
    },
  };
}
