/**
 * The BlobService contract: content-addressed byte storage keyed by the
 * BLAKE3-256 of the bytes. Backends live beside this file (memory, fs) and in
 * ../grpc; composition by URL is in ./from-url.ts.
 *
 * Behaviour every backend guarantees (checked by the conformance suite in
 * castore/testing):
 * - Absence is a value: `has` returns false and `read` resolves to
 *   `undefined` for an unknown digest. Errors mean something went wrong.
 * - `put` consumes a whole buffer or a stream of chunks, hashes while it
 *   writes, and resolves to the digest and size of all the bytes. The blob
 *   becomes visible to `has`/`read` only once it is complete: an aborted or
 *   failed put leaves nothing behind. Putting the same bytes twice is a no-op.
 * - `read` streams the bytes in order, from `offset` if given. Every read is
 *   verified: when the stored bytes do not hash to the digest, the stream
 *   fails with `CastoreError('INTEGRITY_MISMATCH')` naming the digest, at the
 *   latest after the last chunk. Breaking out of the loop early releases the
 *   underlying resource.
 * - Aborting the signal rejects with `signal.reason`, unwrapped.
 * - Every method may be called concurrently.
 */
import type { AbortOptions } from '../../common/abort.js';
import type { ByteSource } from '../../common/async-iterable.js';
import type { B3Digest } from '../b3-digest.js';

/** What `put` resolves to. */
export interface BlobPutResult {
  readonly digest: B3Digest;
  /** Number of bytes stored. */
  readonly size: number;
}

export interface BlobPutOptions extends AbortOptions {
  /**
   * When given, the put fails with `INTEGRITY_MISMATCH` (and stores nothing)
   * unless the bytes hash to this digest.
   */
  expectedDigest?: B3Digest;
  /**
   * The source's chunks are handed over: the caller never touches them
   * again, so a store that keeps chunks in memory may keep them as they are
   * instead of copying them. Default false.
   */
  adoptChunks?: boolean;
}

export interface BlobReadOptions extends AbortOptions {
  /** Start streaming at this byte offset (default 0). An offset past the end yields nothing. */
  offset?: number;
}

export interface BlobService {
  /** Whether the blob is stored. */
  has(digest: B3Digest, options?: AbortOptions): Promise<boolean>;
  /** The blob's bytes from `offset`, or `undefined` when it is not stored. */
  read(digest: B3Digest, options?: BlobReadOptions): Promise<AsyncIterable<Uint8Array> | undefined>;
  /** Stores the bytes of `source`; resolves once they are durable and visible. */
  put(source: ByteSource, options?: BlobPutOptions): Promise<BlobPutResult>;
  /** Releases handles and connections; the service is unusable afterwards. */
  close(): Promise<void>;
}

/**
 * Optional capability of stores that keep each blob as a plain file: the path
 * of that file, so exports can hardlink or reflink instead of copying.
 * The file must be treated as read-only.
 */
export interface LocalBlobFiles {
  localBlobPath(digest: B3Digest): Promise<string | undefined>;
}

export function hasLocalBlobFiles(service: BlobService): service is BlobService & LocalBlobFiles {
  return typeof (service as Partial<LocalBlobFiles>).localBlobPath === 'function';
}

/** Options of `LocalFileIngest.putFile`. */
export interface PutFileOptions extends AbortOptions {
  /**
   * The file's size as a recent stat reported it: lets a file that still has
   * that size be read without the extra call that would confirm its end.
   */
  sizeHint?: number;
}

/**
 * Optional capability of stores on the local machine: storing a local file
 * by its path, so the store can read, hash and write it wherever that is
 * cheapest (the embedded disk store does it on worker threads). Same
 * guarantees as `put` of the file's bytes: the blob becomes visible only once
 * complete, nothing is left behind on failure, and the result's digest and
 * size are those of exactly the bytes stored, read front to back until end of
 * file (a file that changes while it is read is stored as it was read). A
 * symlink at `path` is not followed. Filesystem errors reject as Node raised
 * them (`code`, `syscall`, `path`).
 */
export interface LocalFileIngest {
  putFile(path: string | Buffer, options?: PutFileOptions): Promise<BlobPutResult>;
}

/**
 * Optional capability of stores that can answer `has` on the calling thread:
 * `presenceCheck()` returns a synchronous check for one bulk operation (an
 * import) asking about many digests. A `true` answer means the blob was
 * stored when the check, or a listing it took, looked; blobs stored later
 * are still seen.
 */
export interface SyncBlobPresence {
  presenceCheck(): (digest: B3Digest) => boolean;
}

export function hasSyncBlobPresence<T extends object>(service: T): service is T & SyncBlobPresence {
  return typeof (service as Partial<SyncBlobPresence>).presenceCheck === 'function';
}

export function hasLocalFileIngest<T extends object>(service: T): service is T & LocalFileIngest {
  return typeof (service as Partial<LocalFileIngest>).putFile === 'function';
}
