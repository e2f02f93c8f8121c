/**
 * The embedded PathInfoService: an LMDB environment of its own (by default
 * `nix-path-info.mdb` beside the disk castore's `index.mdb`), one record per
 * store path, keyed by hash part, valued by the JSON of `pathInfoToJson`.
 * `putMany` commits its records in one transaction and waits until it is
 * flushed to disk, after `beforeCommit` (e.g. syncing the blob files the
 * records point at) has run.
 */
import { type Database, open, type RootDatabase } from 'lmdb';
import { parseAbsoluteStorePath } from '../nix/index.js';
import { type PathInfo, pathInfoFromJson, pathInfoToJson } from './path-info.js';
import type { PathInfoService } from './path-info-service.js';

export interface LmdbPathInfoServiceOptions {
  /** Runs before each commit, e.g. to make the castore contents the records point at durable. */
  beforeCommit?: () => Promise<void>;
}

/** Upper bound the index may grow to (sparse; costs nothing until used). */
export const PATH_INFO_MAP_SIZE = 16 * 1024 ** 3;

export class LmdbPathInfoService implements PathInfoService {
  readonly #env: RootDatabase;
  readonly #db: Database<string, string>;
  readonly #options: LmdbPathInfoServiceOptions;

  private constructor(env: RootDatabase, options: LmdbPathInfoServiceOptions) {
    this.#env = env;
    this.#db = env.openDB<string, string>({ name: 'path-info', keyEncoding: 'ordered-binary', encoding: 'string' });
    this.#options = options;
  }

  /** Opens (creating when needed) the environment at `path` (a file; LMDB adds `path-lock` beside it). */
  static open(path: string, options: LmdbPathInfoServiceOptions = {}): LmdbPathInfoService {
    return new LmdbPathInfoService(open({ path, compression: false, mapSize: PATH_INFO_MAP_SIZE }), options);
  }

  async get(storePath: string): Promise<PathInfo | undefined> {
    const path = parseAbsoluteStorePath(storePath);
    const text = this.#db.get(path.hashPart);
    if (text === undefined) return undefined;
    const info = pathInfoFromJson(JSON.parse(text));
    return info.storePath.equals(path) ? info : undefined;
  }

  async putMany(infos: readonly PathInfo[]): Promise<void> {
    if (infos.length === 0) return;
    const records = infos.map((info) => [info.storePath.hashPart, JSON.stringify(pathInfoToJson(info))] as const);
    await this.#options.beforeCommit?.();
    await this.#db.transaction(() => {
      for (const [key, value] of records) void this.#db.put(key, value);
    });
    await this.#db.flushed;
  }

  async *list(): AsyncIterable<PathInfo> {
    for (const { value } of this.#db.getRange({})) yield pathInfoFromJson(JSON.parse(value));
  }

  async close(): Promise<void> {
    await this.#env.close();
  }
}
