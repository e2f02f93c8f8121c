/**
 * Store paths: `<storeDir>/<nixbase32 of a 20-byte digest>-<name>`, and the
 * ways Nix computes them.
 *
 * Rules (Nix's and Snix's, §6.2 of the reference):
 * - the hash part is 32 nixbase32 characters decoding to exactly 20 bytes;
 * - the name is 1–211 bytes of `[A-Za-z0-9+\-_?=.]` (a leading `.` is allowed, as in Nix 2.8 and Snix);
 * - the store directory is a parameter everywhere (default `/nix/store`): absolute, no trailing `/`.
 *
 * Computation: `makeStorePath(type, innerDigest, name)` hashes the
 * fingerprint `<type>:sha256:<hex inner digest>:<storeDir>:<name>` with
 * sha256 and XOR-folds it to 20 bytes. The helpers below build `type` for
 * text files (`text[:ref…]`), NAR-hashed sha256 sources (`source[:ref…][:self]`),
 * other fixed outputs (`output:out` over `fixed:out:…`) and input-addressed
 * derivation outputs (`output:<name>` over hashDerivationModulo).
 *
 * Order: store paths sort by their hash part as text (which is the reversed
 * digest bytes' order), then by name; for paths in one store directory this
 * is plain string order of the absolute paths.
 */
import { toHex } from '../common/encoding.js';
import { type ContentAddress, methodPrefix } from './content-address.js';
import { NixFormatError } from './errors.js';
import { sha256 } from './hash.js';
import { decodeNixbase32, encodeNixbase32 } from './nixbase32.js';

export const DEFAULT_STORE_DIR = '/nix/store';
/** Bytes in a store path digest. */
export const STORE_PATH_DIGEST_LENGTH = 20;
/** Characters in a store path's hash part. */
export const STORE_PATH_HASH_PART_LENGTH = 32;
/** Longest allowed name, in bytes. */
export const MAX_STORE_PATH_NAME_LENGTH = 211;

/** A validated store path, independent of any store directory. */
export class StorePath {
  /** The 20 digest bytes; never mutate. */
  readonly digest: Uint8Array;
  readonly name: string;
  /** The digest in nixbase32, 32 characters. */
  readonly hashPart: string;

  private constructor(digest: Uint8Array, name: string, hashPart: string) {
    this.digest = digest;
    this.name = name;
    this.hashPart = hashPart;
  }

  /** Validates the digest length and the name. */
  static fromParts(digest: Uint8Array, name: string): StorePath {
    if (digest.byteLength !== STORE_PATH_DIGEST_LENGTH) {
      throw new NixFormatError('INVALID_STORE_PATH', `invalid store path digest length ${digest.byteLength}, expected 20`, {
        details: { length: digest.byteLength },
      });
    }
    return new StorePath(digest, validateStorePathName(name), encodeNixbase32(digest));
  }

  /** Parses `<hash>-<name>`. */
  static parseBaseName(baseName: string): StorePath {
    return parseStorePathBaseName(baseName);
  }

  /** Parses `<storeDir>/<hash>-<name>`, nothing before or after. */
  static parseAbsolute(path: string, storeDir: string = DEFAULT_STORE_DIR): StorePath {
    return parseAbsoluteStorePath(path, storeDir);
  }

  /** `<hash>-<name>`. */
  get baseName(): string {
    return `${this.hashPart}-${this.name}`;
  }

  toAbsolute(storeDir: string = DEFAULT_STORE_DIR): string {
    return `${validateStoreDir(storeDir)}/${this.baseName}`;
  }

  equals(other: StorePath): boolean {
    return this.hashPart === other.hashPart && this.name === other.name;
  }

  toString(): string {
    return this.baseName;
  }

  toJSON(): string {
    return this.baseName;
  }
}

const NAME_CHAR = /^[A-Za-z0-9+\-_?=.]$/;

/** Returns `name` when it is a valid store path name; throws `INVALID_STORE_PATH` naming the first bad character. */
export function validateStorePathName(name: string): string {
  if (name.length === 0) throw new NixFormatError('INVALID_STORE_PATH', 'invalid store path name "": empty', { details: { name } });
  if (name.length > MAX_STORE_PATH_NAME_LENGTH) {
    throw new NixFormatError(
      'INVALID_STORE_PATH',
      `invalid store path name ${JSON.stringify(name)}: longer than ${MAX_STORE_PATH_NAME_LENGTH} bytes`,
      {
        details: { name, length: name.length },
      },
    );
  }
  for (let i = 0; i < name.length; i++) {
    if (!NAME_CHAR.test(name[i])) {
      throw new NixFormatError(
        'INVALID_STORE_PATH',
        `invalid store path name ${JSON.stringify(name)}: invalid character ${JSON.stringify(name[i])} at offset ${i}`,
        {
          details: { name, offset: i },
        },
      );
    }
  }
  return name;
}

export function isValidStorePathName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_STORE_PATH_NAME_LENGTH && /^[A-Za-z0-9+\-_?=.]+$/.test(name);
}

/** Returns `storeDir` when it is absolute, without a trailing slash and free of NUL. */
export function validateStoreDir(storeDir: string): string {
  if (!storeDir.startsWith('/') || storeDir.endsWith('/') || storeDir.includes('\0') || storeDir.includes('//')) {
    throw new NixFormatError(
      'INVALID_STORE_PATH',
      `invalid store directory ${JSON.stringify(storeDir)}: must be absolute, without a trailing "/"`,
      {
        details: { storeDir },
      },
    );
  }
  return storeDir;
}

/** Parses `<hash>-<name>`: 32 nixbase32 characters decoding to 20 bytes, a dash, a valid name. */
export function parseStorePathBaseName(baseName: string): StorePath {
  return parseBaseNameOf(baseName, baseName, 0);
}

/** Parses the base name; messages name `whole` and offsets count from `start` in it. */
function parseBaseNameOf(baseName: string, whole: string, start: number): StorePath {
  const fail = (reason: string, offset?: number, cause?: unknown) =>
    new NixFormatError('INVALID_STORE_PATH', `invalid store path ${JSON.stringify(whole)}: ${reason}`, {
      cause,
      details: offset === undefined ? { path: whole } : { path: whole, offset: start + offset },
    });
  if (baseName.length < STORE_PATH_HASH_PART_LENGTH + 2) throw fail('too short');
  let digest: Uint8Array;
  try {
    digest = decodeNixbase32(baseName.slice(0, STORE_PATH_HASH_PART_LENGTH));
  } catch (error) {
    const offset = (error as NixFormatError).details?.offset as number | undefined;
    throw fail(`bad hash part: ${(error as Error).message}`, offset, error);
  }
  if (baseName[STORE_PATH_HASH_PART_LENGTH] !== '-') throw fail('expected "-" after the hash part', STORE_PATH_HASH_PART_LENGTH);
  const name = baseName.slice(STORE_PATH_HASH_PART_LENGTH + 1);
  try {
    validateStorePathName(name);
  } catch (error) {
    const offset = (error as NixFormatError).details?.offset as number | undefined;
    throw fail((error as Error).message, offset === undefined ? undefined : STORE_PATH_HASH_PART_LENGTH + 1 + offset, error);
  }
  return StorePath.fromParts(digest, name);
}

/** Parses `<storeDir>/<hash>-<name>` exactly. */
export function parseAbsoluteStorePath(path: string, storeDir: string = DEFAULT_STORE_DIR): StorePath {
  const { storePath, subPath } = splitAbsoluteStorePath(path, storeDir);
  if (subPath !== '') {
    throw new NixFormatError('INVALID_STORE_PATH', `invalid store path ${JSON.stringify(path)}: trailing ${JSON.stringify(subPath)}`, {
      details: { path },
    });
  }
  return storePath;
}

/** Splits `<storeDir>/<hash>-<name>[/sub/path]` into the store path and the rest (`""` or starting with `/`). */
export function splitAbsoluteStorePath(path: string, storeDir: string = DEFAULT_STORE_DIR): { storePath: StorePath; subPath: string } {
  const prefix = `${validateStoreDir(storeDir)}/`;
  if (!path.startsWith(prefix)) {
    throw new NixFormatError('INVALID_STORE_PATH', `invalid store path ${JSON.stringify(path)}: not in ${storeDir}`, {
      details: { path, storeDir },
    });
  }
  const slash = path.indexOf('/', prefix.length);
  const baseName = slash < 0 ? path.slice(prefix.length) : path.slice(prefix.length, slash);
  return { storePath: parseBaseNameOf(baseName, path, prefix.length), subPath: slash < 0 ? '' : path.slice(slash) };
}

/** Orders by hash part text (= reversed digest bytes), then by name. */
export function compareStorePaths(a: StorePath, b: StorePath): number {
  if (a.hashPart !== b.hashPart) return a.hashPart < b.hashPart ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** XOR-folds `digest` to `size` bytes: out[i mod size] ^= digest[i]. */
export function compressHash(digest: Uint8Array, size: number = STORE_PATH_DIGEST_LENGTH): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < digest.length; i++) out[i % size] ^= digest[i];
  return out;
}

/** What a fingerprint names as references: store paths, or absolute paths under the store directory. */
export type StorePathReference = StorePath | string;

/** The store path of `sha256("<type>:sha256:<hex innerDigest>:<storeDir>:<name>")`, folded to 20 bytes. */
export function makeStorePath(type: string, innerDigest: Uint8Array, name: string, storeDir: string = DEFAULT_STORE_DIR): StorePath {
  if (innerDigest.byteLength !== 32) {
    throw new NixFormatError('INVALID_HASH', `invalid inner digest length ${innerDigest.byteLength}, expected a sha256 digest`, {
      details: { length: innerDigest.byteLength },
    });
  }
  validateStorePathName(name);
  const fingerprint = `${type}:sha256:${toHex(innerDigest)}:${validateStoreDir(storeDir)}:${name}`;
  return StorePath.fromParts(compressHash(sha256(fingerprint)), name);
}

/** `<base>:<ref1>:<ref2>…[:self]` with references as absolute paths in string order, deduplicated. */
function typeWithReferences(base: string, references: Iterable<StorePathReference>, storeDir: string, selfReference: boolean): string {
  const absolute = new Set<string>();
  for (const ref of references)
    absolute.add(typeof ref === 'string' ? parseAbsoluteStorePath(ref, storeDir).toAbsolute(storeDir) : ref.toAbsolute(storeDir));
  let type = base;
  for (const ref of [...absolute].sort()) type += `:${ref}`;
  if (selfReference) type += ':self';
  return type;
}

/** The path of a text file (`builtins.toFile`, a `.drv`): `text[:refs]` over sha256(contents). */
export function makeTextStorePath(
  name: string,
  contents: Uint8Array | string,
  references: Iterable<StorePathReference> = [],
  storeDir: string = DEFAULT_STORE_DIR,
): StorePath {
  return makeStorePath(typeWithReferences('text', references, storeDir, false), sha256(contents), name, storeDir);
}

export interface FixedOutputPathOptions {
  /** Other store paths the content refers to; only `nar`+sha256 and `text` addresses may have any. */
  references?: Iterable<StorePathReference>;
  /** The content refers to its own path; only `nar`+sha256 addresses may. */
  selfReference?: boolean;
  storeDir?: string;
}

/**
 * The path of content-addressed data, as Nix's makeFixedOutputPath:
 * - `nar` + sha256: `source[:refs][:self]` over the NAR hash;
 * - `text` (sha256 only): `text[:refs]` over the hash;
 * - anything else: `output:out` over sha256(`fixed:out:<r:?><algo>:<hex>:`), with no references allowed.
 */
export function makeFixedOutputStorePath(name: string, ca: ContentAddress, options: FixedOutputPathOptions = {}): StorePath {
  const storeDir = options.storeDir ?? DEFAULT_STORE_DIR;
  const references = [...(options.references ?? [])];
  const selfReference = options.selfReference ?? false;
  if (ca.method === 'nar' && ca.hash.algo === 'sha256') {
    return makeStorePath(typeWithReferences('source', references, storeDir, selfReference), ca.hash.digest, name, storeDir);
  }
  if (ca.method === 'text') {
    if (ca.hash.algo !== 'sha256') throw new NixFormatError('INVALID_HASH', `text content addresses need sha256, got ${ca.hash.algo}`);
    if (selfReference)
      throw new NixFormatError('INVALID_STORE_PATH', `text path ${JSON.stringify(name)} cannot refer to itself`, { details: { name } });
    return makeStorePath(typeWithReferences('text', references, storeDir, false), ca.hash.digest, name, storeDir);
  }
  if (references.length > 0 || selfReference) {
    throw new NixFormatError(
      'INVALID_STORE_PATH',
      `fixed-output path ${JSON.stringify(name)} hashed ${methodPrefix(ca.method)}${ca.hash.algo} cannot have references`,
      {
        details: { name },
      },
    );
  }
  return makeStorePath('output:out', fixedOutputDigest(ca, ''), name, storeDir);
}

/** sha256(`fixed:out:<r:|text:?><algo>:<hex digest>:<outPath>`): a fixed output's inner digest (outPath `""`) or its hashDerivationModulo. */
export function fixedOutputDigest(ca: ContentAddress, outPath: string): Uint8Array {
  return sha256(`fixed:out:${methodPrefix(ca.method)}${ca.hash.algo}:${toHex(ca.hash.digest)}:${outPath}`);
}

/** `drvName` for the output `out`, `<drvName>-<outputName>` otherwise. */
export function outputPathName(drvName: string, outputName: string): string {
  return outputName === 'out' ? drvName : `${drvName}-${outputName}`;
}

/** The path of an input-addressed derivation output: `output:<outputName>` over hashDerivationModulo. */
export function makeOutputStorePath(
  drvName: string,
  outputName: string,
  hashModulo: Uint8Array,
  storeDir: string = DEFAULT_STORE_DIR,
): StorePath {
  return makeStorePath(`output:${outputName}`, hashModulo, outputPathName(drvName, outputName), storeDir);
}
