/**
 * Client side of the blob fast path: BlobService.Read and BlobService.Put
 * written directly on an HTTP/2 stream with standard gRPC framing, so blob
 * bytes are neither re-encoded by protobuf-es nor re-assembled into messages
 * (connect copies each chunk several times). Any gRPC server understands it.
 * Failures surface as ConnectError (or the caller's abort reason), like a
 * connect call, so status.ts maps them the same way.
 */
import * as http2 from 'node:http2';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { validateResponse, validateTrailer } from '@connectrpc/connect/protocol-grpc';
import { PutBlobResponseSchema, ReadBlobRequestSchema } from '../../gen/snix/castore/v1/rpc_blobstore_pb.js';
import type { GrpcChannel } from './channel.js';
import { ChunkCoalescer, coalescedBlobData } from './chunk-coalescer.js';
import { BlobChunkDecoder, blobChunkFrameHead, frameMessage, headersFromNode, MessageDecoder } from './grpc-framing.js';
import { ReadAhead } from './read-ahead.js';
import { WriteWindow } from './write-window.js';

export const BLOB_READ_PATH = '/snix.castore.v1.BlobService/Read';
export const BLOB_PUT_PATH = '/snix.castore.v1.BlobService/Put';

const REQUEST_HEADERS: http2.OutgoingHttpHeaders = {
  'content-type': 'application/grpc+proto',
  te: 'trailers',
  'grpc-accept-encoding': 'identity',
  'user-agent': 'kiln-castore-grpc',
};

/** The error for a stream that ended without a usable status (reset, connection lost). */
function streamError(stream: http2.ClientHttp2Stream, cause?: unknown): ConnectError {
  const code = stream.rstCode;
  if (code === http2.constants.NGHTTP2_REFUSED_STREAM)
    return new ConnectError('stream refused by the server', Code.Unavailable, undefined, undefined, cause);
  if (code === http2.constants.NGHTTP2_CANCEL)
    return new ConnectError('stream canceled by the server', Code.Canceled, undefined, undefined, cause);
  if (code === http2.constants.NGHTTP2_ENHANCE_YOUR_CALM)
    return new ConnectError('server asked to slow down', Code.ResourceExhausted, undefined, undefined, cause);
  if (cause instanceof ConnectError) return cause;
  const message = cause instanceof Error ? cause.message : `stream closed${code ? ` with HTTP/2 code ${code}` : ''}`;
  return new ConnectError(message, Code.Unavailable, undefined, undefined, cause);
}

/** Tracks a response's headers and trailers as they arrive. */
class ResponseState {
  headers: Headers | undefined;
  status = 0;
  trailers = new Headers();

  constructor(stream: http2.ClientHttp2Stream) {
    stream.once('response', (headers) => {
      this.status = Number(headers[':status']);
      this.headers = headersFromNode(headers);
    });
    stream.once('trailers', (trailers) => {
      this.trailers = headersFromNode(trailers);
    });
  }

  /** Throws the status the response headers carry; true when they hold the final status (trailers-only). */
  checkHeaders(): boolean {
    if (!this.headers) throw new ConnectError('protocol error: stream ended without response headers', Code.Internal);
    const { foundStatus, headerError } = validateResponse(this.status, this.headers);
    if (headerError) throw headerError;
    return foundStatus;
  }

  checkTrailers(): void {
    validateTrailer(this.trailers, this.headers ?? new Headers());
  }

  /** Throws the error status the server sent so far, if any. */
  throwSentError(): void {
    if (this.headers?.has('grpc-status')) this.checkHeaders();
    if (this.trailers.has('grpc-status')) this.checkTrailers();
  }

  /** During an upload: throws when the server already ended the call (with its status if it sent one). */
  checkNotEnded(stream: http2.ClientHttp2Stream): void {
    const statusSent = this.headers?.has('grpc-status') || this.trailers.has('grpc-status');
    if (!statusSent && !stream.closed) return;
    this.throwSentError();
    if (!statusSent) throw streamError(stream);
    throw new ConnectError('protocol error: the server ended the call before the upload ended', Code.Internal);
  }
}

function cancelStream(stream: http2.ClientHttp2Stream): void {
  // GrpcChannel turns this into RST_STREAM(CANCEL) without ending the body first.
  if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
}

/**
 * Streams the bytes of blob `digest` as the server sends them (unverified:
 * the caller verifies). Throws ConnectError for a non-OK status (NotFound
 * before any byte), or `signal.reason` once `signal` aborts. Returning early
 * cancels the call.
 */
export async function* readBlobFast(channel: GrpcChannel, digest: Uint8Array, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  signal?.throwIfAborted();
  const stream = await channel.openStream(BLOB_READ_PATH, REQUEST_HEADERS);
  const response = new ResponseState(stream);
  const onAbort = () => cancelStream(stream);
  signal?.addEventListener('abort', onAbort, { once: true });
  let complete = false;
  try {
    stream.end(frameMessage(toBinary(ReadBlobRequestSchema, create(ReadBlobRequestSchema, { digest }))));
    const decoder = new BlobChunkDecoder();
    const coalescer = new ChunkCoalescer();
    const reader = new ReadAhead(stream);
    try {
      yield* coalescedBlobData(reader, decoder, coalescer);
    } catch (error) {
      reader.dispose();
      signal?.throwIfAborted();
      if (response.headers?.has('grpc-status')) response.checkHeaders();
      throw streamError(stream, error);
    }
    reader.dispose();
    signal?.throwIfAborted();
    if (stream.rstCode !== undefined && stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) throw streamError(stream);
    if (!response.checkHeaders()) response.checkTrailers();
    decoder.finish();
    const rest = coalescer.takeAll();
    if (rest) yield rest;
    complete = true;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    if (!complete) cancelStream(stream);
  }
}

/** What `putBlobFast` needs besides the channel. */
export interface PutBlobFastOptions {
  signal?: AbortSignal;
  /** Largest `BlobChunk.data` to send. */
  chunkSize: number;
}

/**
 * Uploads `source` as one BlobService.Put call and returns the digest the
 * server answered (unvalidated). When `source` throws or `signal` aborts, the
 * call is reset before the request ends, so the server stores nothing.
 */
export async function putBlobFast(
  channel: GrpcChannel,
  source: AsyncIterable<Uint8Array>,
  options: PutBlobFastOptions,
): Promise<Uint8Array> {
  const { signal, chunkSize } = options;
  signal?.throwIfAborted();
  const stream = await channel.openStream(BLOB_PUT_PATH, REQUEST_HEADERS);
  const response = new ResponseState(stream);
  const messages: Uint8Array[] = [];
  const decoder = new MessageDecoder(1 << 20);
  let decodeError: unknown;
  stream.on('data', (chunk: Buffer) => {
    try {
      messages.push(...decoder.push(chunk));
    } catch (error) {
      decodeError ??= error;
    }
  });
  const finished = new Promise<void>((resolve) => stream.once('close', resolve));
  const onAbort = () => cancelStream(stream);
  signal?.addEventListener('abort', onAbort, { once: true });
  const window = new WriteWindow(stream);
  const iterator = source[Symbol.asyncIterator]();
  let sourceDone = false;
  try {
    try {
      let pending = iterator.next();
      for (;;) {
        const next = await pending;
        if (next.done) {
          sourceDone = true;
          break;
        }
        signal?.throwIfAborted();
        response.checkNotEnded(stream);
        const chunk = next.value;
        for (let offset = 0; offset + chunkSize < chunk.byteLength; offset += chunkSize) {
          window.write(blobChunkFrameHead(chunkSize));
          window.write(chunk.subarray(offset, offset + chunkSize));
          await window.ready(signal, () => streamError(stream));
        }
        const last = chunk.byteLength <= chunkSize ? chunk : chunk.subarray(Math.floor((chunk.byteLength - 1) / chunkSize) * chunkSize);
        if (last.byteLength > 0) {
          window.write(blobChunkFrameHead(last.byteLength));
          window.write(last);
        }
        // Pull the next chunk from the source while the queued ones drain.
        pending = iterator.next();
        pending.catch(() => {});
        await window.ready(signal, () => streamError(stream));
      }
      signal?.throwIfAborted();
    } catch (error) {
      cancelStream(stream);
      // A server that failed the call first explains the failure better.
      if (!signal?.aborted) response.throwSentError();
      throw error;
    } finally {
      if (!sourceDone) void Promise.resolve(iterator.return?.()).catch(() => {});
    }
    stream.end();
    await finished;
    signal?.throwIfAborted();
    if (decodeError) throw decodeError;
    if (!response.headers) throw streamError(stream);
    if (!response.checkHeaders()) response.checkTrailers();
    decoder.finish();
    if (messages.length !== 1)
      throw new ConnectError(`protocol error: ${messages.length} response messages for BlobService.Put`, Code.Internal);
    return fromBinary(PutBlobResponseSchema, messages[0] as Uint8Array).digest;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
