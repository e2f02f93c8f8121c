/**
 * The digests a statement gives an artifact (a castore node: an output, an
 * input): `blake3`, the hex of its castore digest (directory digest, or blob
 * digest for a file; a symlink has none), and `sha256`, the hex SHA-256 of
 * its NAR serialisation. Computed from the castore (streaming, through the
 * Nix bridge's castore → NAR source) or from a path on disk (the same
 * digests without storing anything). The annotations carry the node's kind,
 * size and executable bit, so a verifier can rebuild the node from its
 * digest.
 */

import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import {
  B3Digest,
  type BlobPutResult,
  type BlobService,
  type Directory,
  type DirectoryService,
  directoryNode,
  fileNode,
  importPath,
  type Node,
  symlinkNode,
} from '../castore/index.js';
import type { AbortOptions } from '../common/abort.js';
import { type ByteSource, toChunks } from '../common/async-iterable.js';
import { createBlake3 } from '../common/blake3.js';
import { compareBytes, toHex } from '../common/encoding.js';
import { hashNar, type NarSourceNode } from '../nix/index.js';
import { type CastoreReader, narDigestOfNode } from '../nix-bridge/index.js';
import { ProvenanceError } from './errors.js';

/** What reading and checking artifacts in a castore needs. */
export interface StoreReader extends CastoreReader {
  readonly blobService: Pick<BlobService, 'read' | 'has'>;
  readonly directoryService: Pick<DirectoryService, 'get' | 'getRecursive'>;
}

/** An in-toto DigestSet: algorithm name → lowercase hex. */
export type DigestSet = Readonly<Record<string, string>>;

/** What `kiln_node` annotations say about a castore node. */
export type NodeDescription =
  | { readonly type: 'directory'; readonly size: number }
  | { readonly type: 'file'; readonly size: number; readonly executable: boolean }
  | { readonly type: 'symlink'; readonly target: string };

export function describeNode(node: Node): NodeDescription {
  switch (node.type) {
    case 'directory':
      return { type: 'directory', size: node.size };
    case 'file':
      return { type: 'file', size: node.size, executable: node.executable };
    case 'symlink':
      return { type: 'symlink', target: Buffer.from(node.target).toString('base64') };
  }
}

/** The node a digest set and its description name, or undefined when they do not fit together. */
export function nodeFromDescription(digests: DigestSet, description: unknown): Node | undefined {
  if (typeof description !== 'object' || description === null) return undefined;
  const d = description as Record<string, unknown>;
  try {
    if (d.type === 'symlink' && typeof d.target === 'string') return symlinkNode(Buffer.from(d.target, 'base64'));
    const hex = digests.blake3;
    if (typeof hex !== 'string' || typeof d.size !== 'number') return undefined;
    if (d.type === 'directory') return directoryNode(B3Digest.fromHex(hex), d.size);
    if (d.type === 'file') return fileNode(B3Digest.fromHex(hex), d.size, d.executable === true);
  } catch {
    return undefined;
  }
  return undefined;
}

/** The `blake3` entry of a node's digest set (none for a symlink). */
export function castoreDigestOf(node: Node): { blake3: string } | Record<string, never> {
  return node.type === 'symlink' ? {} : { blake3: node.digest.toHex() };
}

/** `blake3` and `sha256` (NAR) of a node in the castore; reads every blob under it. */
export async function nodeDigests(node: Node, castore: CastoreReader, options: AbortOptions = {}): Promise<DigestSet> {
  const { narHash } = await narDigestOfNode(node, castore, options);
  return { ...castoreDigestOf(node), sha256: toHex(narHash.digest) };
}

/** A path on disk as a NAR source: entries sorted by name bytes, files opened when reached. */
export async function diskNarSource(path: string | Buffer): Promise<NarSourceNode> {
  const stat = await lstat(path);
  if (stat.isSymbolicLink()) return { type: 'symlink', target: new Uint8Array(await readlink(path, { encoding: 'buffer' })) };
  if (stat.isFile()) {
    return {
      type: 'regular',
      executable: (stat.mode & 0o100) !== 0,
      size: stat.size,
      contents: () => createReadStream(path) as AsyncIterable<Uint8Array>,
    };
  }
  if (stat.isDirectory()) {
    return {
      type: 'directory',
      entries: (async function* () {
        const names = (await readdir(path, { encoding: 'buffer' })).sort(compareBytes);
        const prefix = Buffer.from(typeof path === 'string' ? `${path.replace(/\/+$/, '')}/` : Buffer.concat([path, Buffer.from('/')]));
        for (const name of names) yield { name: new Uint8Array(name), node: await diskNarSource(Buffer.concat([prefix, name])) };
      })(),
    };
  }
  throw new ProvenanceError('SUBJECT_MISMATCH', `${path.toString()} is neither a file, a directory nor a symlink`);
}

/** Only hashes: stores nothing. Lets `importPath` compute a tree's castore digest. */
const hashingSink = {
  async has(): Promise<boolean> {
    return false;
  },
  async put(source: ByteSource, options: AbortOptions = {}): Promise<BlobPutResult> {
    const hasher = createBlake3();
    let size = 0;
    for await (const chunk of toChunks(source)) {
      options.signal?.throwIfAborted();
      hasher.update(chunk);
      size += chunk.byteLength;
    }
    return { digest: B3Digest.fromBytes(hasher.digest()), size };
  },
  async putMany(directories: AsyncIterable<Directory> | Iterable<Directory>): Promise<B3Digest> {
    let last: B3Digest | undefined;
    for await (const directory of directories) last = directory.digest;
    return last ?? B3Digest.of(new Uint8Array(0));
  },
};

/** The castore node and digest set of a path on disk (nothing is stored). */
export async function diskDigests(path: string, options: AbortOptions = {}): Promise<{ node: Node; digests: DigestSet }> {
  const { node } = await importPath(path, { blobService: hashingSink, directoryService: hashingSink, signal: options.signal });
  const { narHash } = await hashNar(await diskNarSource(path), options);
  return { node, digests: { ...castoreDigestOf(node), sha256: toHex(narHash.digest) } };
}
