/**
 * The input closure of a BuildRequest: every directory and blob its inputs
 * reach. A builder checks that its store holds all of it before building
 * (`missingInputs`); a client sends a remote builder what it lacks
 * (`uploadInputClosure`), asking first and sending only the missing parts.
 */
import {
  B3Digest,
  type BlobService,
  type CopySummary,
  copyClosure,
  type Directory,
  type DirectoryService,
  isCastoreError,
  type Node,
} from '../castore/index.js';
import type { AbortOptions } from '../common/abort.js';
import { mapConcurrent } from '../common/async-iterable.js';
import type { BuildRequest } from './build-request.js';
import { BuildError } from './errors.js';

/** How many existence checks or uploads run at once. */
const CONCURRENCY = 16;

interface Castore {
  blobService: BlobService;
  directoryService: DirectoryService;
}

/** What an input closure consists of: directories (each once) and the blobs their files and the inputs reference. */
interface Closure {
  directories: Directory[];
  /** Blob digests (hex) with their size, each once. */
  blobs: Map<string, { digest: B3Digest; size: number }>;
  /** Directory digests (hex) an input or directory references but the store lacks. */
  missingDirectories: string[];
}

async function collectClosure(inputs: readonly Node[], directoryService: DirectoryService, options: AbortOptions): Promise<Closure> {
  const closure: Closure = { directories: [], blobs: new Map(), missingDirectories: [] };
  const seen = new Set<string>();
  const addFile = (node: Node) => {
    if (node.type === 'file') closure.blobs.set(node.digest.toHex(), { digest: node.digest, size: node.size });
  };
  for (const node of inputs) {
    addFile(node);
    if (node.type !== 'directory' || seen.has(node.digest.toHex())) continue;
    const before = closure.directories.length;
    try {
      for await (const directory of directoryService.getRecursive(node.digest, options)) {
        const hex = directory.digest.toHex();
        if (seen.has(hex)) continue;
        seen.add(hex);
        closure.directories.push(directory);
        for (const entry of directory.entries) addFile(entry.node);
      }
    } catch (error) {
      if ((error as { code?: string }).code !== 'NOT_FOUND') throw error;
      closure.missingDirectories.push(node.digest.toHex());
      continue;
    }
    if (closure.directories.length === before && !seen.has(node.digest.toHex())) closure.missingDirectories.push(node.digest.toHex());
  }
  return closure;
}

/**
 * The digests (`blake3-…` form) of the input closure that `store` lacks;
 * empty when it holds everything.
 */
export async function missingInputs(request: Pick<BuildRequest, 'inputs'>, store: Castore, options: AbortOptions = {}): Promise<string[]> {
  const closure = await collectClosure(
    request.inputs.map((i) => i.node),
    store.directoryService,
    options,
  );
  const missing = closure.missingDirectories.map((hex) => B3Digest.fromHex(hex).toString());
  for await (const absent of mapConcurrent(closure.blobs.values(), CONCURRENCY, async ({ digest }) =>
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
  from: Castore,
  to: Castore,
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
