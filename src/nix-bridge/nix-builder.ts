/**
 * Realising derivations on a Kiln builder, as `nix-build` does on Nix:
 * load and verify the derivation graph, build every derivation whose
 * wanted outputs Kiln does not hold yet, inputs first, up to `jobs` at a
 * time, and record each derivation's outputs in the path-info index.
 *
 * Per derivation: the input closure (sources imported from the local Nix
 * store, outputs of input derivations from the index) → BuildRequest →
 * BuildService (a remote builder's outputs are copied into the local
 * castore) → path infos of the outputs (outputs-to-path-infos.ts) →
 * their contents made durable (`makeRootsDurable`) → one atomic `putMany`
 * holding the outputs and any sources first used by this build. A failure
 * at any step writes nothing. The first failure
 * cancels the builds still running and no new one starts (Nix without
 * `--keep-going`).
 */
import { type BuildEvent, type BuildResponse, type BuildService, buildRequestDigest } from '../build/index.js';
import {
  type BlobService,
  type CastoreServices,
  copyClosure,
  type DirectoryService,
  type FileDigestCache,
  type Node,
} from '../castore/index.js';
import type { AbortOptions } from '../common/abort.js';
import { type Derivation, DerivationHasher, derivationNameFromPath, derivationPath, parseDerivation } from '../nix/index.js';
import { BUILTIN_FETCHURL, builtinFetchurlProblem, runBuiltinFetchurl } from './builtin-fetchurl.js';
import { makeRootsDurable } from './castore-to-nar.js';
import { boolAttrOf, stringsAttrOf, structuredAttrsOf } from './derivation-environment.js';
import { type DerivationBuildRequest, derivationToBuildRequest } from './derivation-to-build-request.js';
import { NixBridgeError } from './errors.js';
import type { LocalNixStore } from './local-nix-store.js';
import { outputsToPathInfos } from './outputs-to-path-infos.js';
import type { PathInfo } from './path-info.js';
import type { PathInfoService } from './path-info-service.js';

/** System features Kiln's builders provide (they need nothing special). */
export const SUPPORTED_SYSTEM_FEATURES: readonly string[] = ['benchmark', 'big-parallel'];

export type NixBuildEvent =
  /** The derivations that will be built, in an order that puts inputs first. */
  | { readonly type: 'planned'; readonly drvPaths: readonly string[] }
  | { readonly type: 'source-imported'; readonly path: string; readonly narSize: number }
  | { readonly type: 'started'; readonly drvPath: string; readonly buildId: string; readonly backend: string }
  | { readonly type: 'log'; readonly drvPath: string; readonly stream: 'stdout' | 'stderr'; readonly data: Uint8Array }
  | { readonly type: 'resources'; readonly drvPath: string; readonly cpuTimeMs: number; readonly peakMemoryBytes: number }
  | { readonly type: 'built'; readonly drvPath: string; readonly outputs: ReadonlyMap<string, PathInfo>; readonly wallTimeMs: number }
  | { readonly type: 'failed'; readonly drvPath: string; readonly error: Error };

export interface NixBuilderOptions {
  buildService: BuildService;
  blobService: BlobService;
  directoryService: DirectoryService;
  fileDigestCache?: FileDigestCache;
  pathInfoService: PathInfoService;
  nixStore: LocalNixStore;
  /** Derivations built at once; default `DEFAULT_JOBS`. */
  jobs?: number;
  /** `NIX_BUILD_CORES`; default the host's core count. */
  buildCores?: number;
  /** Where fixed-output derivations' `impureEnvVars` take their values; default none (all `""`). */
  impureEnv?: Readonly<Record<string, string | undefined>>;
  /** Provide `/bin/sh`; default true. */
  provideBinSh?: boolean;
  onEvent?: (event: NixBuildEvent) => void;
}

export const DEFAULT_JOBS = 1;
/** Input closure paths looked up or imported at once. */
const CLOSURE_CONCURRENCY = 8;

/** A derivation's BuildRequest with what produced it. */
export interface PreparedBuild {
  readonly drv: Derivation;
  readonly built: DerivationBuildRequest;
  /** Path infos of the whole input closure. */
  readonly closure: ReadonlyMap<string, PathInfo>;
}

export class NixBuilder {
  readonly #options: NixBuilderOptions;
  readonly #storeDir: string;
  readonly #parsed = new Map<string, Promise<Derivation>>();
  readonly #verified = new Map<string, Promise<Derivation>>();
  readonly #hasher: DerivationHasher;
  /** Sources imported in this run, by path; committed with the first build that uses them. */
  readonly #sources = new Map<string, Promise<PathInfo>>();
  /** Sources of `#sources` that a build has taken to commit with its outputs. */
  readonly #sourcesTaken = new Set<string>();
  /**
   * Path infos known in this run, by path: read from the index, or built
   * here (later builds use those at once, while they are committed). A
   * recorded path info never changes, so each is decoded once per run.
   */
  readonly #known = new Map<string, PathInfo>();
  readonly #commits = new GroupCommit((records) => this.#commit(records));

  constructor(options: NixBuilderOptions) {
    this.#options = options;
    this.#storeDir = options.nixStore.storeDir;
    this.#hasher = new DerivationHasher((path) => this.#parse(path), { storeDir: this.#storeDir });
  }

  #parse(drvPath: string): Promise<Derivation> {
    let pending = this.#parsed.get(drvPath);
    if (!pending) {
      pending = (async () => {
        const bytes = await this.#options.nixStore.readDerivationFile(drvPath);
        let drv: Derivation;
        try {
          drv = parseDerivation(bytes, { storeDir: this.#storeDir });
        } catch (error) {
          throw new NixBridgeError('INVALID_DERIVATION', `cannot read derivation ${drvPath}`, { cause: error, details: { path: drvPath } });
        }
        const name = derivationNameFromPath(drvPath, { storeDir: this.#storeDir });
        const actual = derivationPath(drv, name, { storeDir: this.#storeDir }).toAbsolute(this.#storeDir);
        if (actual !== drvPath) {
          throw new NixBridgeError('INVALID_DERIVATION', `derivation file ${drvPath} does not match its path: its contents are ${actual}`, {
            details: { path: drvPath, actual },
          });
        }
        return drv;
      })();
      this.#parsed.set(drvPath, pending);
    }
    return pending;
  }

  /** The derivation at `drvPath`, checked: its contents match its path and its output paths are the ones its inputs give. */
  load(drvPath: string): Promise<Derivation> {
    let pending = this.#verified.get(drvPath);
    if (!pending) {
      pending = (async () => {
        const drv = await this.#parse(drvPath);
        const name = derivationNameFromPath(drvPath, { storeDir: this.#storeDir });
        const expected = await this.#hasher.computeOutputPaths(drv, name);
        for (const [output, { path }] of drv.outputs) {
          const want = expected.outputs.get(output)?.path;
          if (path !== want) {
            throw new NixBridgeError(
              'INVALID_DERIVATION',
              `derivation ${drvPath} has output ${output} at ${path}, but its inputs give ${want}`,
              {
                details: { path: drvPath, output },
              },
            );
          }
        }
        return drv;
      })();
      this.#verified.set(drvPath, pending);
    }
    return pending;
  }

  #importSource(path: string, signal?: AbortSignal): Promise<PathInfo> {
    let pending = this.#sources.get(path);
    if (!pending) {
      pending = this.#options.nixStore
        .importSource(path, {
          blobService: this.#options.blobService,
          directoryService: this.#options.directoryService,
          ...(this.#options.fileDigestCache ? { fileDigestCache: this.#options.fileDigestCache } : {}),
          ...(signal ? { signal } : {}),
        })
        .then((info) => {
          this.#options.onEvent?.({ type: 'source-imported', path, narSize: info.narSize });
          return info;
        });
      pending.catch(() => this.#sources.delete(path));
      this.#sources.set(path, pending);
    }
    return pending;
  }

  /**
   * Path infos of the input closure: sources (from the index, else imported
   * from the Nix store) and the wanted outputs of input derivations (which
   * must be in the index), with everything they refer to.
   */
  async #inputClosure(drvPath: string, drv: Derivation, signal?: AbortSignal): Promise<Map<string, PathInfo>> {
    const closure = new Map<string, PathInfo>();
    const queue: string[] = [];
    for (const [inputDrvPath, names] of drv.inputDrvs) {
      const input = await this.load(inputDrvPath);
      for (const name of names) {
        const path = input.outputs.get(name)?.path;
        if (!path)
          throw new NixBridgeError('INVALID_DERIVATION', `${drvPath} uses output ${name} of ${inputDrvPath}, which has no such output`);
        const info = await this.#pathInfo(path);
        if (!info) {
          throw new NixBridgeError(
            'NOT_FOUND',
            `output ${name} of ${inputDrvPath} (${path}) is not built yet; build it first (kiln nix build)`,
            {
              details: { path },
            },
          );
        }
        closure.set(path, info);
        queue.push(...info.references);
      }
    }
    queue.push(...drv.inputSrcs);
    // A few workers drain the queue: sources are imported at most CLOSURE_CONCURRENCY at a time.
    const visiting = new Set<string>();
    const worker = async (): Promise<void> => {
      for (let path = queue.pop(); path !== undefined; path = queue.pop()) {
        if (closure.has(path) || visiting.has(path)) continue;
        visiting.add(path);
        const info = (await this.#pathInfo(path)) ?? (await this.#importSource(path, signal));
        closure.set(path, info);
        for (const ref of info.references) if (!closure.has(ref) && !visiting.has(ref)) queue.push(ref);
      }
    };
    // Workers that find the queue empty stop; the last one standing drains what the others add.
    while (queue.length > 0) await Promise.all(Array.from({ length: Math.min(CLOSURE_CONCURRENCY, queue.length) }, worker));
    return closure;
  }

  /** The BuildRequest of the derivation at `drvPath`; its input derivations' outputs must be built. */
  async prepare(drvPath: string, options: AbortOptions = {}): Promise<PreparedBuild> {
    const drv = await this.load(drvPath);
    checkBuildable(drvPath, drv);
    const closure = await this.#inputClosure(drvPath, drv, options.signal);
    const built = derivationToBuildRequest(drv, new Map<string, Node>([...closure].map(([path, info]) => [path, info.node])), {
      drvPath,
      storeDir: this.#storeDir,
      pathInfos: closure,
      ...(this.#options.buildCores !== undefined ? { buildCores: this.#options.buildCores } : {}),
      ...(this.#options.impureEnv ? { impureEnv: this.#options.impureEnv } : {}),
      ...(this.#options.provideBinSh !== undefined ? { provideBinSh: this.#options.provideBinSh } : {}),
    });
    return { drv, built, closure };
  }

  /** The derivations to build for `drvPath`'s `wanted` outputs, inputs before the derivations using them. */
  async plan(drvPath: string, wanted?: readonly string[]): Promise<string[]> {
    const order: string[] = [];
    const planned = new Set<string>();
    const visit = async (path: string, outputs: readonly string[] | undefined, chain: readonly string[]): Promise<void> => {
      const drv = await this.load(path);
      const names = outputs ?? [...drv.outputs.keys()];
      let missing = false;
      for (const name of names) {
        const out = drv.outputs.get(name);
        if (!out)
          throw new NixBridgeError(
            'INVALID_DERIVATION',
            `${chain.at(-1) ?? path} wants output ${name} of ${path}, which has no such output`,
          );
        if (!(await this.#pathInfo(out.path))) missing = true;
      }
      if (!missing || planned.has(path)) return;
      planned.add(path);
      for (const [input, inputNames] of [...drv.inputDrvs].sort(([a], [b]) => (a < b ? -1 : 1)))
        await visit(input, [...inputNames], [...chain, path]);
      order.push(path);
    };
    await visit(drvPath, wanted, []);
    return order;
  }

  /**
   * Builds what `drvPath` needs and returns the path infos of its outputs
   * (all of them, or `wanted`). Throws the first failure.
   */
  async realise(drvPath: string, options: AbortOptions & { wanted?: readonly string[] } = {}): Promise<Map<string, PathInfo>> {
    const order = await this.plan(drvPath, options.wanted);
    this.#options.onEvent?.({ type: 'planned', drvPaths: order });
    if (order.length > 0) await this.#buildAll(order, options.signal);
    const drv = await this.load(drvPath);
    const result = new Map<string, PathInfo>();
    for (const name of options.wanted ?? [...drv.outputs.keys()]) {
      const path = drv.outputs.get(name)?.path as string;
      const info = await this.#options.pathInfoService.get(path);
      if (!info) throw new NixBridgeError('NOT_FOUND', `output ${name} of ${drvPath} was not recorded`, { details: { path } });
      result.set(name, info);
    }
    return result;
  }

  async #buildAll(order: readonly string[], signal?: AbortSignal): Promise<void> {
    const jobs = Math.max(1, this.#options.jobs ?? DEFAULT_JOBS);
    const controller = new AbortController();
    const onAbort = () => controller.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const inOrder = new Set(order);
    const deps = new Map<string, Set<string>>();
    for (const path of order) {
      const drv = await this.load(path);
      deps.set(path, new Set([...drv.inputDrvs.keys()].filter((d) => inOrder.has(d))));
    }
    const done = new Set<string>();
    const running = new Map<string, Promise<void>>();
    let failure: { error: unknown } | undefined;
    try {
      while (done.size < order.length && !failure) {
        for (const path of order) {
          if (running.size >= jobs || failure) break;
          if (done.has(path) || running.has(path)) continue;
          if (![...(deps.get(path) as Set<string>)].every((d) => done.has(d))) continue;
          const task = this.#buildOne(path, controller.signal).then(
            () => {
              done.add(path);
              running.delete(path);
            },
            (error: unknown) => {
              running.delete(path);
              if (!failure) {
                failure = { error };
                if (!controller.signal.aborted) controller.abort(new NixBridgeError('DEPENDENCY_FAILED', `another build failed: ${path}`));
              }
            },
          );
          running.set(path, task);
        }
        if (running.size === 0) break;
        await Promise.race(running.values());
      }
      await Promise.all(running.values());
    } finally {
      signal?.removeEventListener('abort', onAbort);
      // What was built is recorded even when another build failed.
      await this.#commits.settled().catch((error: unknown) => {
        failure ??= { error };
      });
    }
    signal?.throwIfAborted();
    if (failure) throw failure.error;
  }

  /** A path's info: known in this run (built here, perhaps not committed yet), or from the index. */
  async #pathInfo(path: string): Promise<PathInfo | undefined> {
    const known = this.#known.get(path);
    if (known) return known;
    const info = await this.#options.pathInfoService.get(path);
    if (info) this.#known.set(path, info);
    return info;
  }

  /** Makes the records' contents durable, then commits them in one atomic `putMany`. */
  async #commit(records: readonly PathInfo[]): Promise<void> {
    await makeRootsDurable(
      records.map((r) => r.node),
      this.#options.blobService,
    );
    await this.#options.pathInfoService.putMany(records);
  }

  /**
   * Copies outputs a remote builder left in its own castore into ours, so
   * that the index only points at contents Kiln holds (a no-op when both
   * are the same store, or for local builders).
   */
  async #fetchOutputs(nodes: readonly Node[], invocationId: string | undefined, signal: AbortSignal): Promise<void> {
    const service = this.#options.buildService as BuildService & Partial<RemoteOutputs>;
    if (typeof service.remoteCastore !== 'function') return;
    const from = await service.remoteCastore(invocationId);
    await copyClosure(
      nodes,
      from,
      { blobService: this.#options.blobService, directoryService: this.#options.directoryService },
      { signal },
    );
  }

  /** Runs the build on the builder (copying a remote builder's outputs here); resolves to its response. */
  async #runOnBuilder(drvPath: string, built: DerivationBuildRequest, signal: AbortSignal): Promise<BuildResponse> {
    const emit = this.#options.onEvent;
    let outcome: Extract<BuildEvent, { type: 'finished' | 'failed' }> | undefined;
    let invocationId: string | undefined;
    for await (const event of this.#options.buildService.build(built.request, { signal })) {
      if (event.type === 'accepted') {
        invocationId = event.invocationId;
        emit?.({ type: 'started', drvPath, buildId: event.buildId, backend: event.backend });
      } else if (event.type === 'log') emit?.({ type: 'log', drvPath, stream: event.stream, data: event.data });
      else if (event.type === 'resources')
        emit?.({ type: 'resources', drvPath, cpuTimeMs: event.cpuTimeMs, peakMemoryBytes: event.peakMemoryBytes });
      else if (event.type === 'finished' || event.type === 'failed') outcome = event;
    }
    signal.throwIfAborted();
    if (!outcome) throw new NixBridgeError('BUILD_FAILED', `the builder gave no result for '${drvPath}'`, { details: { drvPath } });
    if (outcome.type === 'failed') throw buildFailure(drvPath, built, outcome);
    await this.#fetchOutputs(
      outcome.response.outputs.map((o) => o.node),
      invocationId,
      signal,
    );
    return outcome.response;
  }

  /** Fetches a `builtin:fetchurl` derivation's output here, as Nix does, instead of sending it to a builder. */
  async #runBuiltinFetchurl(drvPath: string, drv: Derivation, built: DerivationBuildRequest, signal: AbortSignal): Promise<BuildResponse> {
    this.#options.onEvent?.({ type: 'started', drvPath, buildId: buildRequestDigest(built.request).toString(), backend: BUILTIN_FETCHURL });
    return runBuiltinFetchurl(drvPath, drv, this.#options, { signal });
  }

  async #buildOne(drvPath: string, signal: AbortSignal): Promise<void> {
    const emit = this.#options.onEvent;
    try {
      signal.throwIfAborted();
      const { drv, built, closure } = await this.prepare(drvPath, { signal });
      const started = performance.now();
      const response =
        drv.builder === BUILTIN_FETCHURL
          ? await this.#runBuiltinFetchurl(drvPath, drv, built, signal)
          : await this.#runOnBuilder(drvPath, built, signal);
      const outputs = await outputsToPathInfos(drv, drvPath, built, response, this.#options, {
        signal,
        storeDir: this.#storeDir,
        inputInfos: closure,
      });
      // Sources this run imported and no build took yet go with this build's outputs; outputs of earlier builds went
      // (or go) before them.
      const sources: PathInfo[] = [];
      for (const [path, info] of closure) {
        if (!this.#sources.has(path) || this.#sourcesTaken.has(path)) continue;
        this.#sourcesTaken.add(path);
        sources.push(info);
      }
      const records = [...sources, ...outputs.values()];
      for (const record of records) this.#known.set(record.storePath.toAbsolute(this.#storeDir), record);
      // Committed in the background, in order with other builds' records: the builds using these outputs start now.
      this.#commits.add(records);
      emit?.({ type: 'built', drvPath, outputs, wallTimeMs: performance.now() - started });
    } catch (error) {
      if (!signal.aborted || !(error === signal.reason)) emit?.({ type: 'failed', drvPath, error: error as Error });
      throw error;
    }
  }
}

/** A builder that keeps outputs in a castore of its own (a remote Kiln server). */
interface RemoteOutputs {
  remoteCastore(invocationId?: string): Promise<CastoreServices>;
}

/** Refuses what Nix's sandbox refuses, and what no Kiln builder can run. */
export function checkBuildable(drvPath: string, drv: Derivation): void {
  const reject = (message: string) => new NixBridgeError('DERIVATION_REJECTED', message, { details: { drvPath } });
  if (drv.builder === BUILTIN_FETCHURL) {
    const problem = builtinFetchurlProblem(drv);
    if (problem) throw reject(`derivation '${drvPath}': ${problem}`);
  } else if (drv.builder.startsWith('builtin:')) {
    throw reject(`derivation '${drvPath}' uses the builtin builder ${drv.builder}, which Kiln does not provide (only ${BUILTIN_FETCHURL})`);
  }
  const attrs = structuredAttrsOf(drv);
  if (boolAttrOf(drv, attrs, '__noChroot')) {
    throw reject(`derivation '${drvPath}' has '__noChroot' set, but that's not allowed when 'sandbox' is 'true'`);
  }
  const features = stringsAttrOf(drv, attrs, 'requiredSystemFeatures') ?? [];
  const missing = features.filter((f) => !SUPPORTED_SYSTEM_FEATURES.includes(f));
  if (missing.length > 0) {
    throw reject(`derivation '${drvPath}' requires system features {${missing.join(', ')}}, which Kiln's builders do not provide`);
  }
}

function buildFailure(drvPath: string, built: DerivationBuildRequest, outcome: Extract<BuildEvent, { type: 'failed' }>): NixBridgeError {
  let message: string;
  if (outcome.reason === 'exit-code' && outcome.exitCode !== undefined) {
    message = `builder for '${drvPath}' failed with exit code ${outcome.exitCode}`;
  } else if (outcome.reason === 'output-missing') {
    const missing = [...built.outputPaths].find(([, path]) => outcome.message.includes(path.slice(1)));
    message = missing
      ? `builder for '${drvPath}' failed to produce output path for output '${missing[0]}' at '${missing[1]}'`
      : `builder for '${drvPath}' failed to produce an output: ${outcome.message}`;
  } else {
    message = `builder for '${drvPath}' failed (${outcome.reason}): ${outcome.message}`;
  }
  return new NixBridgeError('BUILD_FAILED', message, {
    details: { drvPath, reason: outcome.reason, exitCode: outcome.exitCode, logTail: outcome.logTail },
  });
}

/**
 * Commits records in the order they come, as few commits as possible: while
 * one commit runs, what arrives waits and goes in the next one together.
 * A failed commit fails every later one too (their records may refer to
 * the failed ones).
 */
class GroupCommit {
  readonly #commit: (records: readonly PathInfo[]) => Promise<void>;
  #waiting: PathInfo[] = [];
  #running: Promise<void> = Promise.resolve();
  #failure: { error: unknown } | undefined;
  #busy = false;

  constructor(commit: (records: readonly PathInfo[]) => Promise<void>) {
    this.#commit = commit;
  }

  add(records: readonly PathInfo[]): void {
    this.#waiting.push(...records);
    if (!this.#busy) this.#running = this.#drain();
  }

  async #drain(): Promise<void> {
    this.#busy = true;
    try {
      while (this.#waiting.length > 0 && !this.#failure) {
        const batch = this.#waiting;
        this.#waiting = [];
        try {
          await this.#commit(batch);
        } catch (error) {
          this.#failure = { error };
        }
      }
    } finally {
      this.#busy = false;
    }
  }

  /** Resolves once everything added so far is committed; rejects with the first failure. */
  async settled(): Promise<void> {
    await this.#running;
    if (this.#failure) throw this.#failure.error;
  }
}
