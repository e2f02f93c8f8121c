/**
 * Nix hashes: an algorithm and its digest, in the four text forms Nix reads
 * and writes. Hashing uses node:crypto.
 *
 * Text forms (a 32-byte sha256 digest shown):
 * - base16: 64 hex digits (`sha256:` prefix optional); lower case when written, either case read;
 * - nixbase32: 52 characters of Nix's base32 (`sha256:` prefix optional);
 * - base64: 44 characters, standard alphabet, padded (`sha256:` prefix optional; 43 unpadded also read);
 * - SRI: `sha256-` + base64.
 *
 * Without a prefix the caller must name the algorithm. The encoding is
 * chosen by length alone, which is unambiguous for every supported algorithm.
 */
import { createHash } from 'node:crypto';
import { bytesEqual, toHex } from '../common/encoding.js';
import { NixFormatError } from './errors.js';
import { decodeNixbase32, encodeNixbase32, nixbase32EncodedLength } from './nixbase32.js';

/** The algorithms Nix knows; md5 and sha1 only appear in old fixed-output derivations. */
export type HashAlgorithm = 'md5' | 'sha1' | 'sha256' | 'sha512';

export const HASH_ALGORITHMS: readonly HashAlgorithm[] = ['md5', 'sha1', 'sha256', 'sha512'];

const DIGEST_LENGTHS: Readonly<Record<HashAlgorithm, number>> = { md5: 16, sha1: 20, sha256: 32, sha512: 64 };

/** A digest and the algorithm that made it. The digest length always matches the algorithm. */
export interface NixHash {
  readonly algo: HashAlgorithm;
  /** The raw digest; never mutate. */
  readonly digest: Uint8Array;
}

/** The text forms of a hash; `sri` always carries the algorithm. */
export type HashEncoding = 'base16' | 'nixbase32' | 'base64' | 'sri';

export function isHashAlgorithm(text: string): text is HashAlgorithm {
  return Object.hasOwn(DIGEST_LENGTHS, text);
}

/** Throws `INVALID_HASH` for anything but md5, sha1, sha256 and sha512. */
export function parseHashAlgorithm(text: string): HashAlgorithm {
  if (!isHashAlgorithm(text))
    throw new NixFormatError('INVALID_HASH', `unknown hash algorithm ${JSON.stringify(text)}`, { details: { algo: text } });
  return text;
}

/** Digest length in bytes. */
export function hashDigestLength(algo: HashAlgorithm): number {
  return DIGEST_LENGTHS[algo];
}

/** Builds a NixHash, checking the digest length. */
export function nixHash(algo: HashAlgorithm, digest: Uint8Array): NixHash {
  if (digest.byteLength !== DIGEST_LENGTHS[algo]) {
    throw new NixFormatError('INVALID_HASH', `invalid ${algo} digest length ${digest.byteLength}, expected ${DIGEST_LENGTHS[algo]}`, {
      details: { algo, length: digest.byteLength },
    });
  }
  return { algo, digest };
}

/**
 * Parses any of the text forms. `algo` is required when the text has no
 * `algo:` or `algo-` prefix, and must agree with the prefix when both are
 * given. SRI (`algo-…`) accepts only base64.
 */
export function parseNixHash(text: string, algo?: HashAlgorithm): NixHash {
  let parsedAlgo = algo;
  let rest = text;
  let sri = false;
  const colon = text.indexOf(':');
  const dash = colon < 0 ? text.indexOf('-') : -1;
  const split = colon >= 0 ? colon : dash;
  if (split >= 0) {
    const prefix = text.slice(0, split);
    if (!isHashAlgorithm(prefix)) {
      throw new NixFormatError('INVALID_HASH', `invalid hash ${JSON.stringify(text)}: unknown algorithm ${JSON.stringify(prefix)}`, {
        details: { hash: text },
      });
    }
    if (algo !== undefined && algo !== prefix) {
      throw new NixFormatError('INVALID_HASH', `invalid hash ${JSON.stringify(text)}: expected a ${algo} hash`, {
        details: { hash: text },
      });
    }
    parsedAlgo = prefix;
    rest = text.slice(split + 1);
    sri = dash >= 0;
  }
  if (parsedAlgo === undefined) {
    throw new NixFormatError('INVALID_HASH', `invalid hash ${JSON.stringify(text)}: no algorithm given`, { details: { hash: text } });
  }
  const digest = decodeDigest(parsedAlgo, rest, sri);
  if (!digest) {
    const forms = sri ? 'base64' : 'base16, nixbase32 or base64';
    throw new NixFormatError(
      'INVALID_HASH',
      `invalid ${parsedAlgo} hash ${JSON.stringify(text)}: not ${forms} of a ${DIGEST_LENGTHS[parsedAlgo]}-byte digest`,
      {
        details: { hash: text, algo: parsedAlgo },
      },
    );
  }
  return { algo: parsedAlgo, digest };
}

/** Decodes `text` as one encoding of an `algo` digest chosen by its length; undefined when it is none. */
function decodeDigest(algo: HashAlgorithm, text: string, base64Only: boolean): Uint8Array | undefined {
  const n = DIGEST_LENGTHS[algo];
  if (!base64Only && text.length === 2 * n) {
    return /^[0-9a-fA-F]*$/.test(text) ? new Uint8Array(Buffer.from(text, 'hex')) : undefined;
  }
  if (!base64Only && text.length === nixbase32EncodedLength(n)) {
    try {
      return decodeNixbase32(text);
    } catch {
      return undefined;
    }
  }
  if (text.length === 4 * Math.ceil(n / 3) || text.length === Math.ceil((4 * n) / 3)) return decodeBase64Strict(text, n);
  return undefined;
}

/** Standard base64, padded or not, whose unused trailing bits are zero. */
function decodeBase64Strict(text: string, n: number): Uint8Array | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64');
  if (bytes.byteLength !== n) return undefined;
  const canonical = bytes.toString('base64');
  if (canonical !== text && canonical.replace(/=+$/, '') !== text) return undefined;
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Formats a hash; `prefix` (default true) puts `algo:` in front of base16, nixbase32 and base64. */
export function formatNixHash(hash: NixHash, encoding: HashEncoding, options: { prefix?: boolean } = {}): string {
  const prefix = options.prefix ?? true;
  switch (encoding) {
    case 'sri':
      return `${hash.algo}-${toBase64(hash.digest)}`;
    case 'base16':
      return (prefix ? `${hash.algo}:` : '') + toHex(hash.digest);
    case 'nixbase32':
      return (prefix ? `${hash.algo}:` : '') + encodeNixbase32(hash.digest);
    case 'base64':
      return (prefix ? `${hash.algo}:` : '') + toBase64(hash.digest);
  }
}

function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

export function nixHashEquals(a: NixHash, b: NixHash): boolean {
  return a.algo === b.algo && bytesEqual(a.digest, b.digest);
}

/** Hashes bytes (a string counts as its UTF-8 encoding). */
export function hashBytes(algo: HashAlgorithm, data: Uint8Array | string): NixHash {
  return { algo, digest: new Uint8Array(createHash(algo).update(data).digest()) };
}

/** Incremental hashing: feed chunks, then take the digest once. */
export interface NixHasher {
  update(chunk: Uint8Array): void;
  digest(): NixHash;
}

export function createNixHasher(algo: HashAlgorithm): NixHasher {
  const hash = createHash(algo);
  return {
    update: (chunk) => {
      hash.update(chunk);
    },
    digest: () => ({ algo, digest: new Uint8Array(hash.digest()) }),
  };
}

/** sha256 of `data` as raw bytes: the workhorse of store path computation. */
export function sha256(data: Uint8Array | string): Uint8Array {
  return new Uint8Array(createHash('sha256').update(data).digest());
}
