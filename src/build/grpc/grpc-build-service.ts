/**
 * `grpc+unix://…`, `grpc+http://…`, `grpc+https://…`: a remote Kiln (or any
 * `kiln.build.v1` server) as a BuildService. Before a build, the client
 * sends the server what it lacks of the input closure, read from the local
 * store; then it streams the build's events. Outputs stay in the server's
 * castore (`remoteCastore` reads them).
 *
 * If the connection breaks mid-build, the client attaches again from the
 * last event it saw, for up to `reattachGraceMs`; the server keeps the
 * build running that long. An abort cancels the remote build.
 */
import { createClient } from '@connectrpc/connect';
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
import { uploadInputClosure } from '../input-closure.js';
import { buildRequestToMessage } from '../proto-convert.js';
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
export const DEFAULT_REATTACH_GRACE_MS = 30_000;
const REATTACH_PAUSE_MS = 250;

export interface GrpcBuildServiceOptions extends GrpcChannelOptions {
  /** The server: `grpc+unix:///path.sock`, `grpc+http://host:port` or `grpc+https://host:port`. */
  url: string;
  /** The local store that inputs are uploaded from. */
  blobService: BlobService;
  directoryService: DirectoryService;
  /** Bearer token sent with every call. */
  token?: string;
  reattachGraceMs?: number;
}

export class GrpcBuildService implements BuildService {
  readonly name: string;
  readonly #options: GrpcBuildServiceOptions;
  readonly #channel: Promise<GrpcChannel>;
  #remote: { blobService: GrpcBlobService; directoryService: GrpcDirectoryService } | undefined;

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

  /** The server's castore, where inputs go and outputs are. */
  async remoteCastore(): Promise<{ blobService: BlobService; directoryService: DirectoryService }> {
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
      const channel = await this.#channel;
      client = createClient(BuildEvents, channel.transport);
      await uploadInputClosure(request, this.#options, await this.remoteCastore(), { signal });
    } catch (error) {
      throw error instanceof BuildError ? error : fail(error);
    }
    const grace = this.#options.reattachGraceMs ?? DEFAULT_REATTACH_GRACE_MS;
    let invocationId: string | undefined;
    let next = 0;
    let stream: AsyncIterable<BuildEventMessage> = client.build(buildRequestToMessage(request), {
      signal,
      headers: { [REATTACH_GRACE_HEADER]: String(grace) },
    });
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
        const reattachable = invocationId !== undefined && mapped instanceof BuildError && mapped.code === 'BUILDER_UNREACHABLE';
        lostAt ??= performance.now();
        if (!reattachable || performance.now() - lostAt > grace) throw mapped;
        await new Promise((resolve) => setTimeout(resolve, REATTACH_PAUSE_MS));
        stream = client.attach({ invocationId, fromSequence: BigInt(next) }, { signal });
      }
    }
  }

  async close(): Promise<void> {
    await this.#remote?.blobService.close();
    await this.#remote?.directoryService.close();
    await (await this.#channel.catch(() => undefined))?.close();
  }
}

/**
 * A builder URL's own parameters: `token-file=PATH` (else `$KILN_TOKEN`)
 * is Kiln's; the rest is the channel URL.
 */
export function splitBuilderUrl(url: string): { channelUrl: string; tokenFile?: string } {
  const parsed = new URL(url);
  const tokenFile = parsed.searchParams.get('token-file') ?? undefined;
  parsed.searchParams.delete('token-file');
  const channelUrl = parsed.search === '' ? (url.split('?')[0] as string) : `${url.split('?')[0]}${parsed.search}`;
  return { channelUrl, ...(tokenFile ? { tokenFile } : {}) };
}
