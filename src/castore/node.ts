/**
 * The castore Node: what a name in a directory points at. Nodes carry no
 * names; a Directory maps names to nodes.
 */
import { displayBytes, utf8 } from '../common/encoding.js';
import type { B3Digest } from './b3-digest.js';
import { CastoreError } from './errors.js';

export const MAX_SYMLINK_TARGET_LENGTH = 4095;

/** A child directory by the digest of its canonical encoding, with its `size` (see `Directory.size`). */
export interface DirectoryNode {
  readonly type: 'directory';
  readonly digest: B3Digest;
  readonly size: number;
}

/** A regular file by the digest of its contents. */
export interface FileNode {
  readonly type: 'file';
  readonly digest: B3Digest;
  /** Content length in bytes. */
  readonly size: number;
  /** The owner-execute bit. */
  readonly executable: boolean;
}

/** A symbolic link; `target` is raw bytes, validated by `parseSymlinkTarget`. */
export interface SymlinkNode {
  readonly type: 'symlink';
  readonly target: Uint8Array;
}

export type Node = DirectoryNode | FileNode | SymlinkNode;

/** Not empty, at most 4095 bytes, no NUL; absolute targets and `..` are fine. */
export function parseSymlinkTarget(target: Uint8Array | string): Uint8Array {
  const bytes = typeof target === 'string' ? utf8(target) : target;
  let problem: string | undefined;
  if (bytes.byteLength === 0) problem = 'empty';
  else if (bytes.byteLength > MAX_SYMLINK_TARGET_LENGTH) problem = `longer than ${MAX_SYMLINK_TARGET_LENGTH} bytes`;
  else if (bytes.includes(0)) problem = 'contains NUL';
  if (problem) {
    throw new CastoreError('INVALID_NODE', `invalid symlink target ${JSON.stringify(displayBytes(bytes))}: ${problem}`);
  }
  return bytes;
}

/** Sizes travel as uint64; Kiln keeps them as exact JS numbers. */
export function checkSize(size: number | bigint, what: string): number {
  const value = typeof size === 'bigint' ? Number(size) : size;
  if (!Number.isSafeInteger(value) || value < 0 || (typeof size === 'bigint' && BigInt(value) !== size)) {
    throw new CastoreError('INVALID_NODE', `invalid size ${size} for ${what}: must be an integer in [0, 2^53)`);
  }
  return value;
}

export function directoryNode(digest: B3Digest, size: number): DirectoryNode {
  return { type: 'directory', digest, size: checkSize(size, 'directory') };
}

export function fileNode(digest: B3Digest, size: number, executable = false): FileNode {
  return { type: 'file', digest, size: checkSize(size, 'file'), executable };
}

export function symlinkNode(target: Uint8Array | string): SymlinkNode {
  return { type: 'symlink', target: parseSymlinkTarget(target) };
}

export function nodesEqual(a: Node, b: Node): boolean {
  if (a.type !== b.type) return false;
  switch (a.type) {
    case 'directory':
      return a.digest.equals((b as DirectoryNode).digest) && a.size === (b as DirectoryNode).size;
    case 'file':
      return a.digest.equals((b as FileNode).digest) && a.size === (b as FileNode).size && a.executable === (b as FileNode).executable;
    case 'symlink':
      return Buffer.compare(a.target, (b as SymlinkNode).target) === 0;
  }
}
