/**
 * The DirectoryService contract: validated castore Directories keyed by the
 * BLAKE3 of their canonical encoding, read and written as closures. Backends
 * live beside this file (memory, fs) and in ../grpc.
 *
 * Behaviour every backend guarantees (checked by the conformance suite):
 * - `get` resolves to the directory or `undefined` when it is absent.
 * - `getRecursive` yields the closure of `root`: the root first, then
 *   breadth-first, each directory exactly once. A missing root yields
 *   nothing; a child missing part-way is an error (`NOT_FOUND`).
 * - `putMany` takes a closure leaves first (every child before the directory
 *   that references it; a child may also already be stored). The last
 *   directory is the root. The closure is validated as a whole before
 *   anything is stored: a dangling reference, a child reference whose `size`
 *   differs from the child's own size, or a directory not reachable from the
 *   root rejects it with `INVALID_DIRECTORY` and stores nothing. Duplicates in
 *   the stream are ignored; storing what is already stored is a no-op.
 * - Aborting the signal rejects with `signal.reason`, unwrapped, and a
 *   `putMany` aborted before it resolves stores nothing.
 * - Every method may be called concurrently.
 */
import type { AbortOptions } from '../../common/abort.js';
import type { B3Digest } from '../b3-digest.js';
import type { Directory } from '../directory.js';

export interface DirectoryService {
  get(digest: B3Digest, options?: AbortOptions): Promise<Directory | undefined>;
  getRecursive(root: B3Digest, options?: AbortOptions): AsyncIterable<Directory>;
  /** Validates and stores a closure given leaves first; resolves to the root's digest. */
  putMany(directories: AsyncIterable<Directory> | Iterable<Directory>, options?: AbortOptions): Promise<B3Digest>;
  /** Releases handles and connections; the service is unusable afterwards. */
  close(): Promise<void>;
}
