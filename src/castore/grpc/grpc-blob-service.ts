/**
 * A BlobService backed by a remote `snix.castore.v1.BlobService`. Every read
 * is verified against the digest it was requested under (an offset read
 * downloads and hashes the skipped prefix too). `put` streams the source and
 * returns the digest the server computed; with `expectedDigest` it also
 * hashes locally and resets the call before its end on a mismatch, so the
 * server stores nothing.
 */
import { type Client, createClient } from '@connectrpc/connect';
import type { AbortOptions } from '../../common/abort.js';
import { type ByteSource, toChunks } from '../../common/async-iterable.js';
import { createBlake3 } from '../../common/blake3.js';
import { BlobService as BlobServiceDesc } from '../../gen/snix/castore/v1/rpc_blobstore_pb.js';
import { B3Digest } from '../b3-digest.js';
import type { BlobPutOptions, BlobPutResult, BlobReadOptions, BlobService } from '../blob-service/blob-service.js';
import { integrityError, verifiedStream } from '../blob-service/verify-stream.js';
import { CastoreError, isCastoreError } from '../errors.js';
import { type GrpcChannel, type GrpcChannelOptions, openGrpcChannel } from './channel.js';
import { putBlobFast, readBlobFast } from './fast-blob-client.js';
import { connectErrorToCastoreError, isNotFound } from './status.js';

/** Largest `BlobChunk.data` `put` sends; bigger source chunks are split (no copy). */
export const DEFAULT_PUT_CHUNK_SIZE = 1 << 20;

export interface GrpcBlobServiceOptions {
  /** Largest chunk a Put message carries; default `DEFAULT_PUT_CHUNK_SIZE`. */
  putChunkSize?: number;
  /** Leave the channel open on `close()` (when it is shared); default false. */
  keepChannelOpen?: boolean;
  /**
   * Run Read and Put on the lean HTTP/2 path of fast-blob-client.ts rather
   * than through connect (same wire protocol, fewer copies); default true.
   */
  fastBlobPath?: boolean;
}

/**
 * The gRPC BlobService client: just another backend. `has` is Stat (NOT_FOUND
 * → false), `read` is a verified Read (NOT_FOUND → undefined), `put` is Put.
 * Read and Put use the fast path unless `fastBlobPath: false`. Breaking out
 * of a read cancels the call. Calls may run concurrently on the channel.
 */
export class GrpcBlobService implements BlobService {
  readonly channel: GrpcChannel;
  readonly #client: Client<typeof BlobServiceDesc>;
  readonly #options: GrpcBlobServiceOptions;

  constructor(channel: GrpcChannel, options: GrpcBlobServiceOptions = {}) {
    this.channel = channel;
    this.#client = createClient(BlobServiceDesc, channel.transport);
    this.#options = options;
  }

  async has(digest: B3Digest, options: AbortOptions = {}): Promise<boolean> {
    const { signal } = options;
    signal?.throwIfAborted();
    try {
      await this.#client.stat({ digest: digest.bytes }, { signal });
      return true;
    } catch (error) {
      if (isNotFound(error) && !signal?.aborted) return false;
      throw connectErrorToCastoreError(error, { signal, operation: 'grpc BlobService.Stat' });
    }
  }

  async read(digest: B3Digest, options: BlobReadOptions = {}): Promise<AsyncIterable<Uint8Array> | undefined> {
    const { signal } = options;
    signal?.throwIfAborted();
    // `break` on a connect stream does not cancel it, so every call gets its own controller.
    const call = new AbortController();
    const callSignal = signal ? AbortSignal.any([signal, call.signal]) : call.signal;
    const mapError = (error: unknown) => connectErrorToCastoreError(error, { signal, operation: 'grpc BlobService.Read' });
    const iterator: AsyncIterator<Uint8Array> =
      this.#options.fastBlobPath === false
        ? dataOf(this.#client.read({ digest: digest.bytes }, { signal: callSignal }))
        : readBlobFast(this.channel, digest.bytes, callSignal);
    let first: IteratorResult<Uint8Array>;
    try {
      first = await iterator.next();
    } catch (error) {
      call.abort();
      if (isNotFound(error) && !signal?.aborted) return undefined;
      const mapped = mapError(error);
      // Corruption is reported by the stream, as for every backend (a small blob fails before its first chunk).
      if (isCastoreError(mapped, 'INTEGRITY_MISMATCH')) return failingStream(mapped);
      throw mapped;
    }
    async function* received(): AsyncGenerator<Uint8Array> {
      try {
        if (first.done) return;
        yield first.value;
        for (;;) {
          const next = await iterator.next();
          if (next.done) return;
          yield next.value;
        }
      } catch (error) {
        throw mapError(error);
      } finally {
        call.abort();
        await iterator.return?.();
      }
    }
    return verifiedStream(digest, received(), options.offset ?? 0, signal);
  }

  async put(source: ByteSource, options: BlobPutOptions = {}): Promise<BlobPutResult> {
    const { signal, expectedDigest } = options;
    signal?.throwIfAborted();
    const chunkSize = this.#options.putChunkSize ?? DEFAULT_PUT_CHUNK_SIZE;
    // Hash locally only to honour expectedDigest: a mismatch must cancel the
    // call before the request stream ends, so the server stores nothing.
    const hasher = expectedDigest ? createBlake3() : undefined;
    let size = 0;
    // connect wraps what the request stream throws; keep the original to rethrow it.
    let sourceError: { error: unknown } | undefined;
    async function* chunks() {
      try {
        for await (const chunk of toChunks(source)) {
          signal?.throwIfAborted();
          hasher?.update(chunk);
          size += chunk.byteLength;
          yield chunk;
        }
        if (hasher && expectedDigest) {
          const actual = B3Digest.fromBytes(hasher.digest());
          if (!actual.equals(expectedDigest)) throw integrityError(expectedDigest, actual);
        }
      } catch (error) {
        sourceError = { error };
        throw error;
      }
    }
    let digestBytes: Uint8Array;
    try {
      if (this.#options.fastBlobPath === false) {
        digestBytes = (await this.#client.put(messages(chunks(), chunkSize), { signal })).digest;
      } else {
        digestBytes = await putBlobFast(this.channel, chunks(), { signal, chunkSize });
      }
    } catch (error) {
      if (sourceError && !signal?.aborted) throw sourceError.error;
      throw connectErrorToCastoreError(error, { signal, operation: 'grpc BlobService.Put' });
    }
    const digest = receivedDigest(digestBytes, 'BlobService.Put');
    if (expectedDigest && !digest.equals(expectedDigest)) throw integrityError(expectedDigest, digest);
    return { digest, size };
  }

  async close(): Promise<void> {
    if (!this.#options.keepChannelOpen) await this.channel.close();
  }
}

// biome-ignore lint/correctness/useYield: a stream whose only content is its failure
async function* failingStream(error: unknown): AsyncGenerator<Uint8Array> {
  throw error;
}

async function* dataOf(chunks: AsyncIterable<{ data: Uint8Array }>): AsyncGenerator<Uint8Array> {
  for await (const chunk of chunks) yield chunk.data;
}

async function* messages(chunks: AsyncIterable<Uint8Array>, chunkSize: number): AsyncGenerator<{ data: Uint8Array }> {
  for await (const chunk of chunks) {
    for (let offset = 0; offset < chunk.byteLength; offset += chunkSize) yield { data: chunk.subarray(offset, offset + chunkSize) };
  }
}

/** A digest in a server response; a wrong length is the server's fault. */
export function receivedDigest(bytes: Uint8Array, operation: string): B3Digest {
  try {
    return B3Digest.fromBytes(bytes);
  } catch (error) {
    throw new CastoreError('BACKEND_FAILURE', `grpc ${operation} answered a digest of ${bytes.byteLength} bytes`, { cause: error });
  }
}

/** Opens a channel for `url` (see channel-url.ts) and a GrpcBlobService that owns it. */
export async function grpcBlobServiceFromUrl(
  url: string,
  options: GrpcBlobServiceOptions & GrpcChannelOptions & AbortOptions = {},
): Promise<GrpcBlobService> {
  return new GrpcBlobService(await openGrpcChannel(url, options), options);
}
