/**
 * The embedded default castore on disk, under one root directory:
 * `blobs/` and `tmp/` (FsBlobService) and `index.mdb` (LMDB: the
 * `directories` database of FsDirectoryService and the `file-digests`
 * memo that makes re-imports cheap). Both services share the environment.
 */
import { join } from 'node:path';
import { type Database, open } from 'lmdb';
import { FsBlobService, type FsBlobServiceOptions } from './blob-service/fs.js';
import { FsDirectoryService } from './directory-service/fs.js';
import { type FileDigestCache, type FileIdentity, fileIdentityKey } from './import/file-digest-cache.js';

export interface FsCastore {
  readonly root: string;
  readonly blobService: FsBlobService;
  readonly directoryService: FsDirectoryService;
  readonly fileDigestCache: FileDigestCache;
  close(): Promise<void>;
}

/** LMDB map size: the upper bound the index may grow to (sparse; costs nothing until used). */
export const FS_INDEX_MAP_SIZE = 64 * 1024 ** 3;

/**
 * File-digest records are written this many to a transaction, and at each
 * directory commit and at close: every LMDB commit syncs the index to disk,
 * and one put per file meant a commit (two fdatasyncs) every few files.
 */
export const FILE_DIGEST_WRITE_BATCH = 4096;

export async function openFsCastore(root: string, options: FsBlobServiceOptions = {}): Promise<FsCastore> {
  const blobService = await FsBlobService.open(root, options);
  const env = open({ path: join(root, 'index.mdb'), compression: false, mapSize: FS_INDEX_MAP_SIZE });
  const directories = env.openDB<Buffer, Buffer>({ name: 'directories', keyEncoding: 'binary', encoding: 'binary' });
  const fileDigests = env.openDB<Buffer, string>({ name: 'file-digests', keyEncoding: 'ordered-binary', encoding: 'binary' });
  const fileDigestCache = new LmdbFileDigestCache(fileDigests);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await fileDigestCache.flush();
    await blobService.close();
    await env.close();
  };
  const beforeCommit = async () => {
    void fileDigestCache.flush(); // joins the commit's write batch; nothing waits for it
    await blobService.sync();
  };
  const directoryService = new FsDirectoryService(directories, { beforeCommit, onClose: close });
  return { root, blobService, directoryService, fileDigestCache, close };
}

class LmdbFileDigestCache implements FileDigestCache {
  readonly #db: Database<Buffer, string>;
  #pending = new Map<string, Buffer>();
  #lastWrite: Promise<void> = Promise.resolve();
  constructor(db: Database<Buffer, string>) {
    this.#db = db;
  }
  lookup(identity: FileIdentity): Uint8Array | undefined {
    const key = fileIdentityKey(identity);
    const value = this.#pending.get(key) ?? this.#db.getBinary(key);
    return value && value.byteLength === 32 ? new Uint8Array(value) : undefined;
  }
  record(identity: FileIdentity, digest: Uint8Array): void {
    this.#pending.set(fileIdentityKey(identity), Buffer.from(digest));
    if (this.#pending.size >= FILE_DIGEST_WRITE_BATCH) void this.flush();
  }
  /** Writes the pending records in one transaction; resolves once every record so far is committed. */
  flush(): Promise<void> {
    if (this.#pending.size > 0) {
      const batch = this.#pending;
      this.#pending = new Map();
      const db = this.#db;
      const written = db.transaction(() => {
        for (const [key, value] of batch) void db.put(key, value);
      });
      // A memo: losing records costs re-hashing later, never a wrong answer.
      this.#lastWrite = Promise.all([this.#lastWrite, written]).then(
        () => {},
        () => {},
      );
    }
    return this.#lastWrite;
  }
}
