/**
 * The castore gRPC server: BlobService and DirectoryService (and whatever
 * `extraRoutes` adds, such as the build service) over node:http2 on a Unix
 * socket or a TCP port, speaking plain gRPC only, without compression, with
 * flow-control windows sized for bulk transfer.
 */
import * as fs from 'node:fs/promises';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { ConnectRouter } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { BlobService as BlobServiceDesc } from '../../gen/snix/castore/v1/rpc_blobstore_pb.js';
import { DirectoryService as DirectoryServiceDesc } from '../../gen/snix/castore/v1/rpc_directory_pb.js';
import type { BlobService } from '../blob-service/blob-service.js';
import type { DirectoryService } from '../directory-service/directory-service.js';
import { CastoreError } from '../errors.js';
import { type BlobServiceServerOptions, createBlobServiceImpl } from './blob-service-server.js';
import {
  DEFAULT_CONNECTION_WINDOW_SIZE,
  DEFAULT_KEEPALIVE_MS,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_MAX_SESSION_MEMORY_MIB,
  DEFAULT_STREAM_WINDOW_SIZE,
} from './channel.js';
import { createDirectoryServiceImpl } from './directory-service-server.js';
import { createFastBlobHandler } from './fast-blob-server.js';

/** How long `close()` lets calls in flight finish before cutting them off. */
export const DEFAULT_CLOSE_GRACE_MS = 2000;

export interface CastoreServerOptions extends BlobServiceServerOptions {
  /** `unix:///abs/path.sock`, or `HOST:PORT` (`[::1]:PORT` for IPv6); port 0 picks a free port. */
  listen: string;
  blobService: BlobService;
  directoryService: DirectoryService;
  /** Registers more services on the same router (the build service, for instance). */
  extraRoutes?: (router: ConnectRouter) => void;
  /**
   * Serve TLS (grpc+https) with this PEM certificate chain and key; default
   * cleartext. With `clientCa`, clients must present a certificate it signed
   * (mutual TLS).
   */
  tls?: { cert: string | Uint8Array; key: string | Uint8Array; clientCa?: string | Uint8Array };
  /**
   * Decides from a call's `authorization` header whether it may proceed;
   * refused calls end with UNAUTHENTICATED before any service sees them.
   * Default: every call proceeds.
   */
  authorize?: (authorization: string | undefined) => boolean;
  /** HTTP/2 PING interval on every connection, keeping idle streams alive through middleboxes; default `DEFAULT_KEEPALIVE_MS`. */
  keepaliveMs?: number;
  /** Per-stream window we advertise; default `DEFAULT_STREAM_WINDOW_SIZE`. */
  streamWindowSize?: number;
  /** Connection window we advertise; default `DEFAULT_CONNECTION_WINDOW_SIZE`. */
  connectionWindowSize?: number;
  /**
   * Serve blob Read and Put on the lean HTTP/2 path of fast-blob-server.ts
   * rather than through connect (same wire protocol, fewer copies); default true.
   */
  fastBlobPath?: boolean;
}

export interface CastoreServer {
  /** What the server is bound to: `unix:///abs/path.sock` or `HOST:PORT` with the actual port. */
  readonly address: string;
  /** A channel URL clients can use: `grpc+unix://…`, `grpc+http://…` or `grpc+https://…`. */
  readonly url: string;
  /**
   * Stops accepting connections, lets calls in flight finish for up to
   * `graceMs` (default `DEFAULT_CLOSE_GRACE_MS`), then cuts the rest off and
   * removes the socket file. Does not close the services.
   */
  close(options?: { graceMs?: number }): Promise<void>;
}

/** Where `startCastoreServer` listens, parsed from its `listen` option. */
export type ListenAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/** Parses a `listen` value; throws `CastoreError('INVALID_URL')` naming it. */
export function parseListenAddress(listen: string): ListenAddress {
  const invalid = (reason: string) => new CastoreError('INVALID_URL', `invalid listen address ${JSON.stringify(listen)}: ${reason}`);
  if (listen.startsWith('unix:')) {
    if (!listen.startsWith('unix:///')) throw invalid('expected unix:///absolute/path');
    const path = decodeURIComponent(listen.slice('unix://'.length));
    if (path === '/' || path.includes('\0')) throw invalid('the socket path must be absolute');
    return { kind: 'unix', path };
  }
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(listen);
  if (!match) throw invalid('expected unix:///path or HOST:PORT');
  const port = Number(match[3]);
  if (port > 65535) throw invalid('port out of range');
  const host = match[1] ?? (match[2] as string);
  if (match[1] !== undefined && net.isIPv6(host) === false) throw invalid('invalid IPv6 address');
  return { kind: 'tcp', host, port };
}

/** Starts serving; resolves once the server is listening. */
export async function startCastoreServer(options: CastoreServerOptions): Promise<CastoreServer> {
  const listen = parseListenAddress(options.listen);
  const blobImpl = createBlobServiceImpl(options.blobService, options);
  const directoryImpl = createDirectoryServiceImpl(options.directoryService);
  const connectHandler = connectNodeAdapter({
    grpc: true,
    grpcWeb: false,
    connect: false,
    acceptCompression: [],
    routes(router) {
      router.service(BlobServiceDesc, blobImpl);
      router.service(DirectoryServiceDesc, directoryImpl);
      options.extraRoutes?.(router);
    },
  });
  const fastBlob = options.fastBlobPath === false ? undefined : createFastBlobHandler(options.blobService, options);
  const handler = (request: http2.Http2ServerRequest, response: http2.Http2ServerResponse) => {
    if (options.authorize && !options.authorize(request.headers.authorization)) {
      // A trailers-only gRPC response: one HEADERS frame carrying the status and
      // ending the stream (writeHead + end would send headers, then an empty DATA
      // frame without trailers, which gRPC C-core reports as UNKNOWN).
      request.resume();
      response.stream.respond(
        {
          ':status': 200,
          'content-type': 'application/grpc',
          'grpc-status': '16',
          'grpc-message': 'missing or invalid bearer token',
        },
        { endStream: true },
      );
      return;
    }
    if (!fastBlob?.(request)) connectHandler(request, response);
  };
  const serverOptions: http2.SecureServerOptions = {
    settings: {
      initialWindowSize: options.streamWindowSize ?? DEFAULT_STREAM_WINDOW_SIZE,
      maxFrameSize: DEFAULT_MAX_FRAME_SIZE,
    },
    maxSessionMemory: DEFAULT_MAX_SESSION_MEMORY_MIB,
  };
  const server = options.tls
    ? http2.createSecureServer(
        {
          ...serverOptions,
          cert: Buffer.from(options.tls.cert),
          key: Buffer.from(options.tls.key),
          allowHTTP1: false,
          ...(options.tls.clientCa ? { ca: Buffer.from(options.tls.clientCa), requestCert: true, rejectUnauthorized: true } : {}),
        },
        handler,
      )
    : http2.createServer(serverOptions, handler);
  const connectionWindow = options.connectionWindowSize ?? DEFAULT_CONNECTION_WINDOW_SIZE;
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.on('error', () => {}); // the session closes itself; its streams already report the failure
    if (session.connecting) session.once('connect', () => session.setLocalWindowSize(connectionWindow));
    else session.setLocalWindowSize(connectionWindow);
  });

  const keepalive = setInterval(() => {
    for (const session of sessions) if (!session.closed && !session.destroyed) session.ping(() => {});
  }, options.keepaliveMs ?? DEFAULT_KEEPALIVE_MS);
  keepalive.unref();

  if (listen.kind === 'unix') await listenUnix(server, listen.path);
  else await listenOn(server, listen.port, listen.host);

  let address: string;
  let url: string;
  const scheme = options.tls ? 'grpc+https' : 'grpc+http';
  if (listen.kind === 'unix') {
    address = `unix://${listen.path}`;
    url = `grpc+unix://${listen.path}`;
  } else {
    const bound = server.address() as net.AddressInfo;
    const host = net.isIPv6(listen.host) ? `[${listen.host}]` : listen.host;
    address = `${host}:${bound.port}`;
    url = `${scheme}://${address}`;
  }

  let closing: Promise<void> | undefined;
  return {
    address,
    url,
    close({ graceMs = DEFAULT_CLOSE_GRACE_MS } = {}) {
      closing ??= (async () => {
        clearInterval(keepalive);
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const session of sessions) session.close();
        const timer = setTimeout(() => {
          for (const session of sessions) session.destroy();
        }, graceMs);
        await stopped;
        clearTimeout(timer);
        if (listen.kind === 'unix') await fs.rm(listen.path, { force: true });
      })();
      return closing;
    },
  };
}

function listenOn(server: net.Server, port: number, host: string): Promise<void>;
function listenOn(server: net.Server, path: string): Promise<void>;
function listenOn(server: net.Server, portOrPath: number | string, host?: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => reject(error);
    server.once('error', onError);
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    if (typeof portOrPath === 'number') server.listen(portOrPath, host, onListening);
    else server.listen(portOrPath, onListening);
  });
}

/** Listens on a socket path, replacing a stale socket file nobody answers on. */
async function listenUnix(server: net.Server, path: string): Promise<void> {
  try {
    await listenOn(server, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || (await socketIsLive(path))) throw error;
    await fs.rm(path, { force: true });
    await listenOn(server, path);
  }
}

function socketIsLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
