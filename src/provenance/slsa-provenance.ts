/**
 * The SLSA provenance v1 predicate (`https://slsa.dev/provenance/v1`) for a
 * Kiln build, and Kiln's own "reproduced" predicate for a build run twice
 * with identical outputs.
 *
 * Build type `https://kiln.dev/build/v1` (documented in the README):
 * - `externalParameters`: the BuildRequest, its proto3 JSON as an object
 *   (`snix.build.v1.BuildRequest`): it names every input by digest, the
 *   command, environment, outputs and constraints, so it alone determines
 *   what is built; its BLAKE3 digest is the build id.
 * - `internalParameters`: what the builder chose: backend, builder URL
 *   (secrets removed), its limits and sandbox settings.
 * - `resolvedDependencies`: every input, named `<inputs_dir>/<name>`, with
 *   `blake3` (castore digest) and `sha256` (NAR) digests.
 * - `runDetails.metadata.invocationId`: `<build id>#<invocation id>` (the
 *   request digest and the builder's unique id of this run).
 * - `runDetails.byproducts`: the build log (stdout and stderr as the build
 *   wrote them, interleaved in arrival order), stored as a castore blob.
 *
 * Build type `https://kiln.dev/nix-build/v1`: the same, but
 * `externalParameters` = `{ derivation: { path, digest: { sha256 } } }`
 * (the `.drv` store path and the SHA-256 of its ATerm bytes) and subjects
 * named by store path; the Nix front end supplies it (`nixBuildDefinition`).
 */
import type { BuildRequest, BuildResponse } from '../build/index.js';
import { buildRequestToJson } from '../build/index.js';
import type { AbortOptions } from '../common/abort.js';
import { displayBytes, toHex } from '../common/encoding.js';
import { sha256 } from '../nix/index.js';
import type { CastoreReader } from '../nix-bridge/index.js';
import { type DigestSet, describeNode, nodeDigests } from './digests.js';
import { IN_TOTO_STATEMENT_TYPE, type ResourceDescriptor, type Statement, type Subject } from './statement.js';

export const SLSA_PROVENANCE_V1 = 'https://slsa.dev/provenance/v1';
export const KILN_BUILD_TYPE = 'https://kiln.dev/build/v1';
export const KILN_NIX_BUILD_TYPE = 'https://kiln.dev/nix-build/v1';
/** Kiln's predicate: the subjects came out identical from every run listed. */
export const KILN_REPRODUCED_PREDICATE = 'https://kiln.dev/reproduced/v1';
/** Annotation key carrying a node's kind, size and executable bit (see digests.ts). */
export const NODE_ANNOTATION = 'kiln_node';

/** What is known of one run of a build. */
export interface BuildRun {
  /** The request digest, `blake3-…`. */
  readonly buildId: string;
  /** The builder's unique id of this run. */
  readonly invocationId: string;
  /** The backend that ran it, e.g. `bwrap`, `oci(runc)`. */
  readonly backend: string;
  /** `runDetails.builder.id`: the builder's configured identity (a URI). */
  readonly builderId: string;
  readonly builderVersion?: Readonly<Record<string, string>>;
  /** RFC 3339 UTC. */
  readonly startedOn: string;
  readonly finishedOn: string;
  /** The log blob's digests and size. */
  readonly log?: { readonly digest: DigestSet; readonly size: number };
  readonly internalParameters?: Readonly<Record<string, unknown>>;
}

/** How a front end (the Nix CLI) describes the build in place of the BuildRequest. */
export interface BuildDefinition {
  readonly buildType: string;
  readonly externalParameters: Readonly<Record<string, unknown>>;
  /** Appended to the inputs in `resolvedDependencies`. */
  readonly extraDependencies?: readonly ResourceDescriptor[];
}

/** The Nix front end's build definition: the `.drv` path and the SHA-256 of its ATerm bytes. */
export function nixBuildDefinition(
  derivationPath: string,
  aterm: Uint8Array | string,
  extraDependencies?: readonly ResourceDescriptor[],
): BuildDefinition {
  return {
    buildType: KILN_NIX_BUILD_TYPE,
    externalParameters: { derivation: { path: derivationPath, digest: { sha256: toHex(sha256(aterm)) } } },
    ...(extraDependencies ? { extraDependencies } : {}),
  };
}

/** A memo of node digests: content never changes, so a node's NAR hash can be remembered forever. */
export interface DigestMemo {
  get(key: string): Promise<DigestSet | undefined>;
  set(key: string, digests: DigestSet): Promise<void>;
}

export interface SubjectOptions extends AbortOptions {
  /** Names of the outputs, in request order (default: the request's output paths; Nix: store paths). */
  readonly subjectNames?: readonly string[];
  readonly memo?: DigestMemo;
}

async function memoizedDigests(node: BuildResponse['outputs'][number]['node'], castore: CastoreReader, options: SubjectOptions) {
  if (node.type === 'symlink' || !options.memo) return nodeDigests(node, castore, options);
  const key = `${node.type === 'directory' ? 'd' : node.executable ? 'x' : 'f'}-${node.digest.toHex()}`;
  const known = await options.memo.get(key);
  if (known) return known;
  const digests = await nodeDigests(node, castore, options);
  await options.memo.set(key, digests);
  return digests;
}

/** One subject per output: its name and digests, with the node description annotation. */
export async function outputSubjects(
  request: Pick<BuildRequest, 'outputs'>,
  response: BuildResponse,
  castore: CastoreReader,
  options: SubjectOptions = {},
): Promise<Subject[]> {
  const subjects: Subject[] = [];
  for (const [i, output] of response.outputs.entries()) {
    subjects.push({
      name: options.subjectNames?.[i] ?? (request.outputs[i] as string),
      digest: await memoizedDigests(output.node, castore, options),
      annotations: { [NODE_ANNOTATION]: describeNode(output.node) },
    });
  }
  return subjects;
}

/** Every input with its digests, named `<inputs_dir>/<name>`. */
export async function inputDependencies(
  request: Pick<BuildRequest, 'inputs' | 'inputsDir'>,
  castore: CastoreReader,
  options: SubjectOptions = {},
): Promise<ResourceDescriptor[]> {
  const out: ResourceDescriptor[] = [];
  for (const input of request.inputs) {
    out.push({
      name: `${request.inputsDir}/${displayBytes(input.name)}`,
      digest: await memoizedDigests(input.node, castore, options),
      annotations: { [NODE_ANNOTATION]: describeNode(input.node) },
    });
  }
  return out;
}

export interface SlsaProvenance {
  readonly buildDefinition: {
    readonly buildType: string;
    readonly externalParameters: Readonly<Record<string, unknown>>;
    readonly internalParameters?: Readonly<Record<string, unknown>>;
    readonly resolvedDependencies: readonly ResourceDescriptor[];
  };
  readonly runDetails: {
    readonly builder: { readonly id: string; readonly version?: Readonly<Record<string, string>> };
    readonly metadata: { readonly invocationId: string; readonly startedOn: string; readonly finishedOn: string };
    readonly byproducts: readonly ResourceDescriptor[];
  };
}

/** The request as `externalParameters` of build type `https://kiln.dev/build/v1`. */
export function kilnBuildDefinition(request: BuildRequest): BuildDefinition {
  return { buildType: KILN_BUILD_TYPE, externalParameters: JSON.parse(buildRequestToJson(request)) as Record<string, unknown> };
}

function runDetails(run: BuildRun): SlsaProvenance['runDetails'] {
  return {
    builder: { id: run.builderId, ...(run.builderVersion ? { version: run.builderVersion } : {}) },
    metadata: { invocationId: `${run.buildId}#${run.invocationId}`, startedOn: run.startedOn, finishedOn: run.finishedOn },
    byproducts: run.log ? [{ name: 'log', digest: run.log.digest, mediaType: 'text/plain', annotations: { size: run.log.size } }] : [],
  };
}

/** Assembles the statement from digests already computed. */
export function slsaProvenanceStatement(
  definition: BuildDefinition,
  run: BuildRun,
  subjects: readonly Subject[],
  dependencies: readonly ResourceDescriptor[],
): Statement<SlsaProvenance> {
  return {
    _type: IN_TOTO_STATEMENT_TYPE,
    subject: subjects,
    predicateType: SLSA_PROVENANCE_V1,
    predicate: {
      buildDefinition: {
        buildType: definition.buildType,
        externalParameters: definition.externalParameters,
        ...(run.internalParameters ? { internalParameters: run.internalParameters } : {}),
        resolvedDependencies: [...dependencies, ...(definition.extraDependencies ?? [])],
      },
      runDetails: runDetails(run),
    },
  };
}

export interface ProvenanceOptions extends SubjectOptions {
  /** Replaces the BuildRequest as the build's definition (the Nix front end's hook). */
  readonly definition?: BuildDefinition;
  /** Where the outputs are, when not in `castore` (a remote builder's castore); inputs are read from `castore`. */
  readonly outputStore?: CastoreReader;
}

/** The SLSA provenance of a finished build: hashes its outputs and inputs (NAR) from the castore. */
export async function buildProvenance(
  request: BuildRequest,
  response: BuildResponse,
  run: BuildRun,
  castore: CastoreReader,
  options: ProvenanceOptions = {},
): Promise<Statement<SlsaProvenance>> {
  const subjects = await outputSubjects(request, response, options.outputStore ?? castore, options);
  const dependencies = await inputDependencies(request, castore, options);
  return slsaProvenanceStatement(options.definition ?? kilnBuildDefinition(request), run, subjects, dependencies);
}

export interface ReproducedPredicate {
  readonly buildType: string;
  readonly externalParameters: Readonly<Record<string, unknown>>;
  /** Every run that produced exactly the subjects, in the order they ran. */
  readonly runs: readonly (SlsaProvenance['runDetails'] & { readonly backend: string })[];
}

/** A statement that every run in `runs` produced the subjects bit for bit. */
export function reproducedStatement(
  definition: BuildDefinition,
  runs: readonly BuildRun[],
  subjects: readonly Subject[],
): Statement<ReproducedPredicate> {
  return {
    _type: IN_TOTO_STATEMENT_TYPE,
    subject: subjects,
    predicateType: KILN_REPRODUCED_PREDICATE,
    predicate: {
      buildType: definition.buildType,
      externalParameters: definition.externalParameters,
      runs: runs.map((run) => ({ ...runDetails(run), backend: run.backend })),
    },
  };
}

/** What a person wants to see of a statement Kiln issued (read defensively: the statement may be anyone's). */
export interface StatementSummary {
  readonly kind: 'provenance' | 'reproduced' | 'other';
  readonly buildType?: string;
  /** One per run (two or more for a reproduced statement). */
  readonly runs: readonly { builderId?: string; backend?: string; invocationId?: string; finishedOn?: string }[];
}

export function summarizeStatement(statement: Pick<Statement<unknown>, 'predicateType' | 'predicate'>): StatementSummary {
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const runOf = (details: unknown, backend?: unknown) => {
    const d = (details ?? {}) as { builder?: { id?: unknown }; metadata?: { invocationId?: unknown; finishedOn?: unknown } };
    const run: { builderId?: string; backend?: string; invocationId?: string; finishedOn?: string } = {};
    if (str(d.builder?.id)) run.builderId = str(d.builder?.id);
    if (str(backend)) run.backend = str(backend);
    if (str(d.metadata?.invocationId)) run.invocationId = str(d.metadata?.invocationId);
    if (str(d.metadata?.finishedOn)) run.finishedOn = str(d.metadata?.finishedOn);
    return run;
  };
  if (statement.predicateType === SLSA_PROVENANCE_V1) {
    const p = statement.predicate as Partial<SlsaProvenance>;
    const internal = p.buildDefinition?.internalParameters as { backend?: unknown } | undefined;
    const buildType = str(p.buildDefinition?.buildType);
    return { kind: 'provenance', ...(buildType ? { buildType } : {}), runs: [runOf(p.runDetails, internal?.backend)] };
  }
  if (statement.predicateType === KILN_REPRODUCED_PREDICATE) {
    const p = statement.predicate as Partial<ReproducedPredicate>;
    const buildType = str(p.buildType);
    return {
      kind: 'reproduced',
      ...(buildType ? { buildType } : {}),
      runs: Array.isArray(p.runs) ? p.runs.map((r) => runOf(r, (r as { backend?: unknown }).backend)) : [],
    };
  }
  return { kind: 'other', runs: [] };
}
