/**
 * Types of fs-put-file.js: storing a local file as a blob of FsBlobService
 * with synchronous calls, on whichever thread calls it. Shared by the put
 * workers (fs-put-worker.js) and by FsBlobService itself, which runs it
 * inline when no worker is available.
 *
 * Guarantees, the same as `FsBlobService.put`: the bytes go to a fresh temp
 * file (O_EXCL, mode 0444) under `tmpDir` and are renamed to
 * `<blobsDir>/<2 hex>/<hex digest>` only once complete, so the blob is
 * never visible partially; on any failure the temp file is removed. The
 * digest is that of exactly the bytes stored: a file that changes size while
 * it is read is stored as read (the result's `size` says how much), and one
 * that outgrows the read buffer is hashed and copied chunk by chunk. A blob
 * already stored is not written again (checked before writing when the whole
 * file fits the buffer, else once its digest is known).
 */

/** Read buffer size: files up to this size minus one byte are read in one call and hashed in one go. */
export declare const PUT_FILE_BUFFER_SIZE: number;

export interface FilePutterOptions {
  /** `<root>/blobs`, with its 256 shard directories already present. */
  readonly blobsDir: string;
  /** `<root>/tmp`: temp files are named `<tmpPrefix><counter>` here. */
  readonly tmpDir: string;
  /** Starts with the writer's pid and `-`, so that stores sweep the leftovers of dead writers. */
  readonly tmpPrefix: string;
  /** Sync each file's data before the rename and its shard directory after. */
  readonly fsyncAlways: boolean;
  /** A fresh BLAKE3-256 hasher. */
  readonly createHash: () => { update(data: Uint8Array): unknown; digest(): Uint8Array };
}

export interface FilePutResult {
  /** BLAKE3-256 of the bytes stored. */
  readonly digest: Uint8Array;
  /** Number of bytes read and stored. */
  readonly size: number;
  /** Whether this call wrote the blob (false: it was already stored). */
  readonly stored: boolean;
}

/**
 * Stores the bytes of the regular file at `path`, read front to back until
 * end of file. A symlink is not followed (the open fails with ELOOP).
 * `sizeHint`, the size a recent stat reported, lets a file that still has
 * that size skip the read that would confirm its end. Filesystem errors are
 * thrown as Node raised them (`code`, `syscall`, `path`).
 */
export type FilePutter = (path: string | Uint8Array, sizeHint: number) => FilePutResult;

/** The path of a blob's file, `<blobsDir>/<2 hex>/<hex digest>`: the one statement of the store's layout. */
export declare function blobPathIn(blobsDir: string): (digest: Uint8Array) => string;

/** A putter with its own reusable read buffer (allocated on first use) and temp-name counter. */
export declare function createFilePutter(options: FilePutterOptions): FilePutter;

/**
 * Writes `data`, whose BLAKE3 digest is `digest`, as a blob with the same
 * temp-file-then-rename guarantees; the caller has checked it is not stored.
 */
export type BlobWriter = (data: Uint8Array, digest: Uint8Array) => FilePutResult;

/** A writer for buffers already in memory, with its own temp-name counter. */
export declare function createBlobWriter(options: FilePutterOptions): BlobWriter;
