/**
 * The result cache: a successful build recorded under its request digest
 * (the build id), so an identical request returns the recorded response at
 * once, as long as every output's closure is still in the store. Only
 * successful builds are recorded. What is kept is enough to state the
 * original build's provenance again: the response, the run (builder,
 * invocation, times, log digest) and its resource use.
 */
import type { BuildResponse } from '../build/index.js';
import type { B3Digest, Node } from '../castore/index.js';
import type { AbortOptions } from '../common/abort.js';
import { mapConcurrent } from '../common/async-iterable.js';
import { castoreDigestOf, describeNode, nodeFromDescription, type StoreReader } from './digests.js';
import { ProvenanceError } from './errors.js';
import type { Sidecar } from './sidecar.js';
import type { BuildRun } from './slsa-provenance.js';

export interface CachedBuild {
  readonly response: BuildResponse;
  readonly run: BuildRun;
  readonly wallTimeMs: number;
  readonly cpuTimeMs: number;
  readonly peakMemoryBytes: number;
}

interface CachedBuildJson {
  readonly version: 1;
  readonly outputs: { readonly digest: Record<string, string>; readonly node: unknown; readonly needles: readonly number[] }[];
  readonly run: BuildRun;
  readonly wallTimeMs: number;
  readonly cpuTimeMs: number;
  readonly peakMemoryBytes: number;
}

export async function recordResult(sidecar: Sidecar, buildId: B3Digest, build: CachedBuild): Promise<void> {
  const json: CachedBuildJson = {
    version: 1,
    outputs: build.response.outputs.map((o) => ({ digest: castoreDigestOf(o.node), node: describeNode(o.node), needles: o.needles })),
    run: build.run,
    wallTimeMs: build.wallTimeMs,
    cpuTimeMs: build.cpuTimeMs,
    peakMemoryBytes: build.peakMemoryBytes,
  };
  await sidecar.putResult(buildId.toHex(), JSON.stringify(json));
}

function parseRecord(text: string, buildId: B3Digest): CachedBuild {
  const bad = (why: string) => new ProvenanceError('INVALID_RECORD', `the cached result of ${buildId} is unreadable: ${why}`);
  let value: CachedBuildJson;
  try {
    value = JSON.parse(text) as CachedBuildJson;
  } catch (error) {
    throw bad((error as Error).message);
  }
  if (value?.version !== 1 || !Array.isArray(value.outputs) || typeof value.run?.buildId !== 'string') throw bad('unexpected shape');
  const outputs = value.outputs.map((o, i) => {
    const node = nodeFromDescription(o.digest ?? {}, o.node);
    if (!node || !Array.isArray(o.needles)) throw bad(`outputs[${i}] is invalid`);
    return { node, needles: o.needles };
  });
  return { ...value, response: { outputs } };
}

/** Whether every directory and blob under `nodes` is in the store. */
export async function closurePresent(nodes: readonly Node[], store: StoreReader, options: AbortOptions = {}): Promise<boolean> {
  const blobs = new Map<string, B3Digest>();
  for (const node of nodes) {
    if (node.type === 'file') blobs.set(node.digest.toHex(), node.digest);
    if (node.type !== 'directory') continue;
    if (!(await store.directoryService.get(node.digest, options))) return false;
    try {
      for await (const directory of store.directoryService.getRecursive(node.digest, options)) {
        for (const entry of directory.entries) if (entry.node.type === 'file') blobs.set(entry.node.digest.toHex(), entry.node.digest);
      }
    } catch (error) {
      if ((error as { code?: string }).code === 'NOT_FOUND') return false;
      throw error;
    }
  }
  for await (const present of mapConcurrent(blobs.values(), 16, (digest) => store.blobService.has(digest, options))) {
    if (!present) return false;
  }
  return true;
}

export type CacheLookup =
  | { readonly status: 'hit'; readonly build: CachedBuild }
  | { readonly status: 'miss' }
  /** Recorded, but part of an output's closure is gone from the store. */
  | { readonly status: 'stale' };

/** The recorded result of `buildId`, when every output is still in the store. */
export async function lookupResult(
  sidecar: Sidecar,
  buildId: B3Digest,
  store: StoreReader,
  options: AbortOptions = {},
): Promise<CacheLookup> {
  const text = await sidecar.getResult(buildId.toHex());
  if (text === undefined) return { status: 'miss' };
  const build = parseRecord(text, buildId);
  if (build.run.buildId !== buildId.toString()) return { status: 'miss' };
  if (
    !(await closurePresent(
      build.response.outputs.map((o) => o.node),
      store,
      options,
    ))
  )
    return { status: 'stale' };
  return { status: 'hit', build };
}
