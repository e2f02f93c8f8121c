/**
 * Path info: what Kiln records about a store path it holds, the
 * counterpart of a row in Nix's database (`ValidPathInfo`) and of Snix's
 * PathInfo. The contents live in the castore; the path info ties the store
 * path to its castore node and to the facts Nix compares: the NAR hash and
 * size, the references, the deriver and, for content-addressed paths, how
 * the contents were hashed.
 *
 * Text forms: `narHash` as `sha256:<nixbase32>` (what `nix path-info --json`
 * and `--dump-db` consumers compare), store paths absolute.
 */
import { type B3Digest, entryFromJson, entryToJson, type Node } from '../castore/index.js';
import {
  type ContentAddress,
  DEFAULT_STORE_DIR,
  formatContentAddress,
  formatNixHash,
  type NixHash,
  parseAbsoluteStorePath,
  parseContentAddress,
  parseNixHash,
  type StorePath,
} from '../nix/index.js';
import { NixBridgeError } from './errors.js';

export interface PathInfo {
  /** The store path this describes. */
  readonly storePath: StorePath;
  /** The contents: a directory, file or symlink in the castore. */
  readonly node: Node;
  /** sha256 of the NAR serialization of `node`. */
  readonly narHash: NixHash;
  /** Bytes in that NAR. */
  readonly narSize: number;
  /** Absolute store paths the contents mention (self included when it does), sorted, unique. */
  readonly references: readonly string[];
  /** The `.drv` path that produced it; absent for sources. */
  readonly deriver?: string;
  /** For fixed-output and other content-addressed paths: the method and the hash of the contents. */
  readonly ca?: ContentAddress;
}

/** The JSON object Kiln stores and prints for a path info. */
export interface PathInfoJson {
  path: string;
  /** `sha256:<nixbase32>`. */
  narHash: string;
  narSize: number;
  references: string[];
  deriver?: string;
  /** `fixed:r:sha256:<nixbase32>` etc., as narinfo and `nix path-info` print it. */
  ca?: string;
  /** The castore node: the proto3 JSON of a `snix.castore.v1.Entry` named by the store path's base name. */
  entry: unknown;
}

/** `sha256:<nixbase32>`, the form `nix path-info --json` prints. */
export function formatNarHash(hash: NixHash): string {
  return formatNixHash(hash, 'nixbase32');
}

export function pathInfoToJson(info: PathInfo, storeDir: string = DEFAULT_STORE_DIR): PathInfoJson {
  return {
    path: info.storePath.toAbsolute(storeDir),
    narHash: formatNarHash(info.narHash),
    narSize: info.narSize,
    references: [...info.references],
    ...(info.deriver !== undefined ? { deriver: info.deriver } : {}),
    ...(info.ca ? { ca: formatContentAddress(info.ca) } : {}),
    entry: JSON.parse(entryToJson(Buffer.from(info.storePath.baseName), info.node)),
  };
}

/** Reads back what `pathInfoToJson` wrote, validating every field; throws `INVALID_PATH_INFO`. */
export function pathInfoFromJson(json: unknown, storeDir: string = DEFAULT_STORE_DIR): PathInfo {
  try {
    const o = json as PathInfoJson;
    if (typeof o !== 'object' || o === null) throw new Error('not an object');
    const storePath = parseAbsoluteStorePath(String(o.path), storeDir);
    const narHash = parseNixHash(String(o.narHash));
    if (narHash.algo !== 'sha256') throw new Error(`narHash ${o.narHash} is not sha256`);
    if (!Number.isSafeInteger(o.narSize) || o.narSize < 0) throw new Error(`invalid narSize ${o.narSize}`);
    if (!Array.isArray(o.references)) throw new Error('references is not a list');
    const references = o.references.map((r) => parseAbsoluteStorePath(String(r), storeDir).toAbsolute(storeDir));
    const { node } = entryFromJson(JSON.stringify(o.entry), { anonymous: false });
    return {
      storePath,
      node,
      narHash,
      narSize: o.narSize,
      references,
      ...(o.deriver !== undefined ? { deriver: parseAbsoluteStorePath(String(o.deriver), storeDir).toAbsolute(storeDir) } : {}),
      ...(o.ca !== undefined ? { ca: parseContentAddress(String(o.ca)) } : {}),
    };
  } catch (error) {
    throw new NixBridgeError('INVALID_PATH_INFO', `invalid path info record: ${(error as Error).message}`, { cause: error });
  }
}

/** The digest a node is known by in the castore (directories and files), for messages. */
export function nodeDigest(node: Node): B3Digest | undefined {
  return node.type === 'symlink' ? undefined : node.digest;
}
