/**
 * `importPath`: the one-call filesystem import — walk a path, store its file
 * contents and directories, optionally scan for references — returning the
 * root node. Built from walkFilesystem + ingestEntries; depends on castore
 * contracts only.
 *
 * Performance notes (2-CPU VM, warm page cache; blob service that only
 * hashes, so the store's own cost is excluded): a tree of 20,000 files of
 * 1–64 KiB (678 MB) imports in about 1 s (~20,000 files/s, ~650 MB/s); with a
 * warm FileDigestCache a re-import costs one lstat and one `has` per file
 * (0.4 s with MemoryBlobService, against 2.2 s for its first import); a
 * 1 GiB file imports at `b3sum --num-threads 1` speed (0.4 s) because the
 * next chunk is read while the current one is hashed, and scanning for 100
 * needles adds about 0.25 s per GiB. Memory stays bounded by `concurrency` ×
 * 2 MiB (whole small files, or one chunk in flight plus one read ahead per
 * large file), whatever the file sizes.
 *
 * Into the embedded disk store (openFsCastore), whose FsBlobService takes
 * small files by path and stores them on two worker threads, the same tree
 * imports in about 2.0 s (3.4 s when the main thread stored every file) and
 * re-imports in about 0.36 s, store opening and closing included. The first
 * import is bound by the kernel copying 678 MB into fresh page-cache pages
 * (most of its ~3 s of CPU, spread over both cores); on this VM that cost
 * swings by 2–3× with host memory pressure, for `nix-store --add` as well.
 */
import type { AbortOptions } from '../../common/abort.js';
import type { BlobService } from '../blob-service/blob-service.js';
import type { DirectoryService } from '../directory-service/directory-service.js';
import type { Node } from '../node.js';
import { ReferencePattern, ReferenceScanner } from '../refscan.js';
import type { FileDigestCache } from './file-digest-cache.js';
import { ingestEntries } from './ingest-entries.js';
import { type ImportProgress, rootName, walkFilesystem } from './walk-filesystem.js';

export type { ImportProgress } from './walk-filesystem.js';

export interface ImportPathOptions extends AbortOptions {
  /** Receives file contents; `has` confirms digest-cache hits. */
  blobService: Pick<BlobService, 'put' | 'has'>;
  /** Receives the directories, as one closure once the walk has finished. */
  directoryService: Pick<DirectoryService, 'putMany'>;
  /**
   * Byte strings to look for in file contents and symlink targets (not in
   * names); see `ImportPathResult.needlesFound`. Every occurrence counts,
   * overlapping ones included (Nix semantics). A `ReferencePattern` may be
   * passed to reuse compiled tables across imports.
   */
  needles?: readonly Uint8Array[] | ReferencePattern;
  /**
   * Lets unchanged files skip reading and hashing (see `WalkFilesystemOptions`).
   * With `needles`, hits still skip hashing and storing, but the bytes are
   * read again to be scanned.
   */
  fileDigestCache?: FileDigestCache;
  /** Files processed in parallel; default `DEFAULT_FILE_IMPORT_CONCURRENCY` (32). */
  concurrency?: number;
  /** Called as files complete, with cumulative counts. */
  onProgress?: (progress: ImportProgress) => void;
}

export interface ImportPathResult {
  /** The root: a directory, a file, or a symlink (a symlink at `path` is not followed). */
  readonly node: Node;
  /** The basename of `path` as raw bytes (the name the root would have in a parent directory). */
  readonly name: Uint8Array;
  /** With `needles`: one boolean per needle, in needle order, true when it occurs. */
  readonly needlesFound?: readonly boolean[];
}

/** Imports the file, symlink or directory tree at `path`. */
export async function importPath(path: string | Buffer, options: ImportPathOptions): Promise<ImportPathResult> {
  const scanner = options.needles
    ? new ReferenceScanner(options.needles instanceof ReferencePattern ? options.needles : new ReferencePattern(options.needles))
    : undefined;
  const entries = walkFilesystem(path, {
    blobService: options.blobService,
    scanner,
    fileDigestCache: options.fileDigestCache,
    concurrency: options.concurrency,
    onProgress: options.onProgress,
    signal: options.signal,
  });
  const node = await ingestEntries(entries, { directoryService: options.directoryService, signal: options.signal });
  const name = rootName(path);
  return scanner ? { node, name, needlesFound: scanner.matches() } : { node, name };
}
