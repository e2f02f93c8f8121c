/**
 * Generic ingestion: a stream of entries (files, symlinks, directories;
 * children before their parent, the root last) becomes castore Directories
 * and a root Node. Producers are the filesystem walker, and later NAR and
 * tarball readers. Depends on castore domain types and service contracts only.
 *
 * Stream rules (reference §3.1), all checked, violations rejected with
 * `CastoreError`:
 * - every path is relative: one or more valid path components (`INVALID_NAME`
 *   otherwise), unique within its directory (`INVALID_DIRECTORY`);
 * - every entry comes before the directory entry that contains it, and every
 *   directory holding entries has its own directory entry (`INVALID_DIRECTORY`);
 * - the last entry is the root and has exactly one component, whose name is
 *   discarded; a stream that ends before a root or continues after it is
 *   rejected (`INVALID_DIRECTORY`).
 */
import type { AbortOptions } from '../../common/abort.js';
import type { ByteSource } from '../../common/async-iterable.js';
import { displayBytes } from '../../common/encoding.js';
import type { B3Digest } from '../b3-digest.js';
import type { BlobService } from '../blob-service/blob-service.js';
import { Directory, type DirectoryEntry } from '../directory.js';
import type { DirectoryService } from '../directory-service/directory-service.js';
import { CastoreError } from '../errors.js';
import { directoryNode, fileNode, type Node, symlinkNode } from '../node.js';
import { type PathComponent, parsePathComponent } from '../path-component.js';

/** A path relative to the parent of the root: its components, raw bytes, outermost first. */
export type IngestionPath = readonly Uint8Array[];

/** A regular file whose contents are already stored (or will be by the time the stream ends). */
export interface StoredFileIngestionEntry {
  readonly type: 'file';
  readonly path: IngestionPath;
  /** BLAKE3 of the contents. */
  readonly digest: B3Digest;
  /** Content length in bytes. */
  readonly size: number;
  /** The owner-execute bit. */
  readonly executable: boolean;
}

/**
 * A regular file given by its bytes: `ingestEntries` puts them into the blob
 * service (in stream order, one at a time; producers that want parallel
 * uploads put the bytes themselves and yield a stored entry instead).
 */
export interface ContentFileIngestionEntry {
  readonly type: 'file';
  readonly path: IngestionPath;
  readonly contents: ByteSource;
  /** When given, the number of bytes `contents` must yield (`INVALID_NODE` otherwise). */
  readonly size?: number;
  /** The owner-execute bit. */
  readonly executable: boolean;
}

export interface SymlinkIngestionEntry {
  readonly type: 'symlink';
  readonly path: IngestionPath;
  /** Raw target bytes: not empty, at most 4095 bytes, no NUL. */
  readonly target: Uint8Array;
}

/** A directory; it must come after everything inside it. */
export interface DirectoryIngestionEntry {
  readonly type: 'directory';
  readonly path: IngestionPath;
}

export type IngestionEntry = StoredFileIngestionEntry | ContentFileIngestionEntry | SymlinkIngestionEntry | DirectoryIngestionEntry;

export interface IngestEntriesOptions extends AbortOptions {
  /** Where the directories go; they are put as one closure, leaves first, once the root has arrived. */
  directoryService: Pick<DirectoryService, 'putMany'>;
  /** Needed only when the stream contains `ContentFileIngestionEntry` items. */
  blobService?: Pick<BlobService, 'put'>;
}

/**
 * Consumes `entries` and resolves to the root node (a file, symlink or
 * directory). All directories are handed to `putMany` in a single call after
 * the whole stream validated, so a failing stream stores no directory (blobs
 * already put stay; they are content-addressed and harmless).
 */
export async function ingestEntries(
  entries: AsyncIterable<IngestionEntry> | Iterable<IngestionEntry>,
  options: IngestEntriesOptions,
): Promise<Node> {
  const { signal } = options;
  signal?.throwIfAborted();
  // Children collected so far, per directory path key (see `keyOf`).
  const open = new Map<string, DirectoryEntry[]>();
  const closed = new Set<string>();
  const closure: Directory[] = [];
  const inClosure = new Set<string>();
  let root: Node | undefined;

  // Siblings arrive together, usually sharing the very component objects of
  // their parent path; remembering the last parent skips re-validating and
  // re-keying it for each of them.
  let lastParent: readonly Uint8Array[] = [];
  let lastParentKey = '';

  for await (const entry of entries) {
    signal?.throwIfAborted();
    const names = entry.path;
    if (names.length === 0) throw streamError('ingestion entry with an empty path');
    let parentKey = lastParentKey;
    if (!sameParent(lastParent, names)) {
      const parent = names.slice(0, -1);
      for (const component of parent) checkComponent(component, names);
      parentKey = keyOf(parent);
      lastParent = parent;
      lastParentKey = parentKey;
    }
    const name = checkComponent(names[names.length - 1] as Uint8Array, names);
    if (root !== undefined) throw streamError(`entry ${showPath(names)} comes after the root`);
    let node: Node;
    if (entry.type === 'directory') {
      const key = names.length === 1 ? latin1(name) : `${parentKey}/${latin1(name)}`;
      if (closed.has(key)) throw streamError(`directory ${showPath(names)} appears twice`);
      const directory = buildDirectory(open.get(key) ?? [], names);
      open.delete(key);
      closed.add(key);
      const digestKey = directory.digest.toHex();
      if (!inClosure.has(digestKey)) {
        inClosure.add(digestKey);
        closure.push(directory);
      }
      node = directoryNode(directory.digest, directory.size);
    } else {
      node = await leafNode(entry, names, options);
    }
    if (names.length === 1) {
      root = node;
      continue;
    }
    if (closed.has(parentKey)) throw streamError(`entry ${showPath(names)} comes after its parent directory`);
    const siblings = open.get(parentKey);
    const child = { name, node };
    if (siblings) siblings.push(child);
    else open.set(parentKey, [child]);
  }

  if (root === undefined) throw streamError('ingestion stream ended before the root entry');
  const orphan = open.keys().next();
  if (!orphan.done) throw streamError(`entries inside ${JSON.stringify(displayKey(orphan.value))} have no directory entry under the root`);
  if (root.type === 'directory') await options.directoryService.putMany(closure, { signal });
  return root;
}

async function leafNode(
  entry: Exclude<IngestionEntry, DirectoryIngestionEntry>,
  names: IngestionPath,
  options: IngestEntriesOptions,
): Promise<Node> {
  try {
    if (entry.type === 'symlink') return symlinkNode(entry.target);
    if ('digest' in entry) return fileNode(entry.digest, entry.size, entry.executable);
    if (!options.blobService) throw new CastoreError('INVALID_NODE', 'a blob service is needed for file entries given by contents');
    const { digest, size } = await options.blobService.put(entry.contents, { signal: options.signal });
    if (entry.size !== undefined && entry.size !== size) {
      throw new CastoreError('INVALID_NODE', `expected ${entry.size} bytes, read ${size}`, {
        details: { expected: entry.size, actual: size },
      });
    }
    return fileNode(digest, size, entry.executable);
  } catch (error) {
    throw withPath(error, names);
  }
}

function buildDirectory(children: DirectoryEntry[], names: IngestionPath): Directory {
  try {
    return Directory.fromEntries(children);
  } catch (error) {
    throw withPath(error, names);
  }
}

/** True when `names` has exactly the components of `parent` (the same objects) plus one. */
function sameParent(parent: readonly Uint8Array[], names: readonly Uint8Array[]): boolean {
  if (names.length !== parent.length + 1 || names.length === 1) return false;
  for (let i = 0; i < parent.length; i++) if (parent[i] !== names[i]) return false;
  return true;
}

function checkComponent(component: Uint8Array, names: readonly Uint8Array[]): PathComponent {
  try {
    return parsePathComponent(component);
  } catch (error) {
    throw withPath(error, names);
  }
}

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

/** Components joined by "/"; latin1 maps bytes to chars one to one and no component contains "/". */
function keyOf(names: readonly Uint8Array[]): string {
  return names.map(latin1).join('/');
}

function displayKey(key: string): string {
  return displayBytes(Buffer.from(key, 'latin1'));
}

function showPath(names: readonly Uint8Array[]): string {
  return JSON.stringify(names.map((name) => displayBytes(name)).join('/'));
}

function streamError(message: string): CastoreError {
  return new CastoreError('INVALID_DIRECTORY', message);
}

/** Prefixes a castore error with the entry's path, keeping its code; other errors pass untouched. */
function withPath(error: unknown, names: readonly Uint8Array[]): unknown {
  if (!(error instanceof CastoreError)) return error;
  return new CastoreError(error.code, `${showPath(names)}: ${error.message}`, { cause: error, details: error.details });
}
