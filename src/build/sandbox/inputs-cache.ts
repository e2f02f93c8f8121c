/**
 * Inputs materialized once per content: each input node is written under
 * `<dir>/<kind>-<digest hex>` (hardlinked from the disk store where
 * possible) and reused by every later build with the same input. Entries
 * are complete when visible (materialize renames into place).
 */
import { existsSync, statSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import {
  B3Digest,
  type BlobService,
  type DirectoryService,
  hasLocalBlobFiles,
  MATERIALIZED_FILE_MODE,
  materialize,
  type Node,
} from '../../castore/index.js';
import type { AbortOptions } from '../../common/abort.js';

export class InputsCache {
  readonly dir: string;
  readonly #blobService: Pick<BlobService, 'read'>;
  readonly #directoryService: Pick<DirectoryService, 'getRecursive'>;
  readonly #pending = new Map<string, Promise<string>>();

  constructor(dir: string, services: { blobService: Pick<BlobService, 'read'>; directoryService: Pick<DirectoryService, 'getRecursive'> }) {
    this.dir = dir;
    this.#blobService = services.blobService;
    this.#directoryService = services.directoryService;
  }

  /** The host path holding `node`, materializing it on first use. */
  async pathOf(node: Node, options: AbortOptions = {}): Promise<string> {
    const key = cacheKey(node);
    const path = join(this.dir, key);
    if (existsSync(path)) return path;
    let pending = this.#pending.get(key);
    if (!pending) {
      pending = this.#materialize(node, path, options).finally(() => this.#pending.delete(key));
      this.#pending.set(key, pending);
    }
    return pending;
  }

  /**
   * A path holding the bytes of file `node` with the mode it gets in a
   * sandbox, for the caller to hard-link from: the store's own blob file
   * when the store keeps one with that mode (read-only, not executable, the
   * node's size), sparing a materialized copy; else `pathOf`.
   */
  async linkSourceOf(node: Extract<Node, { type: 'file' }>, options: AbortOptions = {}): Promise<string> {
    const store = this.#blobService as BlobService;
    if (!node.executable && hasLocalBlobFiles(store)) {
      const blobPath = await store.localBlobPath(node.digest);
      const stat = blobPath === undefined ? undefined : statSync(blobPath, { throwIfNoEntry: false });
      if (blobPath && stat?.isFile() && stat.size === node.size && (stat.mode & 0o7777) === MATERIALIZED_FILE_MODE) return blobPath;
    }
    return this.pathOf(node, options);
  }

  async #materialize(node: Node, path: string, options: AbortOptions): Promise<string> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o711 });
    try {
      await materialize(node, path, { blobService: this.#blobService, directoryService: this.#directoryService, signal: options.signal });
    } catch (error) {
      // Another process may have materialized the same content meanwhile.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || !existsSync(path)) throw error;
    }
    return path;
  }
}

function cacheKey(node: Node): string {
  switch (node.type) {
    case 'directory':
      return `d-${node.digest.toHex()}`;
    case 'file':
      return `${node.executable ? 'x' : 'f'}-${node.digest.toHex()}`;
    case 'symlink':
      return `l-${B3Digest.of(node.target).toHex()}`;
  }
}
