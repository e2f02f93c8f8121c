/**
 * What `kiln build` adds for provenance and reproducibility, kept out of the
 * command itself: `--sign-key`/`--provenance` (a signed SLSA provenance
 * statement, stored next to the outputs), `--check`/`--check-builder` (build
 * again and compare), `--cache`/`--rebuild` (the result cache keyed by
 * request digest). The command calls `BuildAttestation.open`, `lookup`
 * before building, `watch` around the build's events and `finish` after a
 * successful build.
 */

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { hostname, release } from 'node:os';
import {
  type BuildEvent,
  type BuildRequest,
  type BuildResponse,
  type BuildService,
  buildRequestDigest,
  buildServiceFromUrl,
  buildServiceFromUrls,
} from '../build/index.js';
import { type Castore, nodesEqual } from '../castore/index.js';
import { AsyncQueue } from '../common/async-queue.js';
import {
  type BuildDefinition,
  type BuildRun,
  buildProvenance,
  type CachedBuild,
  compareOutputs,
  type DigestSet,
  envelopeToJson,
  formatComparison,
  isProvenanceError,
  kilnBuildDefinition,
  lookupResult,
  outputSubjects,
  recordResult,
  reproducedStatement,
  type Sidecar,
  type SigningKey,
  type Statement,
  type StoreReader,
  sidecarForStore,
  signEnvelope,
  signingKeyFromPem,
  statementToBytes,
  storeEnvelope,
} from '../provenance/index.js';
import { BuildStatus, formatBytes, formatSeconds } from './build-status.js';
import { type CommandIo, type ParsedArgs, stringOption, UsageError } from './command.js';
import { EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK } from './exit-codes.js';

export const ATTESTATION_OPTIONS = {
  'sign-key': { type: 'string' },
  provenance: { type: 'string' },
  'builder-id': { type: 'string' },
  check: { type: 'boolean' },
  'check-builder': { type: 'string' },
  'check-statement': { type: 'string' },
  cache: { type: 'boolean' },
  rebuild: { type: 'boolean' },
} as const;

export const ATTESTATION_HELP = `provenance and reproducibility:
  --sign-key FILE    sign an SLSA provenance v1 statement of the build with this Ed25519
                     key (PKCS#8 PEM, from kiln key generate) and store it in the store,
                     indexed by each output (kiln provenance list)
  --provenance OUT   also write the signed envelope (DSSE JSON) to OUT (needs --sign-key)
  --builder-id URI   runDetails.builder.id (default: $KILN_BUILDER_ID, else
                     urn:kiln:builder:<hostname>:<backend>)
  --check            build again and compare the outputs: exit 0 when identical (with
                     --sign-key, also sign and store a statement that it reproduced);
                     exit 1 listing the differing files (path, size, digest, a short diff
                     of small text files)
  --check-builder URL  run the check build there (default: the same builder)
  --check-statement OUT  write the signed reproduced statement to OUT (needs --check and
                     --sign-key)
  --cache            use the store's result cache: a request built before returns its
                     recorded result at once when its outputs are still in the store;
                     a successful build is recorded
  --rebuild          build even when the result cache has the request; record the result`;

const packageVersion = (() => {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
})();

/** The builder URL without parameters naming credentials files. */
function sanitizedUrl(url: string): string {
  try {
    const parsed = new URL(url);
    for (const key of [...parsed.searchParams.keys()]) if (key.endsWith('-file')) parsed.searchParams.delete(key);
    return parsed.href;
  } catch {
    return url;
  }
}

/** What shaped the build environment, as far as this side knows it. */
export function internalParameters(builderUrls: readonly string[], backend: string): Record<string, unknown> {
  const urls = builderUrls.map(sanitizedUrl);
  const remote = urls.some((u) => u.startsWith('grpc+'));
  const parameters: Record<string, string> = {};
  if (urls.length === 1) {
    try {
      for (const [k, v] of new URL(urls[0] as string).searchParams) parameters[k] = v;
    } catch {
      // an unparsable URL never got this far
    }
  }
  return {
    backend,
    builder: urls.length === 1 ? urls[0] : urls,
    ...(Object.keys(parameters).length > 0 ? { parameters } : {}),
    ...(remote ? {} : { host: { kernel: release(), arch: process.arch } }),
    sandbox:
      'kiln sandbox contract v1: empty read-only root, inputs read-only, uid 1000/gid 100, hostname localhost, no network unless the request allows it, seccomp, cgroup limits',
  };
}

/** Captures the combined log into a blob while hashing it with SHA-256. */
class LogRecorder {
  readonly #queue = new AsyncQueue<Uint8Array>();
  readonly #sha256 = createHash('sha256');
  readonly #put: Promise<{ digest: { toHex(): string }; size: number }>;
  constructor(store: Castore) {
    this.#put = store.blobService.put(this.#queue);
    this.#put.catch(() => {}); // awaited in finish; a failed build's log is dropped
  }
  push(data: Uint8Array): void {
    this.#sha256.update(data);
    this.#queue.push(data);
  }
  async finish(): Promise<{ digest: DigestSet; size: number }> {
    this.#queue.end();
    const { digest, size } = await this.#put;
    return { digest: { blake3: digest.toHex(), sha256: this.#sha256.digest('hex') }, size };
  }
  abandon(): void {
    this.#queue.fail(new Error('the build did not finish'));
  }
}

type Finished = Extract<BuildEvent, { type: 'finished' }>;

/** What one run (the build, or its check) observed. */
class RunObserver {
  accepted: Extract<BuildEvent, { type: 'accepted' }> | undefined;
  startedOn: Date | undefined;
  finishedOn: Date | undefined;
  readonly log: LogRecorder | undefined;
  constructor(store: Castore | undefined) {
    this.log = store ? new LogRecorder(store) : undefined;
  }
  async *watch(events: AsyncIterable<BuildEvent>): AsyncGenerator<BuildEvent> {
    let done = false;
    try {
      for await (const event of events) {
        if (event.type === 'accepted') {
          this.accepted = event;
          this.startedOn = new Date();
        } else if (event.type === 'started') this.startedOn = new Date();
        else if (event.type === 'log') this.log?.push(event.data);
        else if (event.type === 'finished') {
          this.finishedOn = new Date();
          done = true;
        }
        yield event;
      }
    } finally {
      if (!done) this.log?.abandon();
    }
  }
}

export interface AttestationResult {
  readonly response: BuildResponse;
  readonly run: BuildRun;
}

export class BuildAttestation {
  readonly #io: CommandIo;
  readonly #store: Castore;
  readonly #builderUrls: readonly string[];
  readonly #key: SigningKey | undefined;
  readonly #provenanceOut: string | undefined;
  readonly #builderId: string | undefined;
  readonly #check: boolean;
  readonly #checkBuilder: string | undefined;
  readonly #checkStatementOut: string | undefined;
  readonly #cacheMode: 'off' | 'use' | 'record';
  readonly #sidecar: Sidecar;
  #observer: RunObserver | undefined;

  private constructor(io: CommandIo, store: Castore, builderUrls: readonly string[], args: ParsedArgs, key: SigningKey | undefined) {
    this.#io = io;
    this.#store = store;
    this.#builderUrls = builderUrls;
    this.#key = key;
    this.#provenanceOut = stringOption(args, 'provenance');
    this.#builderId = stringOption(args, 'builder-id') ?? (io.env.KILN_BUILDER_ID || undefined);
    this.#check = args.values.check === true;
    this.#checkBuilder = stringOption(args, 'check-builder');
    this.#checkStatementOut = stringOption(args, 'check-statement');
    this.#cacheMode = args.values.rebuild === true ? 'record' : args.values.cache === true ? 'use' : 'off';
    this.#sidecar = sidecarForStore(store.url, store, io.env);
  }

  /** Checks the options (usage errors before anything runs) and loads the key. */
  static async open(args: ParsedArgs, io: CommandIo, store: Castore, builderUrls: readonly string[]): Promise<BuildAttestation> {
    const keyPath = stringOption(args, 'sign-key');
    if (stringOption(args, 'provenance') !== undefined && keyPath === undefined) throw new UsageError('--provenance needs --sign-key FILE');
    if (stringOption(args, 'check-builder') !== undefined && args.values.check !== true)
      throw new UsageError('--check-builder needs --check');
    if (stringOption(args, 'check-statement') !== undefined && (args.values.check !== true || keyPath === undefined))
      throw new UsageError('--check-statement needs --check and --sign-key FILE');
    const builderId = stringOption(args, 'builder-id');
    if (builderId !== undefined && !/^[a-z][a-z0-9+.-]*:\S+$/i.test(builderId))
      throw new UsageError(`invalid --builder-id ${JSON.stringify(builderId)}: expected a URI`);
    let key: SigningKey | undefined;
    if (keyPath !== undefined) {
      let pem: Buffer;
      try {
        pem = await readFile(keyPath);
      } catch (error) {
        throw new UsageError(`cannot read --sign-key ${keyPath}: ${(error as Error).message}`);
      }
      try {
        key = signingKeyFromPem(pem, `--sign-key ${keyPath}`);
      } catch (error) {
        if (isProvenanceError(error, 'INVALID_KEY')) throw new UsageError(error.message);
        throw error;
      }
    }
    return new BuildAttestation(io, store, builderUrls, args, key);
  }

  /** Whether anything beyond a plain build was asked for. */
  get active(): boolean {
    return this.#key !== undefined || this.#check || this.#cacheMode !== 'off';
  }

  /** The recorded result of this request when `--cache` is on and its outputs are all in the store. */
  async lookup(request: BuildRequest): Promise<AttestationResult | undefined> {
    if (this.#cacheMode !== 'use') return undefined;
    const id = buildRequestDigest(request);
    const found = await lookupResult(this.#sidecar, id, this.#store, { signal: this.#io.signal });
    if (found.status === 'stale') this.#io.stderr.write(`kiln: cache: ${id} was built before but its outputs are gone; building\n`);
    if (found.status !== 'hit') return undefined;
    const { run } = found.build;
    this.#io.stderr.write(
      `kiln: build ${id} cached: built on ${run.backend} at ${run.finishedOn} (invocation ${run.invocationId}); not building (--rebuild to build anyway)\n`,
    );
    return { response: found.build.response, run };
  }

  /** Passes the build's events through, noting the invocation, times and log. */
  watch(events: AsyncIterable<BuildEvent>): AsyncIterable<BuildEvent> {
    if (!this.active) return events;
    this.#observer = new RunObserver(this.#store);
    return this.#observer.watch(events);
  }

  #run(observer: RunObserver, builderUrls: readonly string[], log: BuildRun['log']): BuildRun {
    const accepted = observer.accepted;
    if (!accepted || !observer.startedOn || !observer.finishedOn) throw new Error('the build finished without being accepted');
    return {
      buildId: accepted.buildId,
      invocationId: accepted.invocationId,
      backend: accepted.backend,
      builderId: this.#builderId ?? defaultBuilderId(builderUrls, accepted.backend),
      builderVersion: { kiln: packageVersion },
      startedOn: observer.startedOn.toISOString(),
      finishedOn: observer.finishedOn.toISOString(),
      ...(log ? { log } : {}),
      internalParameters: internalParameters(builderUrls, accepted.backend),
    };
  }

  /**
   * After a successful build (a `finished` event) or a cache hit: records
   * the result, signs and stores the provenance, runs the check. `outputs`
   * is where the outputs can be read (the store, or a remote builder's
   * castore). Resolves to the exit status.
   */
  async finish(request: BuildRequest, result: Finished | AttestationResult, outputs: StoreReader = this.#store): Promise<number> {
    if (!this.active) return EXIT_OK;
    let first: AttestationResult;
    let wall = { wallTimeMs: 0, cpuTimeMs: 0, peakMemoryBytes: 0 };
    if ('type' in result) {
      const observer = this.#observer;
      if (!observer) throw new Error('BuildAttestation.finish: the build was not watched');
      const log = await observer.log?.finish();
      first = { response: result.response, run: this.#run(observer, this.#builderUrls, log) };
      wall = { wallTimeMs: result.wallTimeMs, cpuTimeMs: result.cpuTimeMs, peakMemoryBytes: result.peakMemoryBytes };
      if (this.#cacheMode !== 'off' && outputs === this.#store) {
        const cached: CachedBuild = { ...first, ...wall };
        await recordResult(this.#sidecar, buildRequestDigest(request), cached);
      }
    } else first = result;

    const definition = kilnBuildDefinition(request);
    if (this.#key) {
      const statement = await buildProvenance(request, first.response, first.run, this.#store, {
        definition,
        outputStore: outputs,
        memo: this.#sidecar,
        signal: this.#io.signal,
      });
      await this.#sign(statement, this.#provenanceOut, 'provenance');
    }
    if (!this.#check) return EXIT_OK;
    return this.#runCheck(request, first, definition, outputs);
  }

  async #sign(statement: Statement<unknown>, out: string | undefined, what: string): Promise<void> {
    const key = this.#key as SigningKey;
    const envelope = signEnvelope(statementToBytes(statement), key);
    const digest = await storeEnvelope(envelope, statement, this.#store.blobService, this.#sidecar, { signal: this.#io.signal });
    if (out !== undefined) await writeFile(out, `${envelopeToJson(envelope)}\n`);
    this.#io.stderr.write(`kiln: ${what} ${digest} signed by key ${key.keyId}${out !== undefined ? `, written to ${out}` : ''}\n`);
  }

  async #runCheck(request: BuildRequest, first: AttestationResult, definition: BuildDefinition, outputs: StoreReader): Promise<number> {
    const io = this.#io;
    const urls = this.#checkBuilder !== undefined ? [this.#checkBuilder] : this.#builderUrls;
    const builder: BuildService =
      this.#checkBuilder !== undefined
        ? await buildServiceFromUrl(this.#checkBuilder, this.#store, io.env)
        : await buildServiceFromUrls(urls, this.#store, io.env);
    const observer = new RunObserver(this.#store);
    let outcome: Extract<BuildEvent, { type: 'finished' | 'failed' }> | undefined;
    const status = new BuildStatus(io.stderr);
    try {
      io.stderr.write('kiln: check: building again to compare the outputs\n');
      for await (const event of observer.watch(builder.build(request, { signal: io.signal }))) {
        if (event.type === 'accepted') status.accepted(event.buildId, event.backend);
        else if (event.type === 'started') status.started();
        else if (event.type === 'log') status.log(event.data);
        else if (event.type === 'resources') status.resources(event.cpuTimeMs, event.peakMemoryBytes);
        else if (event.type === 'output-ingested') status.ingesting();
        else outcome = event;
      }
      if (!outcome) throw new Error('the check builder ended without a result');
      if (outcome.type === 'failed') {
        if (io.signal.aborted) {
          status.note('error: interrupted');
          return EXIT_INTERRUPTED;
        }
        status.note(`error: check build failed (${outcome.reason}): ${outcome.message}`);
        return EXIT_FAILURE;
      }
      status.note(
        `kiln: check build done in ${formatSeconds(outcome.wallTimeMs)} (cpu ${formatSeconds(outcome.cpuTimeMs)}, peak memory ${formatBytes(outcome.peakMemoryBytes)})`,
      );
    } finally {
      status.close();
      await builder.close();
    }
    const log = await observer.log?.finish();
    const second: AttestationResult = { response: outcome.response, run: this.#run(observer, urls, log) };
    const labels: [string, string] = [`1st (${first.run.backend})`, `2nd (${second.run.backend})`];
    const same =
      first.response.outputs.length === second.response.outputs.length &&
      first.response.outputs.every((o, i) => nodesEqual(o.node, second.response.outputs[i]?.node ?? o.node));
    if (!same) {
      const comparison = await compareOutputs(request.outputs, first.response, second.response, fallbackReader(outputs, this.#store), {
        signal: io.signal,
      });
      const count = comparison.differences.length;
      io.stderr.write(
        `error: not reproducible: ${count}${comparison.truncated ? '+' : ''} path${count === 1 ? ' differs' : 's differ'} between ${labels[0]} and ${labels[1]}:\n${formatComparison(comparison, labels)}\n`,
      );
      return EXIT_FAILURE;
    }
    io.stderr.write(
      `kiln: check: reproduced: the outputs of ${first.run.backend} (invocation ${first.run.invocationId}) and ${second.run.backend} (invocation ${second.run.invocationId}) are identical\n`,
    );
    if (this.#key) {
      const subjects = await outputSubjects(request, first.response, outputs, { memo: this.#sidecar, signal: io.signal });
      await this.#sign(reproducedStatement(definition, [first.run, second.run], subjects), this.#checkStatementOut, 'reproduced statement');
    }
    return EXIT_OK;
  }
}

/** Reads from `primary`, falling back to `secondary` for what it lacks (remote outputs and local ones). */
function fallbackReader(primary: StoreReader, secondary: StoreReader): StoreReader {
  if (primary === secondary) return primary;
  return {
    blobService: {
      has: async (digest, options) => (await primary.blobService.has(digest, options)) || secondary.blobService.has(digest, options),
      read: async (digest, options) => (await primary.blobService.read(digest, options)) ?? secondary.blobService.read(digest, options),
    },
    directoryService: {
      get: async (digest, options) =>
        (await primary.directoryService.get(digest, options)) ?? secondary.directoryService.get(digest, options),
      getRecursive: (digest, options) => primary.directoryService.getRecursive(digest, options),
    },
  };
}

/** `urn:kiln:builder:<host>:<backend>`: this host for local builders, the server for a remote one. */
export function defaultBuilderId(builderUrls: readonly string[], backend: string): string {
  const remote = builderUrls.find((u) => u.startsWith('grpc+'));
  let host = hostname();
  if (remote) {
    try {
      const parsed = new URL(remote);
      host = parsed.host || `unix:${parsed.pathname}`;
    } catch {
      host = 'remote';
    }
  }
  return `urn:kiln:builder:${encodeURIComponent(host)}:${encodeURIComponent(backend)}`;
}
