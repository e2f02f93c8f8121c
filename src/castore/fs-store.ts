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

export async function openFsCastore(root: string, options: FsBlobServiceOptions = {}): Promise<FsCastore> {
  const blobService = await FsBlobService.open(root, options);
  const env = open({ path: join(root, 'index.mdb'), compression: false, mapSize: FS_INDEX_MAP_SIZE });
  const directories = env.openDB<Buffer, Buffer>({ name: 'directories', keyEncoding: 'binary', encoding: 'binary' });
  const fileDigests = env.openDB<Buffer, string>({ name: 'file-digests', keyEncoding: 'ordered-binary', encoding: 'binary' });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await blobService.close();
    await env.close();
  };
  const directoryService = new FsDirectoryService(directories, { beforeCommit: () => blobService.sync(), onClose: close });
  return { root, blobService, directoryService, fileDigestCache: new LmdbFileDigestCache(fileDigests), close };
}

class LmdbFileDigestCache implements FileDigestCache {
  readonly #db: Database<Buffer, string>;
  constructor(db: Database<Buffer, string>) {
    this.#db = db;
  }
  lookup(identity: FileIdentity): Uint8Array | undefined {
    const value = this.#db.getBinary(fileIdentityKey(identity));
    return value && value.byteLength === 32 ? new Uint8Array(value) : undefined;
  }
  record(identity: FileIdentity, digest: Uint8Array): void {
    void this.#db.put(fileIdentityKey(identity), Buffer.from(digest));
  }
}
