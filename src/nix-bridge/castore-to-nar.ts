/**
 * Castore → NAR: a castore node as the abstract tree the NAR writer walks,
 * so a store path's NAR streams straight from the castore (directories
 * fetched as the writer reaches them, file contents read chunk by chunk,
 * never a whole file or tree in memory). `narOfNode` hashes that stream
 * and scans it for reference needles the way Nix does: over the NAR bytes,
 * so names count as well as contents and symlink targets.
 */
import { type BlobService, CastoreError, type DirectoryService, type Node, ReferenceScanner } from '../castore/index.js';
import type { AbortOptions } from '../common/abort.js';
import { createNixHasher, type HashAlgorithm, type NarSourceNode, type NixHash, writeNar } from '../nix/index.js';

/** What reading a castore tree needs. */
export interface CastoreReader {
  readonly blobService: Pick<BlobService, 'read'>;
  readonly directoryService: Pick<DirectoryService, 'get'>;
}

/** The tree under `node` as the NAR writer's source; missing objects fail with castore `NOT_FOUND` when reached. */
export function castoreNarSource(node: Node, castore: CastoreReader, options: AbortOptions = {}): NarSourceNode {
  switch (node.type) {
    case 'symlink':
      return { type: 'symlink', target: node.target };
    case 'file':
      return {
        type: 'regular',
        executable: node.executable,
        size: node.size,
        contents: async () => {
          const data = await castore.blobService.read(node.digest, options);
          if (!data) throw new CastoreError('NOT_FOUND', `blob ${node.digest} not found`, { details: { digest: node.digest.toString() } });
          return data;
        },
      };
    case 'directory':
      return {
        type: 'directory',
        entries: (async function* () {
          const directory = await castore.directoryService.get(node.digest, options);
          if (!directory) {
            throw new CastoreError('NOT_FOUND', `directory ${node.digest} not found`, { details: { digest: node.digest.toString() } });
          }
          for (const entry of directory.entries) yield { name: entry.name, node: castoreNarSource(entry.node, castore, options) };
        })(),
      };
  }
}

/** The NAR of a node streamed from the castore. */
export function narOfNode(node: Node, castore: CastoreReader, options: AbortOptions = {}): AsyncGenerator<Uint8Array> {
  return writeNar(castoreNarSource(node, castore, options), options);
}

export interface NarDigestOptions extends AbortOptions {
  /** Byte strings to look for in the NAR; `found` says which occur. */
  needles?: readonly Uint8Array[];
  /** Also hash the NAR with this algorithm (for fixed outputs hashed `r:<algo>`). */
  extraAlgo?: HashAlgorithm;
}

export interface NodeNarDigest {
  /** sha256 of the NAR. */
  readonly narHash: NixHash;
  readonly narSize: number;
  /** One flag per needle, in needle order. */
  readonly found: readonly boolean[];
  /** The NAR hashed with `extraAlgo`, when asked. */
  readonly extraHash?: NixHash;
}

/** Hashes (and scans) the NAR of `node` in one pass over the castore. */
export async function narDigestOfNode(node: Node, castore: CastoreReader, options: NarDigestOptions = {}): Promise<NodeNarDigest> {
  const sha256 = createNixHasher('sha256');
  const extra = options.extraAlgo ? createNixHasher(options.extraAlgo) : undefined;
  const needles = options.needles ?? [];
  const scanner = needles.length > 0 ? new ReferenceScanner(needles) : undefined;
  const stream = scanner?.createStream();
  let narSize = 0;
  for await (const chunk of narOfNode(node, castore, options)) {
    sha256.update(chunk);
    extra?.update(chunk);
    stream?.update(chunk);
    narSize += chunk.byteLength;
  }
  return {
    narHash: sha256.digest(),
    narSize,
    found: scanner ? scanner.matches() : [],
    ...(extra ? { extraHash: extra.digest() } : {}),
  };
}

/** Hashes a file node's contents (a flat or text content address). */
export async function hashFileNode(
  node: Extract<Node, { type: 'file' }>,
  castore: CastoreReader,
  algo: HashAlgorithm,
  options: AbortOptions = {},
): Promise<NixHash> {
  const hasher = createNixHasher(algo);
  const data = await castore.blobService.read(node.digest, options);
  if (!data) throw new CastoreError('NOT_FOUND', `blob ${node.digest} not found`, { details: { digest: node.digest.toString() } });
  for await (const chunk of data) hasher.update(chunk);
  return hasher.digest();
}
