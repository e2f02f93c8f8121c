/**
 * The input closure of a BuildRequest: every directory and blob its inputs
 * reach. A builder checks that its store holds all of it before building
 * (`missingInputs`); a client sends a remote builder what it lacks
 * (`uploadInputClosure`), asking first and sending only the missing parts.
 */
import {
  type B3Digest,
  type CastoreServices,
  type CopySummary,
  copyClosure,
  type DirectoryService,
  isCastoreError,
  type Node,
} from '../castore/index.js';
import type { AbortOptions } from '../common/abort.js';
import { mapConcurrent } from '../common/async-iterable.js';
import type { BuildRequest } from './build-request.js';
import { BuildError } from './errors.js';

/** How many existence checks run at once. */
const CONCURRENCY = 16;

/** The blobs an input closure references (each once), and the directories it needs that the store lacks. */
interface Closure {
  blobs: Map<string, B3Digest>;
  /** Digests (`blake3-…`) of input directories the store lacks, or whose closure it holds only in part. */
  missingDirectories: string[];
}

async function collectClosure(inputs: readonly Node[], directoryService: DirectoryService, options: AbortOptions): Promise<Closure> {
  const closure: Closure = { blobs: new Map(), missingDirectories: [] };
  const seen = new Set<string>();
  const addFile = (node: Node) => {
    if (node.type === 'file') closure.blobs.set(node.digest.toHex(), node.digest);
  };
  for (const node of inputs) {
    addFile(node);
    if (node.type !== 'directory' || seen.has(node.digest.toHex())) continue;
    let found = false;
    try {
      for await (const directory of directoryService.getRecursive(node.digest, options)) {
        found = true;
        const hex = directory.digest.toHex();
        if (seen.has(hex)) continue;
        seen.add(hex);
        for (const entry of directory.entries) addFile(entry.node);
      }
    } catch (error) {
      if ((error as { code?: string }).code !== 'NOT_FOUND') throw error;
      found = false;
    }
    if (!found) closure.missingDirectories.push(node.digest.toString());
  }
  return closure;
}

/**
 * The digests (`blake3-…` form) of the input closure that `store` lacks;
 * empty when it holds everything.
 */
export async function missingInputs(
  request: Pick<BuildRequest, 'inputs'>,
  store: CastoreServices,
  options: AbortOptions = {},
): Promise<string[]> {
  const closure = await collectClosure(
    request.inputs.map((i) => i.node),
    store.directoryService,
    options,
  );
  const missing = [...closure.missingDirectories];
  for await (const absent of mapConcurrent(closure.blobs.values(), CONCURRENCY, async (digest) =>
    (await store.blobService.has(digest, options)) ? undefined : digest.toString(),
  )) {
    if (absent) missing.push(absent);
  }
  return missing;
}

export type UploadSummary = CopySummary;

/**
 * Sends `to` what it lacks of the request's input closure, read from
 * `from` (castore's `copyClosure`: blobs first, each checked with `has`,
 * then each input's directory closure, leaves first, when `to` lacks its
 * root). `INPUT_MISSING` names what `from` lacks.
 */
export async function uploadInputClosure(
  request: Pick<BuildRequest, 'inputs'>,
  from: CastoreServices,
  to: CastoreServices,
  options: AbortOptions = {},
): Promise<UploadSummary> {
  try {
    return await copyClosure(
      request.inputs.map((i) => i.node),
      from,
      to,
      options,
    );
  } catch (error) {
    if (!isCastoreError(error, 'NOT_FOUND') || !Array.isArray(error.details.missing)) throw error;
    const missing = error.details.missing as string[];
    throw new BuildError('INPUT_MISSING', `the local store lacks part of the input closure: ${missing.join(', ')}`, {
      cause: error,
      details: { field: 'inputs', missing },
    });
  }
}
