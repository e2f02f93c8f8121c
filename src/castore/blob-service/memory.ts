/** A BlobService that keeps every blob in process memory. */
import type { AbortOptions } from '../../common/abort.js';
import { type ByteSource, toChunks } from '../../common/async-iterable.js';
import { createBlake3 } from '../../common/blake3.js';
import { B3Digest } from '../b3-digest.js';
import type { BlobPutOptions, BlobPutResult, BlobReadOptions, BlobService } from './blob-service.js';
import { integrityError, verifiedStream } from './verify-stream.js';

/** Chunk size `read` yields in. */
export const MEMORY_READ_CHUNK_SIZE = 1 << 20;

/** Blobs are kept as the chunks they arrived in: joining them would need the memory twice over. */
export class MemoryBlobService implements BlobService {
  readonly #blobs = new Map<string, readonly Uint8Array[]>();

  async has(digest: B3Digest, options: AbortOptions = {}): Promise<boolean> {
    options.signal?.throwIfAborted();
    return this.#blobs.has(digest.toHex());
  }

  async read(digest: B3Digest, options: BlobReadOptions = {}): Promise<AsyncIterable<Uint8Array> | undefined> {
    options.signal?.throwIfAborted();
    const data = this.#blobs.get(digest.toHex());
    if (!data) return undefined;
    return verifiedStream(digest, sliceChunks(data), options.offset ?? 0, options.signal);
  }

  async put(source: ByteSource, options: BlobPutOptions = {}): Promise<BlobPutResult> {
    const { signal } = options;
    signal?.throwIfAborted();
    const hasher = createBlake3();
    const parts: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of toChunks(source)) {
      signal?.throwIfAborted();
      hasher.update(chunk);
      // Unless handed over, a copy (the caller may reuse its buffer), by memcpy: Uint8Array.from goes element by element, 4× slower.
      parts.push(options.adoptChunks ? chunk : new Uint8Array(chunk));
      size += chunk.byteLength;
    }
    signal?.throwIfAborted();
    const digest = B3Digest.fromBytes(hasher.digest());
    if (options.expectedDigest && !options.expectedDigest.equals(digest)) throw integrityError(options.expectedDigest, digest);
    const key = digest.toHex();
    if (!this.#blobs.has(key)) this.#blobs.set(key, parts);
    return { digest, size };
  }

  /** @internal Replaces stored bytes without rehashing; tests use it to simulate corruption. */
  corruptForTesting(digest: B3Digest, bytes: Uint8Array): void {
    this.#blobs.set(digest.toHex(), [bytes]);
  }

  async close(): Promise<void> {}
}

/** Stored chunks at least this long are read back as they are (cut to `MEMORY_READ_CHUNK_SIZE`), never joined with others. */
export const MEMORY_READ_WHOLE_CHUNK_SIZE = 256 << 10;

/**
 * The stored chunks as read chunks of at most `MEMORY_READ_CHUNK_SIZE`:
 * large ones as they are (cut when longer), small ones joined into
 * full-size chunks (one copy), so a blob put a few bytes at a time is not
 * read back so.
 */
function* sliceChunks(parts: readonly Uint8Array[]): Generator<Uint8Array> {
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  function* flush(): Generator<Uint8Array> {
    if (pendingBytes > 0) yield pending.length === 1 ? (pending[0] as Uint8Array) : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
  }
  for (const data of parts) {
    if (data.byteLength >= MEMORY_READ_WHOLE_CHUNK_SIZE) {
      yield* flush();
      for (let offset = 0; offset < data.byteLength; offset += MEMORY_READ_CHUNK_SIZE)
        yield data.subarray(offset, offset + MEMORY_READ_CHUNK_SIZE);
      continue;
    }
    for (let offset = 0; offset < data.byteLength; ) {
      const piece = data.subarray(offset, offset + MEMORY_READ_CHUNK_SIZE - pendingBytes);
      offset += piece.byteLength;
      pending.push(piece);
      pendingBytes += piece.byteLength;
      if (pendingBytes === MEMORY_READ_CHUNK_SIZE) yield* flush();
    }
  }
  yield* flush();
}
