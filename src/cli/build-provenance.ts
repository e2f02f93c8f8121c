/**
 * What `kiln build` adds for provenance and reproducibility, kept out of the
 * command itself: `--sign-key`/`--provenance` (a signed SLSA provenance
 * statement, stored next to the outputs), `--check`/`--check-builder` (build
 * again and compare), `--cache`/`--rebuild` (the result cache keyed by
 * request digest). The command calls `BuildAttestation.open`, `lookup`
 * before building, `watch` around the build's events and `finish` after a
 * successful build.
 */

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
import {
  type BuildDefinition,
  type BuildRun,
  buildProvenance,
  type CachedBuild,
  compareOutputs,
  envelopeFromJson,
  envelopeToJson,
  formatComparison,
  isProvenanceError,
  kilnBuildDefinition,
  lookupResult,
  outputSubjects,
  RunObserver,
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
  --provenance OUT   also write the signed envelope (DSSE JSON) to OUT; without --sign-key
                     and with a remote builder (grpc+…), write the envelope the server
                     signed (kiln serve --sign-key), exit 1 when it signed none
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
                     a successful build is recorded (always on for a store whose cache
                     was turned on with kiln provenance cache on)
  --rebuild          build even when the result cache has the request; record the result`;

/** Throws a usage error unless `builderId` (from --builder-id) is a URI. */
export function checkBuilderId(builderId: string | undefined): void {
  if (builderId !== undefined && !/^[a-z][a-z0-9+.-]*:\S+$/i.test(builderId))
    throw new UsageError(`invalid --builder-id ${JSON.stringify(builderId)}: expected a URI`);
}

/** Reads the --sign-key file; an unreadable or invalid key is a usage error. */
export async function loadSigningKey(keyPath: string): Promise<SigningKey> {
  let pem: Buffer;
  try {
    pem = await readFile(keyPath);
  } catch (error) {
    throw new UsageError(`cannot read --sign-key ${keyPath}: ${(error as Error).message}`);
  }
  try {
    return signingKeyFromPem(pem, `--sign-key ${keyPath}`);
  } catch (error) {
    if (isProvenanceError(error, 'INVALID_KEY')) throw new UsageError(error.message);
    throw error;
  }
}

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

type Finished = Extract<BuildEvent, { type: 'finished' }>;

export interface AttestationResult {
  readonly response: BuildResponse;
  readonly run: BuildRun;
}

/** The outputs to check against: a run's result, or outputs recorded earlier by an unknown run (Nix outputs already held). */
export interface CheckBaseline {
  readonly response: BuildResponse;
  readonly run?: BuildRun;
}

/** How the statements name the build and its outputs (the Nix front end names store paths and the derivation). */
export interface StatementShape {
  readonly definition: BuildDefinition;
  readonly subjectNames?: readonly string[];
}

/** Parsed options, the key, the store and its sidecar: what signing and checking need, for any front end. */
export class Attestor {
  readonly io: CommandIo;
  readonly store: Castore;
  readonly key: SigningKey | undefined;
  readonly provenanceOut: string | undefined;
  readonly builderId: string | undefined;
  readonly check: boolean;
  readonly checkBuilder: string | undefined;
  readonly checkStatementOut: string | undefined;
  readonly sidecar: Sidecar;

  private constructor(io: CommandIo, store: Castore, args: ParsedArgs, key: SigningKey | undefined) {
    this.io = io;
    this.store = store;
    this.key = key;
    this.provenanceOut = stringOption(args, 'provenance');
    this.builderId = stringOption(args, 'builder-id') ?? (io.env.KILN_BUILDER_ID || undefined);
    this.check = args.values.check === true;
    this.checkBuilder = stringOption(args, 'check-builder');
    this.checkStatementOut = stringOption(args, 'check-statement');
    this.sidecar = sidecarForStore(store.url, store, io.env);
  }

  /** Checks the options (usage errors before anything runs) and loads the key. */
  static async open(args: ParsedArgs, io: CommandIo, store: Castore, options: { remoteBuilder?: boolean } = {}): Promise<Attestor> {
    const keyPath = stringOption(args, 'sign-key');
    if (stringOption(args, 'provenance') !== undefined && keyPath === undefined && options.remoteBuilder !== true)
      throw new UsageError('--provenance needs --sign-key FILE (or a remote builder that signs: grpc+…)');
    if (stringOption(args, 'check-builder') !== undefined && args.values.check !== true)
      throw new UsageError('--check-builder needs --check');
    if (stringOption(args, 'check-statement') !== undefined && (args.values.check !== true || keyPath === undefined))
      throw new UsageError('--check-statement needs --check and --sign-key FILE');
    checkBuilderId(stringOption(args, 'builder-id'));
    const key = keyPath !== undefined ? await loadSigningKey(keyPath) : undefined;
    return new Attestor(io, store, args, key);
  }

  /** Whether signing or checking was asked for. */
  get active(): boolean {
    return this.key !== undefined || this.check;
  }

  /** A new observer of one run, capturing its log into the store. */
  observe(): RunObserver {
    return new RunObserver(this.store.blobService);
  }

  /** The facts of a watched run that finished. */
  runOf(observer: RunObserver, builderUrls: readonly string[]): Promise<BuildRun> {
    return observer.run({
      builderId: (backend) => this.builderId ?? defaultBuilderId(builderUrls, backend),
      internalParameters: (backend) => internalParameters(builderUrls, backend),
    });
  }

  /** Signs, stores next to the outputs (indexed by subject), and writes to `out` when given. */
  async sign(statement: Statement<unknown>, out: string | undefined, what: string): Promise<void> {
    const key = this.key as SigningKey;
    const envelope = signEnvelope(statementToBytes(statement), key);
    const digest = await storeEnvelope(envelope, statement, this.store.blobService, this.sidecar, { signal: this.io.signal });
    if (out !== undefined) await writeFile(out, `${envelopeToJson(envelope)}\n`);
    this.io.stderr.write(`kiln: ${what} ${digest} signed by key ${key.keyId}${out !== undefined ? `, written to ${out}` : ''}\n`);
  }

  /** With a key: the SLSA provenance of `result`, signed, stored and written to --provenance. */
  async signProvenance(request: BuildRequest, result: AttestationResult, shape: StatementShape, outputs: StoreReader): Promise<void> {
    if (!this.key) return;
    const statement = await buildProvenance(request, result.response, result.run, this.store, {
      definition: shape.definition,
      ...(shape.subjectNames ? { subjectNames: shape.subjectNames } : {}),
      outputStore: outputs,
      memo: this.sidecar,
      signal: this.io.signal,
    });
    await this.sign(statement, this.provenanceOut, 'provenance');
  }

  /**
   * Builds `request` again (on --check-builder, else `builderUrls`) and
   * compares its outputs with `baseline`'s. Identical: exit 0 and, with a
   * key, a signed statement that it reproduced on both runs (or, when the
   * baseline's run is unknown, the provenance of the check run). Different:
   * exit 1 and the differing files on stderr.
   */
  async runCheck(
    request: BuildRequest,
    baseline: CheckBaseline,
    shape: StatementShape,
    builderUrls: readonly string[],
    outputs: StoreReader,
  ): Promise<number> {
    const io = this.io;
    const urls = this.checkBuilder !== undefined ? [this.checkBuilder] : builderUrls;
    const builder: BuildService =
      this.checkBuilder !== undefined
        ? await buildServiceFromUrl(this.checkBuilder, this.store, io.env)
        : await buildServiceFromUrls(urls, this.store, io.env);
    try {
      const observer = this.observe();
      const outcome = await this.#checkBuild(builder, observer, request);
      if (typeof outcome === 'number') return outcome;
      // The check build's outputs: in the store, or in the remote builder's castore.
      let checkOutputs: StoreReader = this.store;
      if (urls.some((url) => url.startsWith('grpc+')) && observer.accepted) {
        const { remoteCastoreOf } = await import('../build/grpc/index.js');
        checkOutputs = (await remoteCastoreOf(builder, observer.accepted.invocationId)) ?? this.store;
      }
      return await this.#compare(request, baseline, shape, outputs, checkOutputs, {
        response: outcome.response,
        run: await this.runOf(observer, urls),
      });
    } finally {
      await builder.close();
    }
  }

  /** Runs the check build, showing it like the first; resolves to its `finished` event or an exit status. */
  async #checkBuild(builder: BuildService, observer: RunObserver, request: BuildRequest): Promise<Finished | number> {
    const io = this.io;
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
      return outcome;
    } finally {
      status.close();
    }
  }

  /** Compares the two runs' outputs; reports the differences, or signs that the build reproduced. */
  async #compare(
    request: BuildRequest,
    baseline: CheckBaseline,
    shape: StatementShape,
    outputs: StoreReader,
    checkOutputs: StoreReader,
    second: AttestationResult,
  ): Promise<number> {
    const io = this.io;
    const firstLabel = baseline.run ? `1st (${baseline.run.backend})` : 'recorded';
    const labels: [string, string] = [firstLabel, `${baseline.run ? '2nd' : 'rebuilt'} (${second.run.backend})`];
    const same =
      baseline.response.outputs.length === second.response.outputs.length &&
      baseline.response.outputs.every((o, i) => nodesEqual(o.node, second.response.outputs[i]?.node ?? o.node));
    if (!same) {
      const comparison = await compareOutputs(
        shape.subjectNames ?? request.outputs,
        baseline.response,
        second.response,
        fallbackReader(fallbackReader(outputs, checkOutputs), this.store),
        { signal: io.signal },
      );
      const count = comparison.differences.length;
      io.stderr.write(
        `error: not reproducible: ${count}${comparison.truncated ? '+' : ''} path${count === 1 ? ' differs' : 's differ'} between ${labels[0]} and ${labels[1]}:\n${formatComparison(comparison, labels)}\n`,
      );
      return EXIT_FAILURE;
    }
    const first = baseline.run;
    io.stderr.write(
      first
        ? `kiln: check: reproduced: the outputs of ${first.backend} (invocation ${first.invocationId}) and ${second.run.backend} (invocation ${second.run.invocationId}) are identical\n`
        : `kiln: check: reproduced: the rebuild on ${second.run.backend} (invocation ${second.run.invocationId}) gave the recorded outputs\n`,
    );
    if (!this.key) return EXIT_OK;
    if (!first) {
      await this.signProvenance(request, second, shape, this.store);
      return EXIT_OK;
    }
    const subjects = await outputSubjects(request, baseline.response, outputs, {
      ...(shape.subjectNames ? { subjectNames: shape.subjectNames } : {}),
      memo: this.sidecar,
      signal: io.signal,
    });
    await this.sign(reproducedStatement(shape.definition, [first, second.run], subjects), this.checkStatementOut, 'reproduced statement');
    return EXIT_OK;
  }
}

/** `kiln build`'s use of the Attestor, plus the result cache. */
export class BuildAttestation {
  readonly #attestor: Attestor;
  readonly #builderUrls: readonly string[];
  readonly #cacheMode: 'off' | 'use' | 'record';
  #observer: RunObserver | undefined;

  private constructor(attestor: Attestor, builderUrls: readonly string[], cacheMode: 'off' | 'use' | 'record') {
    this.#attestor = attestor;
    this.#builderUrls = builderUrls;
    this.#cacheMode = cacheMode;
  }

  /** Checks the options (usage errors before anything runs) and loads the key. */
  static async open(args: ParsedArgs, io: CommandIo, store: Castore, builderUrls: readonly string[]): Promise<BuildAttestation> {
    const remoteBuilder = builderUrls.some((url) => url.startsWith('grpc+'));
    const attestor = await Attestor.open(args, io, store, { remoteBuilder });
    const storeCaches = args.values.cache === true || (await attestor.sidecar.resultCacheEnabled());
    const cacheMode = args.values.rebuild === true ? 'record' : storeCaches ? 'use' : 'off';
    return new BuildAttestation(attestor, builderUrls, cacheMode);
  }

  /** Whether anything beyond a plain build was asked for. */
  get active(): boolean {
    return this.#attestor.active || this.#cacheMode !== 'off' || this.#attestor.provenanceOut !== undefined;
  }

  /** --provenance without --sign-key: writes the envelope the remote builder signed; exit 1 when it signed none. */
  async #writeBuilderProvenance(envelopeJson: string | undefined): Promise<number> {
    const { io, provenanceOut } = this.#attestor;
    if (envelopeJson === undefined) {
      io.stderr.write(
        `error: the builder signed no provenance for this build, so none was written to ${provenanceOut} (serve with kiln serve --sign-key FILE, or sign here with --sign-key FILE)\n`,
      );
      return EXIT_FAILURE;
    }
    let keyIds: string;
    try {
      keyIds = envelopeFromJson(envelopeJson)
        .signatures.map((s) => s.keyid ?? '?')
        .join(', ');
    } catch (error) {
      io.stderr.write(`error: the builder sent a malformed provenance envelope: ${(error as Error).message}\n`);
      return EXIT_FAILURE;
    }
    await writeFile(provenanceOut as string, `${envelopeJson}\n`);
    io.stderr.write(`kiln: provenance signed by the builder (key ${keyIds}), written to ${provenanceOut}\n`);
    return EXIT_OK;
  }

  /** The recorded result of this request when `--cache` is on and its outputs are all in the store. */
  async lookup(request: BuildRequest): Promise<AttestationResult | undefined> {
    if (this.#cacheMode !== 'use') return undefined;
    const { io, sidecar, store } = this.#attestor;
    const id = buildRequestDigest(request);
    const found = await lookupResult(sidecar, id, store, { signal: io.signal });
    if (found.status === 'stale') io.stderr.write(`kiln: cache: ${id} was built before but its outputs are gone; building\n`);
    if (found.status !== 'hit') return undefined;
    const { run } = found.build;
    io.stderr.write(
      `kiln: build ${id} cached: built on ${run.backend} at ${run.finishedOn} (invocation ${run.invocationId}); not building (--rebuild to build anyway)\n`,
    );
    return { response: found.build.response, run };
  }

  /** Passes the build's events through, noting the invocation, times and log. */
  watch(events: AsyncIterable<BuildEvent>): AsyncIterable<BuildEvent> {
    if (!this.active) return events;
    this.#observer = this.#attestor.observe();
    return this.#observer.watch(events);
  }

  /**
   * After a successful build (a `finished` event) or a cache hit: records
   * the result, signs and stores the provenance, runs the check. `outputs`
   * is where the outputs can be read (the store, or a remote builder's
   * castore). Resolves to the exit status.
   */
  async finish(request: BuildRequest, result: Finished | AttestationResult, outputs: StoreReader = this.#attestor.store): Promise<number> {
    if (!this.active) return EXIT_OK;
    const attestor = this.#attestor;
    let first: AttestationResult;
    if ('type' in result) {
      const observer = this.#observer;
      if (!observer) throw new Error('BuildAttestation.finish: the build was not watched');
      first = { response: result.response, run: await attestor.runOf(observer, this.#builderUrls) };
      if (this.#cacheMode !== 'off' && outputs === attestor.store) {
        const cached: CachedBuild = {
          ...first,
          wallTimeMs: result.wallTimeMs,
          cpuTimeMs: result.cpuTimeMs,
          peakMemoryBytes: result.peakMemoryBytes,
        };
        await recordResult(attestor.sidecar, buildRequestDigest(request), cached);
      }
    } else first = result;
    const shape = { definition: kilnBuildDefinition(request) };
    await attestor.signProvenance(request, first, shape, outputs);
    if (!attestor.key && attestor.provenanceOut !== undefined) {
      const status = await this.#writeBuilderProvenance('type' in result ? result.provenance : undefined);
      if (status !== EXIT_OK) return status;
    }
    if (!attestor.check) return EXIT_OK;
    return attestor.runCheck(request, first, shape, this.#builderUrls, outputs);
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
