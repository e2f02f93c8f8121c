/**
 * `grpc+unix://…`, `grpc+http://…`, `grpc+https://…`: a remote Kiln (or any
 * `kiln.build.v1` server) as a BuildService. Before a build, the client
 * sends the server what it lacks of the input closure, read from the local
 * store (inputs it has seen there already are not asked about again); then
 * it streams the build's events. Outputs stay in the server's
 * castore (`remoteCastore` reads them).
 *
 * A build whose client goes away is cancelled at once, unless the client
 * asked for a re-attach grace (`reattachGraceMs`, builder URL parameter
 * `reattach-grace=DURATION`): then the server keeps the build running that
 * long after the connection breaks, and the client attaches again from the
 * last event it saw. An abort cancels the remote build.
 */
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import {
  GrpcBlobService,
  type GrpcChannel,
  type GrpcChannelOptions,
  GrpcDirectoryService,
  openGrpcChannel,
  parseChannelUrl,
} from '../../castore/grpc/index.js';
import type { BlobService, DirectoryService } from '../../castore/index.js';
import type { AbortOptions } from '../../common/abort.js';
import { type BuildEvent as BuildEventMessage, BuildEvents } from '../../gen/kiln/build/v1/build_events_pb.js';
import type { BuildEvent } from '../build-events.js';
import type { BuildRequest } from '../build-request.js';
import type { BuildService } from '../build-service.js';
import { BuildError } from '../errors.js';
import { type UploadSummary, uploadInputClosure } from '../input-closure.js';
import { buildRequestToMessage } from '../proto-convert.js';
import { parseDuration } from '../units.js';
import { REATTACH_GRACE_HEADER } from './build-server.js';
import { buildEventFromMessage, isTerminal } from './event-convert.js';
import { connectErrorToBuildError } from './status.js';

/** A remote builder's self-description (kiln.build.v1 BuilderInfo). */
export interface BuilderInfo {
  backend: string;
  systems: string[];
  inFlight: number;
  maxInFlight: number;
  memoryBytes: number;
}

/** How long the client keeps trying to attach again after losing a build's stream. */
export const DEFAULT_REATTACH_GRACE_MS = 0;
const REATTACH_PAUSE_MS = 250;
/** How many input nodes a client remembers the server has. */
const MAX_REMEMBERED_INPUTS = 10_000;

export interface GrpcBuildServiceOptions extends GrpcChannelOptions {
  /** The server: `grpc+unix:///path.sock`, `grpc+http://host:port` or `grpc+https://host:port`. */
  url: string;
  /** The local store that inputs are uploaded from. */
  blobService: BlobService;
  directoryService: DirectoryService;
  /** Bearer token sent with every call. */
  token?: string;
  reattachGraceMs?: number;
  /** Told, before each build is sent, what of its input closure had to be uploaded and how long that took (checks included). */
  onUpload?: (summary: UploadSummary & { ms: number }) => void;
}

export class GrpcBuildService implements BuildService {
  readonly name: string;
  readonly #options: GrpcBuildServiceOptions;
  readonly #channel: Promise<GrpcChannel>;
  #remote: { blobService: GrpcBlobService; directoryService: GrpcDirectoryService } | undefined;
  /** Input nodes the server is known to hold whole (found there or uploaded), by `nodeKey`. */
  readonly #present = new Set<string>();

  constructor(options: GrpcBuildServiceOptions) {
    parseChannelUrl(options.url); // a bad URL fails here, not at the first build
    this.name = `grpc(${options.url})`;
    this.#options = options;
    this.#channel = openGrpcChannel(options.url, {
      ...options,
      headers: { ...options.headers, ...(options.token ? { authorization: `Bearer ${options.token}` } : {}) },
    });
    this.#channel.catch(() => {}); // reported by the first call
  }

  /** The server's castore, where inputs go and outputs are (the same whatever the build). */
  async remoteCastore(_invocationId?: string): Promise<{ blobService: BlobService; directoryService: DirectoryService }> {
    const channel = await this.#channel;
    this.#remote ??= {
      blobService: new GrpcBlobService(channel, { keepChannelOpen: true }),
      directoryService: new GrpcDirectoryService(channel, { keepChannelOpen: true }),
    };
    return this.#remote;
  }

  /** What the server offers and how busy it is. */
  async describe(options: AbortOptions & { timeoutMs?: number } = {}): Promise<BuilderInfo> {
    try {
      const client = createClient(BuildEvents, (await this.#channel).transport);
      const info = await client.describe(
        {},
        { ...(options.signal ? { signal: options.signal } : {}), timeoutMs: options.timeoutMs ?? 5000 },
      );
      return {
        backend: info.backend,
        systems: [...info.systems],
        inFlight: info.inFlight,
        maxInFlight: info.maxInFlight,
        memoryBytes: Number(info.memoryBytes),
      };
    } catch (error) {
      throw connectErrorToBuildError(error, this.#options.url, options.signal);
    }
  }

  async *build(request: BuildRequest, options: AbortOptions = {}): AsyncGenerator<BuildEvent> {
    const { signal } = options;
    const url = this.#options.url;
    const fail = (error: unknown) => connectErrorToBuildError(error, url, signal);
    let client: ReturnType<typeof createClient<typeof BuildEvents>>;
    try {
      client = createClient(BuildEvents, (await this.#channel).transport);
      await this.#upload(request, false, signal);
    } catch (error) {
      throw error instanceof BuildError ? error : fail(error);
    }
    const grace = this.#options.reattachGraceMs ?? DEFAULT_REATTACH_GRACE_MS;
    let invocationId: string | undefined;
    let next = 0;
    const start = () =>
      client.build(buildRequestToMessage(request), {
        signal,
        headers: { [REATTACH_GRACE_HEADER]: String(grace) },
      });
    let stream: AsyncIterable<BuildEventMessage> = start();
    let uploadedAgain = false;
    let lostAt: number | undefined;
    for (;;) {
      try {
        for await (const message of stream) {
          lostAt = undefined;
          if (Number(message.sequence) < next) continue; // replayed after attaching again
          next = Number(message.sequence) + 1;
          const event = buildEventFromMessage(message);
          if (event.type === 'accepted') invocationId = event.invocationId;
          yield event;
          if (isTerminal(event)) return;
        }
        throw new BuildError('BUILDER_UNREACHABLE', `builder ${url}: the event stream ended before the build did`);
      } catch (error) {
        if (signal?.aborted) {
          if (invocationId) await client.cancel({ invocationId }, { timeoutMs: 1000 }).catch(() => {});
          throw signal.reason;
        }
        const mapped = fail(error);
        if (invocationId === undefined && !uploadedAgain && mapped instanceof BuildError && mapped.code === 'INPUT_MISSING') {
          // Inputs this client had seen there are gone (a server with a fresh store): check everything, send what is missing.
          uploadedAgain = true;
          try {
            await this.#upload(request, true, signal);
          } catch (uploadError) {
            throw uploadError instanceof BuildError ? uploadError : fail(uploadError);
          }
          stream = start();
          continue;
        }
        if (invocationId === undefined || !(mapped instanceof BuildError)) throw mapped;
        if (lostAt !== undefined && ConnectError.from(error).code === Code.NotFound)
          throw new BuildError(
            'BUILDER_FAILED',
            `builder ${url}: the build was lost with the connection: the server no longer knows it (restarted?)`,
            {
              cause: error,
            },
          );
        if (mapped.code !== 'BUILDER_UNREACHABLE') throw mapped;
        if (grace === 0)
          throw new BuildError(
            'BUILDER_UNREACHABLE',
            `builder ${url}: the build was lost with the connection (${connectErrorMessage(error)}); ` +
              'a builder URL with reattach-grace=DURATION keeps a build running through a broken connection',
            { cause: error },
          );
        lostAt ??= performance.now();
        if (performance.now() - lostAt > grace)
          throw new BuildError(
            'BUILDER_UNREACHABLE',
            `builder ${url}: lost the connection during the build and could not attach to it again within ${Math.round(grace / 1000)} s`,
            { cause: mapped.cause },
          );
        await new Promise((resolve) => setTimeout(resolve, REATTACH_PAUSE_MS));
        stream = client.attach({ invocationId, fromSequence: BigInt(next) }, { signal });
      }
    }
  }

  /**
   * Sends the server what it lacks of the request's input closure. Inputs
   * this client has already found or put there are not checked again unless
   * `recheck` (content never changes; if the server has lost some, its
   * admission says so and the build is retried once with everything checked).
   */
  async #upload(request: BuildRequest, recheck: boolean, signal: AbortSignal | undefined): Promise<void> {
    const started = performance.now();
    const inputs = recheck ? request.inputs : request.inputs.filter((i) => !this.#present.has(nodeKey(i.node)));
    const uploaded =
      inputs.length === 0
        ? { blobsSent: 0, bytesSent: 0, directoriesSent: 0 }
        : await uploadInputClosure({ inputs }, this.#options, await this.remoteCastore(), { signal });
    if (this.#present.size > MAX_REMEMBERED_INPUTS) this.#present.clear();
    for (const input of inputs) this.#present.add(nodeKey(input.node));
    this.#options.onUpload?.({ ...uploaded, ms: performance.now() - started });
  }

  async close(): Promise<void> {
    await this.#remote?.blobService.close();
    await this.#remote?.directoryService.close();
    await (await this.#channel.catch(() => undefined))?.close();
  }
}

/** A builder URL split into the channel URL and Kiln's own parameters (paths of files to read). */
export interface BuilderUrlParts {
  channelUrl: string;
  /** `token-file=PATH`: the bearer token (else `$KILN_TOKEN`). */
  tokenFile?: string;
  /** `ca-file=PATH`: PEM certificates to trust instead of the bundled roots (`grpc+https`). */
  caFile?: string;
  /** `cert-file=PATH` and `key-file=PATH`: a client certificate for mutual TLS (`grpc+https`). */
  certFile?: string;
  keyFile?: string;
  /** `reattach-grace=DURATION`: keep the build running this long when the connection breaks, and attach again. */
  reattachGraceMs?: number;
}

const FILE_PARAMS = { 'token-file': 'tokenFile', 'ca-file': 'caFile', 'cert-file': 'certFile', 'key-file': 'keyFile' } as const;

/**
 * A builder URL's own parameters: `token-file=PATH` (else `$KILN_TOKEN`),
 * `ca-file=PATH`, `cert-file=PATH`, `key-file=PATH` and
 * `reattach-grace=DURATION` are Kiln's; the rest is the channel URL. A client certificate needs both of its files.
 */
export function splitBuilderUrl(url: string): BuilderUrlParts {
  const parsed = new URL(url);
  const parts: BuilderUrlParts = { channelUrl: '' };
  for (const [param, field] of Object.entries(FILE_PARAMS)) {
    const value = parsed.searchParams.get(param);
    if (value) parts[field] = value;
    parsed.searchParams.delete(param);
  }
  const grace = parsed.searchParams.get('reattach-grace');
  parsed.searchParams.delete('reattach-grace');
  if (grace !== null) {
    const ms = grace === '0' ? 0 : parseDuration(grace);
    if (ms === undefined)
      throw new BuildError('INVALID_REQUEST', `invalid builder URL ${url}: reattach-grace must be a duration such as 30s`, {
        details: { field: 'builder' },
      });
    parts.reattachGraceMs = ms;
  }
  if ((parts.certFile === undefined) !== (parts.keyFile === undefined))
    throw new BuildError('INVALID_REQUEST', `invalid builder URL ${url}: cert-file and key-file go together`, {
      details: { field: 'builder' },
    });
  if ((parts.caFile || parts.certFile) && parsed.protocol !== 'grpc+https:')
    throw new BuildError('INVALID_REQUEST', `invalid builder URL ${url}: ca-file, cert-file and key-file need grpc+https`, {
      details: { field: 'builder' },
    });
  const base = url.split('?')[0] as string;
  parts.channelUrl = parsed.search === '' ? base : `${base}${parsed.search}`;
  return parts;
}

function connectErrorMessage(error: unknown): string {
  return ConnectError.from(error).rawMessage;
}

function nodeKey(node: BuildRequest['inputs'][number]['node']): string {
  return node.type === 'symlink' ? 'symlink' : `${node.type}-${node.digest.toHex()}-${node.size}`;
}
