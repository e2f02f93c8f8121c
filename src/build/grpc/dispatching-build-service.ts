/**
 * Several remote builders as one BuildService. For each build it asks every
 * builder what it offers (`Describe`), keeps those whose systems and memory
 * meet the request's constraints and that have room, and tries them least
 * loaded first; a builder that is unreachable or full before the build
 * starts is skipped for the next. Once a builder has accepted the build,
 * the build stays there.
 */
import type { AbortOptions } from '../../common/abort.js';
import type { BuildEvent } from '../build-events.js';
import type { BuildRequest } from '../build-request.js';
import type { BuildService } from '../build-service.js';
import { BuildError, isBuildError } from '../errors.js';
import { type BuilderInfo, GrpcBuildService } from './grpc-build-service.js';

/** How long a builder may take to describe itself before it counts as unreachable. */
const DESCRIBE_TIMEOUT_MS = 3000;
/** How many builds' placements a dispatcher remembers (to find their outputs). */
const MAX_PLACED = 10_000;

export class DispatchingBuildService implements BuildService {
  readonly name: string;
  readonly #builders: readonly GrpcBuildService[];
  /** Which builder took each build (by invocation id), to find its outputs. */
  readonly #placed = new Map<string, GrpcBuildService>();

  constructor(builders: readonly GrpcBuildService[]) {
    if (builders.length === 0) throw new BuildError('INVALID_REQUEST', 'no builder to dispatch to');
    this.#builders = builders;
    this.name = `dispatch(${builders.map((b) => b.name).join(', ')})`;
  }

  async *build(request: BuildRequest, options: AbortOptions = {}): AsyncGenerator<BuildEvent> {
    const reasons: string[] = [];
    const candidates = await this.#rank(request, reasons, options);
    for (const builder of candidates) {
      let accepted = false;
      try {
        for await (const event of builder.build(request, options)) {
          if (event.type === 'accepted') {
            accepted = true;
            this.#placed.set(event.invocationId, builder);
            // Remember the latest builds only (a Map iterates oldest first).
            if (this.#placed.size > MAX_PLACED) this.#placed.delete(this.#placed.keys().next().value as string);
          }
          yield event;
        }
        return;
      } catch (error) {
        options.signal?.throwIfAborted();
        const retriable = isBuildError(error) && (error.code === 'BUILDER_UNREACHABLE' || error.code === 'BUILDER_BUSY');
        if (accepted || !retriable) throw error;
        reasons.push(`${builder.name}: ${(error as Error).message}`);
      }
    }
    throw new BuildError('BUILDER_UNREACHABLE', `no builder could take the build:\n  ${reasons.join('\n  ')}`);
  }

  /** The castore of the builder that ran the build `invocationId`, where its outputs are. */
  async remoteCastore(invocationId: string): ReturnType<GrpcBuildService['remoteCastore']> {
    const builder = this.#placed.get(invocationId);
    if (!builder) throw new BuildError('INVALID_REQUEST', `no build with invocation id ${invocationId} was dispatched here`);
    return builder.remoteCastore();
  }

  /** The builders that can take `request`, least loaded first; why the others cannot goes to `reasons`. */
  async #rank(request: BuildRequest, reasons: string[], options: AbortOptions): Promise<GrpcBuildService[]> {
    const described = await Promise.all(
      this.#builders.map(async (builder) => {
        try {
          return { builder, info: await builder.describe({ ...options, timeoutMs: DESCRIBE_TIMEOUT_MS }) };
        } catch (error) {
          options.signal?.throwIfAborted();
          reasons.push(`${builder.name}: ${(error as Error).message}`);
          return undefined;
        }
      }),
    );
    const fit: { builder: GrpcBuildService; info: BuilderInfo }[] = [];
    let unmet = 0;
    let busy = 0;
    for (const d of described) {
      if (!d) continue;
      const why = misfit(request, d.info);
      if (!why) fit.push(d);
      else {
        reasons.push(`${d.builder.name}: ${why.reason}`);
        if (why.kind === 'busy') busy++;
        else unmet++;
      }
    }
    const unreachable = described.length - fit.length - unmet - busy;
    if (fit.length === 0 && unreachable === 0) {
      const code = busy > 0 ? 'BUILDER_BUSY' : 'CONSTRAINTS_UNMET';
      throw new BuildError(code, `no builder can take the build now:\n  ${reasons.join('\n  ')}`);
    }
    const load = (info: BuilderInfo) => info.inFlight / Math.max(1, info.maxInFlight);
    return fit.sort((a, b) => load(a.info) - load(b.info)).map((d) => d.builder);
  }

  async close(): Promise<void> {
    await Promise.all(this.#builders.map((b) => b.close()));
  }
}

function misfit(request: BuildRequest, info: BuilderInfo): { kind: 'constraints' | 'busy'; reason: string } | undefined {
  const c = request.constraints;
  if (c && !info.systems.includes(c.system)) return { kind: 'constraints', reason: `runs ${info.systems.join(', ')}, not ${c.system}` };
  if (c && c.minMemory > info.memoryBytes)
    return { kind: 'constraints', reason: `has ${info.memoryBytes} bytes of memory, the build needs ${c.minMemory}` };
  if (info.inFlight >= info.maxInFlight) return { kind: 'busy', reason: `is full (${info.inFlight} of ${info.maxInFlight} builds)` };
  return undefined;
}

/**
 * Where the outputs of the build `invocationId` are when `service` is a
 * remote builder (or several): that server's castore. Undefined for a local
 * builder, whose outputs are in the local store.
 */
export async function remoteCastoreOf(
  service: BuildService,
  invocationId: string,
): Promise<Awaited<ReturnType<GrpcBuildService['remoteCastore']>> | undefined> {
  if (service instanceof DispatchingBuildService || service instanceof GrpcBuildService) return service.remoteCastore(invocationId);
  return undefined;
}
