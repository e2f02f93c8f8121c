/**
 * The build services a Kiln server exposes for any BuildService:
 * `snix.build.v1.BuildService` (unary DoBuild, Snix's contract: the
 * response, INVALID_ARGUMENT for a bad request, INTERNAL for a failed
 * build), `kiln.build.v1.BuildEvents` (streamed events, Attach, Cancel) and
 * `grpc.health.v1.Health`.
 *
 * Before a build starts, the server refuses what it cannot do with a clear
 * status: unmet constraints and an incomplete input closure (naming the
 * missing digests) are FAILED_PRECONDITION, a full queue RESOURCE_EXHAUSTED.
 * A client that disconnects from Build cancels the build unless it asked
 * for a re-attach grace (`kiln-reattach-grace-ms` request header) or
 * another watcher is attached.
 */
import { totalmem } from 'node:os';
import { create, fromBinary } from '@bufbuild/protobuf';
import type { ConnectRouter, HandlerContext } from '@connectrpc/connect';
import { Code, ConnectError } from '@connectrpc/connect';
import type { BlobService, DirectoryService } from '../../castore/index.js';
import { Health, HealthCheckResponse_ServingStatus, HealthCheckResponseSchema } from '../../gen/grpc/health/v1/health_pb.js';
import { type BuildEvent as BuildEventMessage, BuildEventSchema, BuildEvents } from '../../gen/kiln/build/v1/build_events_pb.js';
import type { BuildRequest as BuildRequestMessage } from '../../gen/snix/build/v1/build_pb.js';
import { BuildService as BuildServiceDesc } from '../../gen/snix/build/v1/rpc_build_pb.js';
import type { BuildRequest } from '../build-request.js';
import type { BuildService } from '../build-service.js';
import { checkConstraints, hostSystems } from '../constraints.js';
import { BuildError } from '../errors.js';
import { missingInputs } from '../input-closure.js';
import { buildRequestFromMessage, buildResponseToMessage } from '../proto-convert.js';
import { buildEventFromMessage } from './event-convert.js';
import { Invocations } from './invocations.js';
import { buildErrorToConnectError } from './status.js';

/** Request header by which a Build caller asks the server to keep the build running while it reconnects. */
export const REATTACH_GRACE_HEADER = 'kiln-reattach-grace-ms';
/** The longest re-attach grace a client may ask for. */
export const MAX_REATTACH_GRACE_MS = 10 * 60_000;
/** Names Health answers SERVING for (besides the empty name, the whole server). */
export const SERVED_SERVICES = [
  'snix.castore.v1.BlobService',
  'snix.castore.v1.DirectoryService',
  'snix.build.v1.BuildService',
  'kiln.build.v1.BuildEvents',
];

export interface BuildServerOptions {
  service: BuildService;
  /** The server's castore, where inputs must already be. */
  blobService: BlobService;
  directoryService: DirectoryService;
  /** Where build event journals are kept. */
  journalDir: string;
  /** Builds accepted at once (running or queued); default `DEFAULT_MAX_IN_FLIGHT`. */
  maxInFlight?: number;
  /** How long a finished build stays attachable (ms). */
  retainMs?: number;
  /** Systems accepted in `constraints.system`; default `hostSystems()`. */
  systems?: readonly string[];
}

export interface BuildRoutes {
  /** Registers the services on a connect router (pass as the castore server's `extraRoutes`). */
  register(router: ConnectRouter): void;
  readonly invocations: Invocations;
  /** Health turns NOT_SERVING, new builds are refused; running ones get up to `deadlineMs`, then are cancelled. */
  drain(deadlineMs: number): Promise<void>;
  close(): Promise<void>;
}

export function createBuildRoutes(options: BuildServerOptions): BuildRoutes {
  const invocations = new Invocations({
    service: options.service,
    journalDir: options.journalDir,
    ...(options.maxInFlight !== undefined ? { maxInFlight: options.maxInFlight } : {}),
    ...(options.retainMs !== undefined ? { retainMs: options.retainMs } : {}),
  });
  const systems = options.systems ?? hostSystems();
  /** Input nodes whose closure this server has verified (content never changes). */
  const verified = new Set<string>();
  let serving = true;
  const servingChanged = new Set<() => void>();

  async function admit(message: BuildRequestMessage, signal: AbortSignal): Promise<BuildRequest> {
    const request = buildRequestFromMessage(message);
    checkConstraints(request, systems);
    const unverified = request.inputs.filter((i) => !verified.has(nodeKey(i.node)));
    const missing = await missingInputs({ inputs: unverified }, options, { signal });
    if (missing.length > 0) {
      const shown = missing.slice(0, 20).join(', ') + (missing.length > 20 ? `, … (${missing.length} in all)` : '');
      throw new BuildError('INPUT_MISSING', `the server's store lacks part of the input closure: ${shown}`, {
        details: { field: 'inputs', missing },
      });
    }
    for (const input of unverified) verified.add(nodeKey(input.node));
    return request;
  }

  async function* stream(
    start: () => Promise<{ watch(from: number, signal?: AbortSignal): AsyncIterable<Uint8Array> }>,
    from: number,
    context: HandlerContext,
  ): AsyncGenerator<BuildEventMessage> {
    let invocation: Awaited<ReturnType<typeof start>>;
    try {
      invocation = await start();
    } catch (error) {
      throw buildErrorToConnectError(error, context.signal);
    }
    for await (const bytes of invocation.watch(from, context.signal)) yield fromBinary(BuildEventSchema, bytes);
  }

  function status(service: string): HealthCheckResponse_ServingStatus {
    if (service !== '' && !SERVED_SERVICES.includes(service)) return HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN;
    return serving ? HealthCheckResponse_ServingStatus.SERVING : HealthCheckResponse_ServingStatus.NOT_SERVING;
  }

  return {
    invocations,
    register(router) {
      router.service(BuildServiceDesc, {
        async doBuild(message, context) {
          try {
            const request = await admit(message, context.signal);
            const invocation = await invocations.start(request);
            for await (const bytes of invocation.watch(0, context.signal)) {
              const event = buildEventFromMessage(fromBinary(BuildEventSchema, bytes));
              if (event.type === 'finished') return buildResponseToMessage(event.response);
              if (event.type === 'failed') throw new ConnectError(`build failed (${event.reason}): ${event.message}`, Code.Internal);
            }
            throw new ConnectError('the build ended without a result', Code.Internal);
          } catch (error) {
            throw buildErrorToConnectError(error, context.signal);
          }
        },
      });
      router.service(BuildEvents, {
        build(message, context) {
          const asked = Number(context.requestHeader.get(REATTACH_GRACE_HEADER) ?? 0);
          const grace = Number.isFinite(asked) && asked > 0 ? Math.min(asked, MAX_REATTACH_GRACE_MS) : 0;
          return stream(async () => invocations.start(await admit(message, context.signal), { reattachGraceMs: grace }), 0, context);
        },
        attach(message, context) {
          return stream(
            async () => {
              const invocation = invocations.get(message.invocationId);
              if (!invocation) throw new ConnectError(`no build with invocation id ${message.invocationId}`, Code.NotFound);
              return invocation;
            },
            Number(message.fromSequence),
            context,
          );
        },
        async describe() {
          return {
            backend: options.service.name,
            systems: [...systems],
            inFlight: invocations.inFlight,
            maxInFlight: invocations.maxInFlight,
            memoryBytes: BigInt(totalmem()),
          };
        },
        async cancel(message) {
          const invocation = invocations.get(message.invocationId);
          if (!invocation) throw new ConnectError(`no build with invocation id ${message.invocationId}`, Code.NotFound);
          invocation.cancel('cancelled by a client');
          return {};
        },
      });
      router.service(Health, {
        async check(message) {
          const current = status(message.service);
          if (current === HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN)
            throw new ConnectError(`unknown service ${message.service}`, Code.NotFound);
          return create(HealthCheckResponseSchema, { status: current });
        },
        async *watch(message, context) {
          let last: HealthCheckResponse_ServingStatus | undefined;
          while (!context.signal.aborted) {
            const current = status(message.service);
            if (current !== last) yield create(HealthCheckResponseSchema, { status: current });
            last = current;
            await new Promise<void>((resolve) => {
              const done = () => {
                servingChanged.delete(done);
                context.signal.removeEventListener('abort', done);
                resolve();
              };
              servingChanged.add(done);
              context.signal.addEventListener('abort', done, { once: true });
            });
          }
        },
      });
    },
    async drain(deadlineMs) {
      serving = false;
      for (const notify of [...servingChanged]) notify();
      await invocations.drain(deadlineMs);
    },
    async close() {
      serving = false;
      for (const notify of [...servingChanged]) notify();
      await invocations.close();
    },
  };
}

function nodeKey(node: BuildRequest['inputs'][number]['node']): string {
  if (node.type === 'symlink') return 'symlink';
  return `${node.type}-${node.digest.toHex()}`;
}
