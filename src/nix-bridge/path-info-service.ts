/**
 * The PathInfoService contract: Kiln's index of the store paths it holds
 * (store path → castore node, NAR hash and size, references, deriver, ca),
 * the counterpart of Nix's database and of Snix's PathInfoService.
 *
 * Guarantees every backend gives:
 * - `putMany` is atomic and durable: once it resolves, every record is
 *   stored and survives a crash; if it rejects (or the process dies), none
 *   of them is visible. A reader never sees a partial record.
 * - Records are keyed by the store path's hash part; `get` returns a
 *   record only for the exact path asked for.
 * - The caller stores a path's contents in the castore before its record
 *   (`putMany` never checks the castore).
 */
import { parseAbsoluteStorePath } from '../nix/index.js';
import type { PathInfo } from './path-info.js';

export interface PathInfoService {
  /** The record of an absolute store path, or undefined. */
  get(storePath: string): Promise<PathInfo | undefined>;
  /** Stores all records or none (see above). */
  putMany(infos: readonly PathInfo[]): Promise<void>;
  /** Every record, in hash-part order. */
  list(): AsyncIterable<PathInfo>;
  close(): Promise<void>;
}

/** In-process records; gone at exit. */
export class MemoryPathInfoService implements PathInfoService {
  readonly #records = new Map<string, PathInfo>();

  async get(storePath: string): Promise<PathInfo | undefined> {
    const path = parseAbsoluteStorePath(storePath);
    const info = this.#records.get(path.hashPart);
    return info?.storePath.equals(path) ? info : undefined;
  }

  async putMany(infos: readonly PathInfo[]): Promise<void> {
    for (const info of infos) this.#records.set(info.storePath.hashPart, info);
  }

  async *list(): AsyncIterable<PathInfo> {
    for (const key of [...this.#records.keys()].sort()) yield this.#records.get(key) as PathInfo;
  }

  async close(): Promise<void> {}
}
