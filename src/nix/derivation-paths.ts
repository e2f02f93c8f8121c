/**
 * The store paths a derivation implies: its own `.drv` path, its
 * `hashDerivationModulo`, and its output paths (reference §6.5).
 *
 * hashDerivationModulo(drv):
 * - a fixed-output derivation: sha256(`fixed:out:<r:|text:?><algo>:<hex>:<out path>`), so that changing how a
 *   fixed output is fetched does not change anything downstream;
 * - otherwise: sha256 of the ATerm with every inputDrvs key replaced by the lower-hex hashDerivationModulo
 *   of that input (with its output paths filled in), entries sorted by that hex; inputs with equal hashes
 *   merge their output names, as current Nix does.
 *
 * The input hashes come from a lookup callback, so that the caller decides
 * how to load and cache input derivations; `DerivationHasher` is such a
 * caller that loads them asynchronously and memoizes per path.
 *
 * Output paths (`computeOutputPaths`): a fixed output gets its content
 * addressed path (`source` for nar+sha256, `text` for text, `output:out`
 * otherwise, no references); input-addressed outputs get `output:<name>`
 * over hashDerivationModulo of the derivation with all output paths and
 * the env entries of the output names blanked. Each output path is also set
 * as `env[<output name>]`.
 */
import { toHex } from '../common/encoding.js';
import { atermText, writeDerivation } from './aterm.js';
import { cloneDerivation, type Derivation, type DerivationOptions, derivationReferences, fixedOutputOf } from './derivation.js';
import { NixFormatError } from './errors.js';
import { sha256 } from './hash.js';
import { nixStringToBytes } from './nix-string.js';
import {
  DEFAULT_STORE_DIR,
  fixedOutputDigest,
  makeFixedOutputStorePath,
  makeOutputStorePath,
  makeTextStorePath,
  outputPathName,
  type StorePath,
} from './store-path.js';

/** Returns the 32-byte hashDerivationModulo of the input derivation at `drvPath` (output paths filled in). */
export type HashModuloLookup = (drvPath: string) => Uint8Array;

/**
 * The `.drv` file's store path: the text path named `<name>.drv` over the
 * written ATerm, referring to inputSrcs ∪ inputDrvs.
 */
export function derivationPath(drv: Derivation, name: string, options: DerivationOptions = {}): StorePath {
  return makeTextStorePath(`${name}.drv`, writeDerivation(drv), derivationReferences(drv), options.storeDir ?? DEFAULT_STORE_DIR);
}

/** The 32-byte hashDerivationModulo; `lookup` is only called for input derivations of a non-fixed-output derivation. */
export function hashDerivationModulo(drv: Derivation, lookup: HashModuloLookup): Uint8Array {
  const ca = fixedOutputOf(drv);
  if (ca) return fixedOutputDigest(ca, drv.outputs.get('out')?.path ?? '');
  const byHash = new Map<string, Set<string>>();
  for (const [path, names] of drv.inputDrvs) {
    const hash = lookup(path);
    if (!(hash instanceof Uint8Array) || hash.byteLength !== 32) {
      throw new NixFormatError('INVALID_HASH', `hashDerivationModulo lookup for ${JSON.stringify(path)} returned no 32-byte digest`, {
        details: { path },
      });
    }
    const hex = toHex(hash);
    let merged = byHash.get(hex);
    if (!merged) byHash.set(hex, (merged = new Set()));
    for (const name of names) merged.add(name);
  }
  const entries = [...byHash].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return sha256(nixStringToBytes(atermText(drv, entries)));
}

/**
 * Returns a copy of `drv` with every output path and `env[<output>]` set, as
 * Nix's `derivationStrict` computes them. `name` is the derivation's name
 * (the `.drv` path's name without `.drv`). The paths already in `drv` are
 * ignored.
 */
export function computeOutputPaths(drv: Derivation, name: string, lookup: HashModuloLookup, options: DerivationOptions = {}): Derivation {
  const storeDir = options.storeDir ?? DEFAULT_STORE_DIR;
  const result = cloneDerivation(drv);
  const ca = fixedOutputOf(drv);
  if (ca) {
    const path = makeFixedOutputStorePath(outputPathName(name, 'out'), ca, { storeDir }).toAbsolute(storeDir);
    result.outputs.set('out', { path, ca });
    result.env.set('out', path);
    return result;
  }
  for (const [outputName, output] of result.outputs) {
    output.path = '';
    result.env.set(outputName, '');
  }
  const hashModulo = hashDerivationModulo(result, lookup);
  for (const [outputName, output] of result.outputs) {
    output.path = makeOutputStorePath(name, outputName, hashModulo, storeDir).toAbsolute(storeDir);
    result.env.set(outputName, output.path);
  }
  return result;
}

/**
 * Loads a derivation by its absolute `.drv` path. It must return the
 * derivation stored at that path (the graph is then acyclic by
 * construction); a loader that makes up a cycle makes the hasher wait forever.
 */
export type DerivationLoader = (drvPath: string) => Derivation | Promise<Derivation>;

/**
 * Computes hashDerivationModulo over a graph of derivations loaded on
 * demand, each input once (memoized by path; a failed load is retried on
 * the next call). Inputs of one derivation are loaded concurrently.
 */
export class DerivationHasher {
  private readonly cache = new Map<string, Promise<Uint8Array>>();

  constructor(
    private readonly load: DerivationLoader,
    private readonly options: DerivationOptions = {},
  ) {}

  /** hashDerivationModulo of the derivation at `drvPath`. */
  hashModulo(drvPath: string): Promise<Uint8Array> {
    let pending = this.cache.get(drvPath);
    if (!pending) {
      pending = (async () => this.hashModuloOf(await this.load(drvPath)))();
      pending.catch(() => this.cache.delete(drvPath));
      this.cache.set(drvPath, pending);
    }
    return pending;
  }

  /** hashDerivationModulo of a derivation in hand (its inputs are loaded). */
  async hashModuloOf(drv: Derivation): Promise<Uint8Array> {
    return hashDerivationModulo(drv, await this.inputLookup(drv));
  }

  /** `computeOutputPaths` with the inputs loaded. */
  async computeOutputPaths(drv: Derivation, name: string): Promise<Derivation> {
    return computeOutputPaths(drv, name, await this.inputLookup(drv), this.options);
  }

  private async inputLookup(drv: Derivation): Promise<HashModuloLookup> {
    if (fixedOutputOf(drv)) return () => new Uint8Array(0);
    const paths = [...drv.inputDrvs.keys()];
    const hashes = await Promise.all(paths.map((path) => this.hashModulo(path)));
    const byPath = new Map(paths.map((path, i) => [path, hashes[i]]));
    return (path) => byPath.get(path) as Uint8Array;
  }
}
