/**
 * The input closure of a BuildRequest: every directory and blob its inputs
 * reach. A builder checks that its store holds all of it before building
 * (`missingInputs`); a client sends a remote builder what it lacks
 * (`uploadInputClosure`), asking first and sending only the missing parts.
 */
import { B3Digest, type BlobService, type Directory, type DirectoryService, type Node } from '../castore/index.js';
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

export interface UploadSummary {
  blobsSent: number;
  bytesSent: number;
  directoriesSent: number;
}

/**
 * Sends `to` what it lacks of the request's input closure, read from
 * `from`: blobs first (each checked with `has`), then each input's
 * directory closure, leaves first, when `to` lacks its root.
 */
export async function uploadInputClosure(
  request: Pick<BuildRequest, 'inputs'>,
  from: Castore,
  to: Castore,
  options: AbortOptions = {},
): Promise<UploadSummary> {
  const summary: UploadSummary = { blobsSent: 0, bytesSent: 0, directoriesSent: 0 };
  const roots = request.inputs.map((i) => i.node);
  const missingRoots: Node[] = [];
  for (const node of roots) {
    if (node.type !== 'directory') continue;
    if (!(await to.directoryService.get(node.digest, options))) missingRoots.push(node);
  }
  const closure = await collectClosure([...missingRoots, ...roots.filter((n) => n.type === 'file')], from.directoryService, options);
  if (closure.missingDirectories.length > 0) {
    const missing = closure.missingDirectories.map((hex) => B3Digest.fromHex(hex).toString());
    throw new BuildError('INPUT_MISSING', `the local store lacks input directories ${missing.join(', ')}`, { details: { missing } });
  }
  const sends = mapConcurrent(closure.blobs.values(), CONCURRENCY, async ({ digest, size }) => {
    if (await to.blobService.has(digest, options)) return;
    const data = await from.blobService.read(digest, options);
    if (!data)
      throw new BuildError('INPUT_MISSING', `the local store lacks input blob ${digest}`, { details: { missing: [digest.toString()] } });
    await to.blobService.put(data, { ...options, expectedDigest: digest });
    summary.blobsSent++;
    summary.bytesSent += size;
  });
  for await (const _ of sends);
  // Each missing root's closure, leaves first (getRecursive gives it root first, breadth-first).
  for (const root of missingRoots) {
    if (root.type !== 'directory') continue;
    const closureOfRoot: Directory[] = [];
    for await (const directory of from.directoryService.getRecursive(root.digest, options)) closureOfRoot.push(directory);
    await to.directoryService.putMany(closureOfRoot.reverse(), options);
    summary.directoriesSent += closureOfRoot.length;
  }
  return summary;
}
