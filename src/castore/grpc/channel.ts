/**
 * A client connection to a gRPC endpoint: one HTTP/2 session, opened lazily
 * (or eagerly with `wait-connect=1`), reopened after it dies, and tuned for
 * bulk transfer (large flow-control windows, no compression).
 * Blob and directory clients, and later the build client, share this.
 */
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { Transport } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { type AbortOptions, raceAbort } from '../../common/abort.js';
import { CastoreError } from '../errors.js';
import { type ChannelAddress, channelOrigin, parseChannelUrl } from './channel-url.js';

/** Per-stream flow-control window a channel advertises (and the server's default too). */
export const DEFAULT_STREAM_WINDOW_SIZE = 16 << 20;
/** Connection-wide flow-control window. */
export const DEFAULT_CONNECTION_WINDOW_SIZE = 64 << 20;
/**
 * Largest HTTP/2 frame we let a peer send. node:http2 itself always sends
 * DATA frames of at most 16 KiB, but other implementations send larger
 * frames when allowed, which means less per-frame work on both ends.
 */
export const DEFAULT_MAX_FRAME_SIZE = (1 << 24) - 1;
/** Memory (MiB) nghttp2 may buffer per session before refusing new streams. */
export const DEFAULT_MAX_SESSION_MEMORY_MIB = 256;

export interface GrpcChannelOptions {
  /**
   * PEM certificate(s) to trust for `grpc+https`, instead of Node's bundled
   * roots (e.g. a test CA). Default: the bundled roots.
   */
  ca?: string | Uint8Array;
  /** PEM client certificate and key for `grpc+https` servers that require mutual TLS. */
  clientCert?: { cert: string | Uint8Array; key: string | Uint8Array };
  /** Sent on every call, e.g. `{ authorization: 'Bearer …' }`. */
  headers?: Record<string, string>;
  /** HTTP/2 PING interval while calls are in flight, so a quiet stream stays alive; default `DEFAULT_KEEPALIVE_MS`. */
  keepaliveMs?: number;
  /** Per-stream window we advertise; default `DEFAULT_STREAM_WINDOW_SIZE`. */
  streamWindowSize?: number;
  /** Connection window we advertise; default `DEFAULT_CONNECTION_WINDOW_SIZE`. */
  connectionWindowSize?: number;
}

/** How often a channel with calls in flight pings the server. */
export const DEFAULT_KEEPALIVE_MS = 30_000;

/**
 * One HTTP/2 connection to a gRPC server, usable by connect clients (through
 * `transport`) and by the raw blob fast path (through `openStream`). The
 * session does not keep the process alive while no call is in flight.
 */
export class GrpcChannel {
  readonly address: ChannelAddress;
  /** The origin requests are made to (`http://localhost` for unix sockets). */
  readonly authority: string;
  /** A connect gRPC transport over this channel, with compression turned off. */
  readonly transport: Transport;
  readonly #options: GrpcChannelOptions;
  #session: Promise<http2.ClientHttp2Session> | undefined;
  /** The session `#session` resolves to, known before it connects. */
  #current: http2.ClientHttp2Session | undefined;
  #closed = false;
  readonly #live = new Set<http2.ClientHttp2Session>();
  readonly #streamCounts = new WeakMap<http2.ClientHttp2Session, number>();
  readonly #keepalives = new WeakMap<http2.ClientHttp2Session, NodeJS.Timeout>();

  constructor(address: ChannelAddress | string, options: GrpcChannelOptions = {}) {
    this.address = typeof address === 'string' ? parseChannelUrl(address) : address;
    this.authority = channelOrigin(this.address);
    this.#options = options;
    this.transport = createGrpcTransport({
      baseUrl: this.authority,
      sessionManager: this,
      acceptCompression: [],
    });
  }

  /** Connects now (if not connected); fails with `BACKEND_FAILURE` naming the URL when unreachable. */
  async connect(options: AbortOptions = {}): Promise<void> {
    try {
      await raceAbort(this.#getSession(), options.signal);
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      throw CastoreError.from(error);
    }
  }

  /** @internal For connect's transport: issues an HTTP/2 request on the session. */
  async request(
    method: string,
    path: string,
    headers: http2.OutgoingHttpHeaders,
    options: Omit<http2.ClientSessionRequestOptions, 'signal'>,
  ): Promise<http2.ClientHttp2Stream> {
    const session = await this.#getSession();
    const cancel = new AbortController();
    const stream = session.request(
      { ...headers, ...this.#options.headers, ':method': method, ':path': path },
      { ...options, signal: cancel.signal },
    );
    // connect cancels a call with stream.close(code). While the request body is
    // still open, node's close() first ends it cleanly (END_STREAM) and only
    // then resets it, so the server sees a complete upload before the cancel.
    // Aborting the stream's signal instead sends RST_STREAM(CANCEL) alone.
    const close = stream.close.bind(stream);
    stream.close = (code?: number, callback?: () => void) => {
      if (stream.writableEnded || code === http2.constants.NGHTTP2_NO_ERROR) return close(code, callback);
      if (callback) stream.once('close', callback);
      cancel.abort();
    };
    // Failures reach callers through the stream's end, close and rstCode; never crash on them.
    stream.on('error', () => {});
    this.#track(session, stream);
    return stream;
  }

  /** @internal For connect's transport; liveness is left to TCP. */
  notifyResponseByteRead(): void {}

  /** @internal Opens a raw gRPC POST stream to `path` (used by the blob fast path). */
  async openStream(path: string, headers: http2.OutgoingHttpHeaders): Promise<http2.ClientHttp2Stream> {
    return this.request('POST', path, headers, {});
  }

  /** Closes the connection; calls still in flight fail. The channel cannot be used afterwards. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#session = undefined;
    this.#current = undefined;
    await Promise.all(
      [...this.#live].map(
        (session) =>
          new Promise<void>((resolve) => {
            if (session.destroyed) return resolve();
            session.once('close', () => resolve());
            session.destroy();
          }),
      ),
    );
  }

  #getSession(): Promise<http2.ClientHttp2Session> {
    if (this.#closed) return Promise.reject(new CastoreError('BACKEND_FAILURE', `gRPC channel ${this.address.url} is closed`));
    this.#session ??= this.#open();
    return this.#session;
  }

  #open(): Promise<http2.ClientHttp2Session> {
    const { address } = this;
    const streamWindow = this.#options.streamWindowSize ?? DEFAULT_STREAM_WINDOW_SIZE;
    const connectionWindow = this.#options.connectionWindowSize ?? DEFAULT_CONNECTION_WINDOW_SIZE;
    const sessionOptions: http2.SecureClientSessionOptions = {
      settings: { initialWindowSize: streamWindow, maxFrameSize: DEFAULT_MAX_FRAME_SIZE, enablePush: false },
      maxSessionMemory: DEFAULT_MAX_SESSION_MEMORY_MIB,
    };
    if (address.kind === 'unix') sessionOptions.createConnection = () => net.connect(address.path);
    if (address.kind === 'https' && this.#options.ca !== undefined) sessionOptions.ca = Buffer.from(this.#options.ca);
    if (address.kind === 'https' && this.#options.clientCert) {
      sessionOptions.cert = Buffer.from(this.#options.clientCert.cert);
      sessionOptions.key = Buffer.from(this.#options.clientCert.key);
    }
    return new Promise((resolve, reject) => {
      const session = http2.connect(this.authority, sessionOptions);
      this.#live.add(session);
      this.#current = session;
      let connected = false;
      const forget = () => {
        if (this.#current !== session) return;
        this.#current = undefined;
        this.#session = undefined;
      };
      session.on('error', (error) => {
        forget();
        if (!connected) {
          reject(
            new CastoreError('BACKEND_FAILURE', `cannot connect to ${address.url}: ${error.message}`, {
              cause: error,
              details: { url: address.url },
            }),
          );
        }
      });
      session.once('goaway', forget);
      session.once('close', () => {
        forget();
        this.#live.delete(session);
        if (!connected)
          reject(
            new CastoreError('BACKEND_FAILURE', `cannot connect to ${address.url}: connection closed`, { details: { url: address.url } }),
          );
      });
      session.once('connect', () => {
        connected = true;
        session.setLocalWindowSize(connectionWindow);
        session.unref();
        resolve(session);
      });
    });
  }

  /** Keeps the process alive exactly while the session has streams in flight. */
  #track(session: http2.ClientHttp2Session, stream: http2.ClientHttp2Stream): void {
    const count = this.#streamCounts.get(session) ?? 0;
    if (count === 0) {
      session.ref();
      this.#keepalives.set(
        session,
        setInterval(() => {
          if (!session.destroyed) session.ping(() => {});
        }, this.#options.keepaliveMs ?? DEFAULT_KEEPALIVE_MS),
      );
    }
    this.#streamCounts.set(session, count + 1);
    stream.once('close', () => {
      const left = (this.#streamCounts.get(session) ?? 1) - 1;
      this.#streamCounts.set(session, left);
      if (left === 0) {
        clearInterval(this.#keepalives.get(session));
        if (!session.destroyed) session.unref();
      }
    });
  }
}

/**
 * Opens a channel from its URL. With `wait-connect=1` it connects first and
 * fails with `BACKEND_FAILURE` when the endpoint is unreachable.
 */
export async function openGrpcChannel(url: string | ChannelAddress, options: GrpcChannelOptions & AbortOptions = {}): Promise<GrpcChannel> {
  const channel = new GrpcChannel(url, options);
  if (channel.address.waitConnect) {
    try {
      await channel.connect(options);
    } catch (error) {
      await channel.close();
      throw error;
    }
  }
  return channel;
}
