/** A DirectoryService that keeps every directory in process memory. */
import type { AbortOptions } from '../../common/abort.js';
import type { B3Digest } from '../b3-digest.js';
import type { Directory } from '../directory.js';
import { validateClosure } from './closure-validator.js';
import type { DirectoryService } from './directory-service.js';
import { walkClosure } from './traverse.js';

export class MemoryDirectoryService implements DirectoryService {
  readonly #directories = new Map<string, Directory>();

  async get(digest: B3Digest, options: AbortOptions = {}): Promise<Directory | undefined> {
    options.signal?.throwIfAborted();
    return this.#directories.get(digest.toHex());
  }

  getRecursive(root: B3Digest, options: AbortOptions = {}): AsyncIterable<Directory> {
    return walkClosure(root, (digest) => this.get(digest), options);
  }

  async putMany(directories: AsyncIterable<Directory> | Iterable<Directory>, options: AbortOptions = {}): Promise<B3Digest> {
    const closure = await validateClosure(directories, async (digest) => this.#directories.get(digest.toHex())?.size, options);
    options.signal?.throwIfAborted();
    for (const directory of closure.directories) this.#directories.set(directory.digest.toHex(), directory);
    return closure.root.digest;
  }

  async close(): Promise<void> {}
}
