/**
 * What `kiln nix build` adds for provenance and reproducibility, on the
 * same Attestor as `kiln build`: `--sign-key`/`--provenance` (SLSA
 * provenance with build type https://kiln.dev/nix-build/v1: the
 * derivation's path and the SHA-256 of its ATerm as external parameters,
 * subjects named by store path), `--check`/`--check-builder` (rebuild the
 * derivation and compare with the recorded outputs). The command wraps its
 * BuildService with `wrap` (every build's run is noted by request digest)
 * and calls `finish` after realising.
 */
import { type BuildEvent, type BuildRequest, type BuildResponse, type BuildService, buildRequestDigest } from '../build/index.js';
import type { Castore } from '../castore/index.js';
import type { AbortOptions } from '../common/abort.js';
import { writeDerivation } from '../nix/index.js';
import type { NixBuilder, PathInfo } from '../nix-bridge/index.js';
import { nixBuildDefinition, type RunObserver } from '../provenance/index.js';
import { ATTESTATION_OPTIONS, Attestor } from './build-provenance.js';
import type { CommandIo, ParsedArgs } from './command.js';
import { EXIT_OK } from './exit-codes.js';

const { cache: _cache, rebuild: _rebuild, ...nixOptions } = ATTESTATION_OPTIONS;
export const NIX_ATTESTATION_OPTIONS = nixOptions;

export const NIX_ATTESTATION_HELP = `provenance and reproducibility (of DRV itself, not of its inputs):
  --sign-key FILE    sign an SLSA provenance v1 statement of DRV's build (build type
                     https://kiln.dev/nix-build/v1: the .drv path and the SHA-256 of its
                     ATerm; subjects named by store path) and store it with the outputs;
                     only when DRV was built by this command (or rebuilt by --check)
  --provenance OUT   also write the signed envelope (DSSE JSON) to OUT (needs --sign-key)
  --builder-id URI   runDetails.builder.id (default: $KILN_BUILDER_ID, else
                     urn:kiln:builder:<hostname>:<backend>)
  --check            build DRV again (also when its outputs are held) and compare with the
                     recorded outputs: exit 0 when identical (with --sign-key, a signed
                     statement that it reproduced), 1 listing the differing files
  --check-builder URL  run the check build there (default: the same builder)
  --check-statement OUT  write the signed reproduced statement to OUT`;

/** Every build through it is observed; finished runs are kept by request digest. */
class RecordingBuildService implements BuildService {
  readonly name: string;
  readonly runs = new Map<string, RunObserver>();
  readonly #inner: BuildService;
  readonly #attestor: Attestor;
  constructor(inner: BuildService, attestor: Attestor) {
    this.name = inner.name;
    this.#inner = inner;
    this.#attestor = attestor;
  }
  async *build(request: BuildRequest, options?: AbortOptions): AsyncIterable<BuildEvent> {
    const observer = this.#attestor.observe();
    for await (const event of observer.watch(this.#inner.build(request, options))) {
      if (event.type === 'finished') this.runs.set(buildRequestDigest(request).toString(), observer);
      yield event;
    }
  }
  close(): Promise<void> {
    return this.#inner.close();
  }
}

export class NixAttestation {
  readonly #attestor: Attestor;
  readonly #builderUrl: string;
  #recording: RecordingBuildService | undefined;

  private constructor(attestor: Attestor, builderUrl: string) {
    this.#attestor = attestor;
    this.#builderUrl = builderUrl;
  }

  static async open(args: ParsedArgs, io: CommandIo, store: Castore, builderUrl: string): Promise<NixAttestation> {
    return new NixAttestation(await Attestor.open(args, io, store), builderUrl);
  }

  /** The build service to give the NixBuilder. */
  wrap(service: BuildService): BuildService {
    if (!this.#attestor.active) return service;
    this.#recording = new RecordingBuildService(service, this.#attestor);
    return this.#recording;
  }

  /** After realising DRV: signs its provenance (when built now) and runs the check. Resolves to the exit status. */
  async finish(builder: NixBuilder, drvPath: string, outputs: ReadonlyMap<string, PathInfo>): Promise<number> {
    const attestor = this.#attestor;
    if (!attestor.active) return EXIT_OK;
    const { io } = attestor;
    const { drv, built } = await builder.prepare(drvPath, { signal: io.signal });
    const request = built.request;
    const subjectNames = request.outputs.map((rel) => `/${rel}`);
    const byPath = new Map([...built.outputPaths].map(([name, path]) => [path, outputs.get(name)]));
    const response: BuildResponse = {
      outputs: subjectNames.map((path) => {
        const info = byPath.get(path);
        if (!info) throw new Error(`output ${path} of ${drvPath} was not realised`);
        return { node: info.node, needles: [] };
      }),
    };
    const shape = { definition: nixBuildDefinition(drvPath, writeDerivation(drv)), subjectNames };
    const id = buildRequestDigest(request).toString();
    const observer = this.#recording?.runs.get(id);
    for (const [other, o] of this.#recording?.runs ?? []) if (other !== id) o.log?.abandon();
    const run = observer ? await attestor.runOf(observer, [this.#builderUrl]) : undefined;
    if (run) await attestor.signProvenance(request, { response, run }, shape, attestor.store);
    else if (attestor.key && !attestor.check)
      io.stderr.write(`kiln: ${drvPath} was not built now (its outputs are held): no provenance signed; --check rebuilds it\n`);
    if (!attestor.check) return EXIT_OK;
    return attestor.runCheck(request, { response, ...(run ? { run } : {}) }, shape, [this.#builderUrl], attestor.store);
  }
}
