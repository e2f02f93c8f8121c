/**
 * Server side of the blob fast path: answers BlobService.Read and
 * BlobService.Put directly on the HTTP/2 stream with standard gRPC framing,
 * same semantics as blob-service-server.ts (which still serves Stat, and any
 * Read/Put this path declines: other content types, compressed requests).
 */
import * as http2 from 'node:http2';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { parseContentType, parseTimeout } from '@connectrpc/connect/protocol-grpc';
import { PutBlobResponseSchema, type ReadBlobRequest, ReadBlobRequestSchema } from '../../gen/snix/castore/v1/rpc_blobstore_pb.js';
import type { B3Digest } from '../b3-digest.js';
import type { BlobService } from '../blob-service/blob-service.js';
import { DEFAULT_READ_CHUNK_SIZE, limitChunkSize } from './blob-service-server.js';
import { ChunkCoalescer, coalescedBlobData } from './chunk-coalescer.js';
import { BLOB_PUT_PATH, BLOB_READ_PATH } from './fast-blob-client.js';
import { BlobChunkDecoder, blobChunkFrameHead, frameMessage, MessageDecoder, statusFields } from './grpc-framing.js';
import { ReadAhead } from './read-ahead.js';
import { castoreErrorToConnectError, digestFromWire, notFound } from './status.js';
import { WriteWindow } from './write-window.js';

/** Largest request message accepted on Read (a ReadBlobRequest is ~34 bytes). */
const MAX_READ_REQUEST_LENGTH = 64 << 10;

export interface FastBlobHandlerOptions {
  /** Largest chunk a Read response message carries; default `DEFAULT_READ_CHUNK_SIZE`. */
  readChunkSize?: number;
}

/** Handles a request when it is a binary, uncompressed gRPC Read or Put; returns false to leave it to connect. */
export type FastBlobHandler = (request: http2.Http2ServerRequest) => boolean;

/** A call's signal: aborted when the client goes away or its `grpc-timeout` passes. */
class CallSignal {
  readonly #controller = new AbortController();
  readonly signal: AbortSignal;
  #timer: NodeJS.Timeout | undefined;

  constructor(stream: http2.ServerHttp2Stream, timeoutHeader: string | undefined) {
    this.signal = this.#controller.signal;
    stream.once('close', () => this.#controller.abort(new ConnectError('the client canceled the call', Code.Canceled)));
    const { timeoutMs, error } = parseTimeout(timeoutHeader ?? null, Number.MAX_SAFE_INTEGER);
    if (error) throw error;
    if (timeoutMs !== undefined) {
      this.#timer = setTimeout(
        () => this.#controller.abort(new ConnectError('the call exceeded its deadline', Code.DeadlineExceeded)),
        timeoutMs,
      );
    }
  }

  done(): void {
    clearTimeout(this.#timer);
  }
}

/** Sends `error` as the call's status: trailers when headers went out, else a trailers-only response. */
function sendError(stream: http2.ServerHttp2Stream, contentType: string, error: ConnectError): void {
  if (stream.closed || stream.destroyed) return;
  if (stream.headersSent) {
    stream.removeAllListeners('wantTrailers');
    stream.once('wantTrailers', () => stream.sendTrailers(statusFields(error)));
    stream.end();
  } else {
    stream.respond({ ':status': 200, 'content-type': contentType, ...statusFields(error) }, { endStream: true });
  }
  // A client still uploading learns from the status; RST_STREAM(NO_ERROR) tells it to stop sending.
  if (!stream.readableEnded) stream.close(http2.constants.NGHTTP2_NO_ERROR);
}

/** Sends response headers; trailers (the OK status unless overridden) follow once the body ends. */
function respond(stream: http2.ServerHttp2Stream, contentType: string): { trailers: http2.OutgoingHttpHeaders } {
  const state = { trailers: statusFields(undefined) };
  stream.respond({ ':status': 200, 'content-type': contentType, 'grpc-accept-encoding': 'identity' }, { waitForTrailers: true });
  // The compat response object node created for this stream would send its own (empty) trailers.
  stream.removeAllListeners('wantTrailers');
  stream.once('wantTrailers', () => stream.sendTrailers(state.trailers));
  return state;
}

/** Collects a small request body (the one ReadBlobRequest). */
function readRequestMessages(stream: http2.ServerHttp2Stream, signal: AbortSignal): Promise<Uint8Array[]> {
  return new Promise((resolve, reject) => {
    const decoder = new MessageDecoder(MAX_READ_REQUEST_LENGTH);
    const messages: Uint8Array[] = [];
    const fail = (error: unknown) => {
      signal.removeEventListener('abort', onAbort);
      stream.off('data', onData);
      reject(error);
    };
    const onAbort = () => fail(signal.reason);
    const onData = (chunk: Buffer) => {
      try {
        messages.push(...decoder.push(chunk));
      } catch (error) {
        fail(error);
      }
    };
    stream.on('data', onData);
    stream.once('end', () => {
      signal.removeEventListener('abort', onAbort);
      if (stream.aborted) return reject(signal.reason ?? new ConnectError('the client canceled the call', Code.Canceled));
      try {
        decoder.finish();
        resolve(messages);
      } catch (error) {
        reject(error);
      }
    });
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

async function serveRead(
  service: BlobService,
  stream: http2.ServerHttp2Stream,
  contentType: string,
  call: CallSignal,
  chunkSize: number,
): Promise<void> {
  const { signal } = call;
  const messages = await readRequestMessages(stream, signal);
  if (messages.length !== 1)
    throw new ConnectError(`protocol error: ${messages.length} request messages for BlobService.Read`, Code.InvalidArgument);
  let request: ReadBlobRequest;
  try {
    request = fromBinary(ReadBlobRequestSchema, messages[0] as Uint8Array);
  } catch (error) {
    throw new ConnectError('malformed ReadBlobRequest', Code.InvalidArgument, undefined, undefined, error);
  }
  const digest = digestFromWire(request.digest, 'blob');
  const blob = await service.read(digest, { signal });
  if (!blob) throw notFound('blob', digest);
  const iterator = limitChunkSize(blob, chunkSize)[Symbol.asyncIterator]();
  const window = new WriteWindow(stream);
  const gone = () => signal.reason ?? new ConnectError('the client canceled the call', Code.Canceled);
  let pending = iterator.next();
  try {
    let next = await pending;
    respond(stream, contentType);
    while (!next.done) {
      signal.throwIfAborted();
      window.write(blobChunkFrameHead(next.value.byteLength));
      window.write(next.value);
      // Produce the next chunk (disk read, hashing) while the queued ones drain.
      pending = iterator.next();
      pending.catch(() => {});
      await window.ready(signal, gone);
      next = await pending;
    }
  } finally {
    // Runs on cancel too (unlike a connect handler's generator), releasing the backend's stream.
    await iterator.return?.(undefined);
  }
  stream.end();
}

async function servePut(service: BlobService, stream: http2.ServerHttp2Stream, contentType: string, call: CallSignal): Promise<void> {
  const { signal } = call;
  async function* data(): AsyncGenerator<Uint8Array> {
    const decoder = new BlobChunkDecoder();
    const coalescer = new ChunkCoalescer();
    // If the backend stops early, the stream stays open: the error status still has to go out.
    const reader = new ReadAhead(stream);
    try {
      yield* coalescedBlobData(reader, decoder, coalescer);
    } finally {
      reader.dispose();
    }
    // A reset stream also ends its readable side; only a clean END_STREAM completes the upload.
    if (stream.aborted || signal.aborted) throw signal.reason ?? new ConnectError('the client canceled the call', Code.Canceled);
    decoder.finish();
    const rest = coalescer.takeAll();
    if (rest) yield rest;
  }
  const source = data();
  let digest: B3Digest;
  try {
    // Every chunk is a fresh buffer or a piece of one that nothing else reads: the backend may keep it.
    ({ digest } = await service.put(source, { signal, adoptChunks: true }));
  } finally {
    // A backend that stopped reading early may not have closed the source. Not
    // awaited: a read still pending ends only when the stream does (below).
    source.return(undefined).catch(() => {});
  }
  signal.throwIfAborted();
  respond(stream, contentType);
  stream.end(frameMessage(toBinary(PutBlobResponseSchema, create(PutBlobResponseSchema, { digest: digest.bytes }))));
}

/**
 * Builds the fast-path handler for `service`. It takes over only POSTs to
 * BlobService/Read and /Put with a binary gRPC content type and no request
 * compression; every other request is left to the connect router.
 */
export function createFastBlobHandler(service: BlobService, options: FastBlobHandlerOptions = {}): FastBlobHandler {
  const chunkSize = options.readChunkSize ?? DEFAULT_READ_CHUNK_SIZE;
  return (request) => {
    const path = request.url;
    if (request.method !== 'POST' || (path !== BLOB_READ_PATH && path !== BLOB_PUT_PATH)) return false;
    const contentType = request.headers['content-type'];
    if (parseContentType(contentType ?? null)?.binary !== true) return false;
    const encoding = request.headers['grpc-encoding'];
    if (encoding !== undefined && encoding !== 'identity') return false;
    const { stream } = request;
    stream.on('error', () => {}); // a reset reaches the handler through the call signal
    const responseType = contentType as string;
    let call: CallSignal;
    try {
      call = new CallSignal(stream, request.headers['grpc-timeout'] as string | undefined);
    } catch (error) {
      sendError(stream, responseType, castoreErrorToConnectError(error));
      return true;
    }
    const served =
      path === BLOB_READ_PATH ? serveRead(service, stream, responseType, call, chunkSize) : servePut(service, stream, responseType, call);
    served.then(
      () => call.done(),
      (error: unknown) => {
        call.done();
        const status =
          call.signal.aborted && call.signal.reason instanceof ConnectError
            ? call.signal.reason
            : castoreErrorToConnectError(error, call.signal);
        sendError(stream, responseType, status);
      },
    );
    return true;
  };
}
