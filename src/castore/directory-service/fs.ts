/**
 * The embedded on-disk DirectoryService: directories in an LMDB database,
 * keyed by digest, valued by their canonical encoding. A closure is committed
 * in one LMDB transaction (copy-on-write B+tree, durable at commit), so a
 * killed writer leaves either all of it or none of it. Reads re-hash each
 * directory and fail with INTEGRITY_MISMATCH if the bytes no longer match.
 */
import type { Database } from 'lmdb';
import type { AbortOptions } from '../../common/abort.js';
import { B3Digest } from '../b3-digest.js';
import type { Directory } from '../directory.js';
import { CastoreError } from '../errors.js';
import { decodeDirectory } from '../proto-convert.js';
import { validateClosure } from './closure-validator.js';
import type { DirectoryService } from './directory-service.js';
import { walkClosure } from './traverse.js';

export interface FsDirectoryServiceOptions {
  /** Runs before each commit, e.g. to make the blobs a closure refers to durable first. */
  beforeCommit?: () => Promise<void>;
  /** Called by `close()`, e.g. to close the shared LMDB environment. */
  onClose?: () => Promise<void>;
}

export class FsDirectoryService implements DirectoryService {
  readonly #db: Database<Buffer, Buffer>;
  readonly #options: FsDirectoryServiceOptions;

  /** `db` is an LMDB database opened with binary keys and values. */
  constructor(db: Database<Buffer, Buffer>, options: FsDirectoryServiceOptions = {}) {
    this.#db = db;
    this.#options = options;
  }

  async get(digest: B3Digest, options: AbortOptions = {}): Promise<Directory | undefined> {
    options.signal?.throwIfAborted();
    const bytes = this.#db.getBinary(Buffer.from(digest.bytes));
    if (bytes === undefined) return undefined;
    return decodeStored(digest, bytes);
  }

  getRecursive(root: B3Digest, options: AbortOptions = {}): AsyncIterable<Directory> {
    return walkClosure(root, (digest) => this.get(digest), options);
  }

  async putMany(directories: AsyncIterable<Directory> | Iterable<Directory>, options: AbortOptions = {}): Promise<B3Digest> {
    const { signal } = options;
    const closure = await validateClosure(directories, async (digest) => (await this.get(digest))?.size, options);
    signal?.throwIfAborted();
    const fresh = closure.directories.filter((d) => this.#db.getBinary(Buffer.from(d.digest.bytes)) === undefined);
    if (fresh.length > 0) {
      await this.#options.beforeCommit?.();
      signal?.throwIfAborted();
      await this.#db.transaction(() => {
        for (const directory of fresh) this.#db.put(Buffer.from(directory.digest.bytes), Buffer.from(directory.encode()));
      });
    }
    return closure.root.digest;
  }

  /** Every stored entry as (key digest, stored bytes), for verification. */
  *listRaw(): Generator<{ digest: B3Digest; bytes: Uint8Array }> {
    for (const { key, value } of this.#db.getRange({})) {
      yield { digest: B3Digest.fromBytes(new Uint8Array(key)), bytes: value };
    }
  }

  async close(): Promise<void> {
    await this.#options.onClose?.();
  }
}

/** Decodes stored bytes and checks they still hash to their key. */
export function decodeStored(digest: B3Digest, bytes: Uint8Array): Directory {
  let directory: Directory;
  try {
    directory = decodeDirectory(bytes);
  } catch (error) {
    throw new CastoreError('INTEGRITY_MISMATCH', `directory ${digest} is corrupt: ${(error as Error).message}`, {
      cause: error,
      details: { digest: digest.toString() },
    });
  }
  if (!directory.digest.equals(digest)) {
    throw new CastoreError('INTEGRITY_MISMATCH', `directory ${digest} is corrupt: its bytes hash to ${directory.digest}`, {
      details: { digest: digest.toString(), actual: directory.digest.toString() },
    });
  }
  return directory;
}
