/** A BlobService that keeps every blob in process memory. */
import type { AbortOptions } from '../../common/abort.js';
import { type ByteSource, toChunks } from '../../common/async-iterable.js';
import { createBlake3 } from '../../common/blake3.js';
import { B3Digest } from '../b3-digest.js';
import type { BlobPutOptions, BlobPutResult, BlobReadOptions, BlobService } from './blob-service.js';
import { integrityError, verifiedStream } from './verify-stream.js';

/** Chunk size `read` yields in. */
export const MEMORY_READ_CHUNK_SIZE = 1 << 20;

export class MemoryBlobService implements BlobService {
  readonly #blobs = new Map<string, Uint8Array>();

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
      parts.push(Uint8Array.from(chunk));
      size += chunk.byteLength;
    }
    signal?.throwIfAborted();
    const digest = B3Digest.fromBytes(hasher.digest());
    if (options.expectedDigest && !options.expectedDigest.equals(digest)) throw integrityError(options.expectedDigest, digest);
    const key = digest.toHex();
    if (!this.#blobs.has(key)) this.#blobs.set(key, parts.length === 1 ? (parts[0] as Uint8Array) : Buffer.concat(parts, size));
    return { digest, size };
  }

  /** @internal Replaces stored bytes without rehashing; tests use it to simulate corruption. */
  corruptForTesting(digest: B3Digest, bytes: Uint8Array): void {
    this.#blobs.set(digest.toHex(), bytes);
  }

  async close(): Promise<void> {}
}

function* sliceChunks(data: Uint8Array): Generator<Uint8Array> {
  if (data.byteLength === 0) return;
  for (let offset = 0; offset < data.byteLength; offset += MEMORY_READ_CHUNK_SIZE) {
    yield data.subarray(offset, offset + MEMORY_READ_CHUNK_SIZE);
  }
}
