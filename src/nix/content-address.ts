/**
 * Content addresses: how a fixed-output or content-addressed path was
 * hashed. Three methods exist:
 * - `flat`: the hash of the file's bytes (a single regular file);
 * - `nar`: the hash of the NAR serialisation ("recursive", written `r:`);
 * - `text`: the sha256 of the bytes of a text file (`builtins.toFile`, `.drv` files), written `text:`.
 *
 * Text forms:
 * - in a derivation output's `hashAlgo` field: `[r:|text:]<algo>` (`r:sha256`, `sha1`, `text:sha256`);
 * - in narinfo and path-info `CA` fields: `fixed:[r:]<algo>:<nixbase32>` or `text:sha256:<nixbase32>`.
 */
import { NixFormatError } from './errors.js';
import { formatNixHash, type HashAlgorithm, isHashAlgorithm, type NixHash, parseNixHash } from './hash.js';

export type ContentAddressMethod = 'flat' | 'nar' | 'text';

/** A method and the hash computed by it. A `text` address is always sha256. */
export interface ContentAddress {
  readonly method: ContentAddressMethod;
  readonly hash: NixHash;
}

const METHOD_PREFIX: Readonly<Record<ContentAddressMethod, string>> = { flat: '', nar: 'r:', text: 'text:' };

/** The prefix of `hashAlgo` and of fixed-output fingerprints: `""`, `"r:"` or `"text:"`. */
export function methodPrefix(method: ContentAddressMethod): string {
  return METHOD_PREFIX[method];
}

/** Parses a derivation output's `hashAlgo` (`r:sha256`, `sha1`, `text:sha256`). */
export function parseMethodAlgo(text: string): { method: ContentAddressMethod; algo: HashAlgorithm } {
  let method: ContentAddressMethod = 'flat';
  let algo = text;
  if (text.startsWith('r:')) {
    method = 'nar';
    algo = text.slice(2);
  } else if (text.startsWith('text:')) {
    method = 'text';
    algo = text.slice(5);
  }
  if (!isHashAlgorithm(algo)) {
    throw new NixFormatError('INVALID_HASH', `invalid hash algorithm ${JSON.stringify(text)}: expected [r:|text:]md5|sha1|sha256|sha512`, {
      details: { hashAlgo: text },
    });
  }
  if (method === 'text' && algo !== 'sha256') {
    throw new NixFormatError('INVALID_HASH', `invalid hash algorithm ${JSON.stringify(text)}: text hashing needs sha256`, {
      details: { hashAlgo: text },
    });
  }
  return { method, algo };
}

/** `r:sha256`, `sha1`, `text:sha256`. */
export function formatMethodAlgo(method: ContentAddressMethod, algo: HashAlgorithm): string {
  return METHOD_PREFIX[method] + algo;
}

/** Builds a content address, checking that `text` goes with sha256. */
export function contentAddress(method: ContentAddressMethod, hash: NixHash): ContentAddress {
  if (method === 'text' && hash.algo !== 'sha256') {
    throw new NixFormatError('INVALID_HASH', `text content addresses need sha256, got ${hash.algo}`, { details: { algo: hash.algo } });
  }
  return { method, hash };
}

/** Parses the narinfo `CA` form: `fixed:[r:]<algo>:<hash>` or `text:sha256:<hash>` (any hash encoding). */
export function parseContentAddress(text: string): ContentAddress {
  let method: ContentAddressMethod;
  let rest: string;
  if (text.startsWith('text:')) {
    method = 'text';
    rest = text.slice(5);
  } else if (text.startsWith('fixed:r:')) {
    method = 'nar';
    rest = text.slice(8);
  } else if (text.startsWith('fixed:')) {
    method = 'flat';
    rest = text.slice(6);
  } else {
    throw new NixFormatError('INVALID_HASH', `invalid content address ${JSON.stringify(text)}: expected text: or fixed:`, {
      details: { ca: text },
    });
  }
  if (rest.indexOf(':') < 0) {
    throw new NixFormatError('INVALID_HASH', `invalid content address ${JSON.stringify(text)}: expected <algo>:<hash>`, {
      details: { ca: text },
    });
  }
  return contentAddress(method, parseNixHash(rest));
}

/** The narinfo `CA` form, hash in nixbase32 (as Nix writes it). */
export function formatContentAddress(ca: ContentAddress): string {
  const hash = formatNixHash(ca.hash, 'nixbase32');
  return ca.method === 'text' ? `text:${hash}` : `fixed:${METHOD_PREFIX[ca.method]}${hash}`;
}
