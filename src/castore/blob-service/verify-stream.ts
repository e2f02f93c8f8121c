/**
 * Shared by every backend: hash bytes as they pass and fail at the end when
 * they do not match the digest they were read under.
 */
import { createBlake3 } from '../../common/blake3.js';
import { B3Digest } from '../b3-digest.js';
import { CastoreError } from '../errors.js';

/**
 * Yields `chunks` from `offset` on, hashing every byte (the skipped prefix
 * too), and throws `INTEGRITY_MISMATCH` after the last chunk if the whole
 * does not hash to `digest`.
 */
export async function* verifiedStream(
  digest: B3Digest,
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  offset = 0,
  signal?: AbortSignal,
): AsyncGenerator<Uint8Array> {
  const hasher = createBlake3();
  let position = 0;
  for await (const chunk of chunks) {
    signal?.throwIfAborted();
    hasher.update(chunk);
    const end = position + chunk.byteLength;
    if (end > offset) yield position >= offset ? chunk : chunk.subarray(offset - position);
    position = end;
  }
  const actual = B3Digest.fromBytes(hasher.digest());
  if (!actual.equals(digest)) throw integrityError(digest, actual);
}

export function integrityError(expected: B3Digest, actual: B3Digest): CastoreError {
  return new CastoreError('INTEGRITY_MISMATCH', `blob ${expected} is corrupt: its bytes hash to ${actual}`, {
    details: { digest: expected.toString(), actual: actual.toString() },
  });
}
