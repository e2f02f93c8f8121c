/**
 * The Nix derivation: the model shared by the ATerm (`aterm.ts`) and JSON
 * (`derivation-json.ts`) forms, its validation rules, and its store path.
 *
 * Strings. Every free-text field (system, builder, args, env keys and values)
 * is a Nix string: bytes, held in the byte-preserving form of
 * `nix-string.ts` (well-formed UTF-8 as text, other bytes as lone surrogates
 * U+DC80–U+DCFF). Use `nixStringToBytes` for the exact bytes, e.g. to build a
 * sandbox environment. Store paths and output names are ASCII by rule.
 *
 * Paths are absolute strings in one store directory (`/nix/store` unless a
 * `storeDir` option says otherwise), exactly as the ATerm holds them.
 *
 * Collections are Maps and Sets: their order carries no meaning, every
 * writer sorts (outputs and env keys by bytes, inputDrvs and inputSrcs by
 * store path order, inputDrv output names by bytes).
 *
 * Supported outputs are input-addressed (a path) and fixed (a path and a
 * content address: `flat`, `nar` or `text`). Floating content-addressed and
 * impure outputs (a `hashAlgo` without a `hash`) are rejected.
 */
import type { ContentAddress } from './content-address.js';
import { NixFormatError } from './errors.js';
import { hashDigestLength } from './hash.js';
import { nixStringToBytes } from './nix-string.js';
import { DEFAULT_STORE_DIR, isValidStorePathName, parseAbsoluteStorePath, type StorePath, validateStoreDir } from './store-path.js';

export interface DerivationOutput {
  /** Absolute store path; `""` while not yet computed (see `computeOutputPaths`). */
  path: string;
  /** Set on a fixed output: how its content must hash. */
  ca?: ContentAddress;
}

export interface Derivation {
  /** Output name → output. At least one; a fixed output is the only one and is named `out`. */
  outputs: Map<string, DerivationOutput>;
  /** Absolute `.drv` path → the names of the outputs used from it (at least one). */
  inputDrvs: Map<string, Set<string>>;
  /** Absolute store paths used as sources. */
  inputSrcs: Set<string>;
  /** Nix string, not empty (e.g. `x86_64-linux`). */
  system: string;
  /** Nix string, not empty: the program to run. */
  builder: string;
  /** Nix strings: the builder's arguments. */
  args: string[];
  /** Nix string → Nix string; keys not empty. Holds `out` etc. once output paths are computed. */
  env: Map<string, string>;
}

export interface DerivationOptions {
  /** The store directory every path must lie in; default `/nix/store`. */
  storeDir?: string;
}

export interface ValidateDerivationOptions extends DerivationOptions {
  /** Require every output path to be set (default true); false accepts the blanked form used before computing them. */
  requireOutputPaths?: boolean;
}

/** True when the derivation has exactly one output, `out`, with a content address. */
export function isFixedOutput(drv: Derivation): boolean {
  return drv.outputs.size === 1 && drv.outputs.get('out')?.ca !== undefined;
}

/** The content address of a fixed-output derivation, else undefined. */
export function fixedOutputOf(drv: Derivation): ContentAddress | undefined {
  return drv.outputs.size === 1 ? drv.outputs.get('out')?.ca : undefined;
}

function invalid(field: string, reason: string, cause?: unknown): NixFormatError {
  return new NixFormatError('INVALID_DERIVATION', `invalid derivation: ${field}: ${reason}`, { cause, details: { field } });
}

function checkPath(field: string, path: string, storeDir: string): StorePath {
  try {
    return parseAbsoluteStorePath(path, storeDir);
  } catch (error) {
    throw invalid(field, (error as Error).message, error);
  }
}

function checkNixString(field: string, value: string): void {
  if (!/[\ud800-\udfff]/.test(value)) return;
  try {
    nixStringToBytes(value);
  } catch (error) {
    throw invalid(field, (error as Error).message, error);
  }
}

/** Output names: valid store path name characters, not `drv` (it would clash with the `.drv` file). */
function checkOutputName(field: string, name: string): void {
  if (name === '' || name === 'drv' || !isValidStorePathName(name)) throw invalid(field, `invalid output name ${JSON.stringify(name)}`);
}

/**
 * Checks the rules of Nix and Snix (reference §6.3) and throws
 * `INVALID_DERIVATION` naming the field: at least one output; valid output
 * names; a fixed output alone and named `out`, its digest matching its
 * algorithm; output paths, inputDrvs (ending in `.drv`, with valid output
 * names) and inputSrcs valid store paths in `storeDir`; system and builder
 * not empty; env keys not empty; every string encodable.
 */
export function validateDerivation(drv: Derivation, options: ValidateDerivationOptions = {}): void {
  const storeDir = validateStoreDir(options.storeDir ?? DEFAULT_STORE_DIR);
  const requirePaths = options.requireOutputPaths ?? true;
  if (drv.outputs.size === 0) throw invalid('outputs', 'no outputs');
  for (const [name, output] of drv.outputs) {
    const field = `outputs.${name}`;
    checkOutputName(field, name);
    if (output.ca) {
      if (drv.outputs.size !== 1 || name !== 'out') throw invalid(field, 'a fixed output must be the only output and be named "out"');
      if (output.ca.hash.digest.byteLength !== hashDigestLength(output.ca.hash.algo)) {
        throw invalid(`${field}.hash`, `digest length ${output.ca.hash.digest.byteLength} does not match ${output.ca.hash.algo}`);
      }
      if (output.ca.method === 'text' && output.ca.hash.algo !== 'sha256') throw invalid(`${field}.hashAlgo`, 'text hashing needs sha256');
    }
    if (output.path === '') {
      if (requirePaths) throw invalid(`${field}.path`, 'missing output path');
    } else {
      checkPath(`${field}.path`, output.path, storeDir);
    }
  }
  for (const [path, names] of drv.inputDrvs) {
    const field = `inputDrvs[${JSON.stringify(path)}]`;
    if (!checkPath(field, path, storeDir).name.endsWith('.drv')) throw invalid(field, 'not a .drv path');
    if (names.size === 0) throw invalid(field, 'no output names');
    for (const name of names) checkOutputName(field, name);
  }
  for (const path of drv.inputSrcs) checkPath(`inputSrcs[${JSON.stringify(path)}]`, path, storeDir);
  if (drv.system === '') throw invalid('system', 'empty');
  checkNixString('system', drv.system);
  if (drv.builder === '') throw invalid('builder', 'empty');
  checkNixString('builder', drv.builder);
  drv.args.forEach((arg, i) => {
    checkNixString(`args[${i}]`, arg);
  });
  for (const [key, value] of drv.env) {
    if (key === '') throw invalid('env', 'empty key');
    checkNixString('env key', key);
    checkNixString(`env[${JSON.stringify(key)}]`, value);
  }
}

/** The references of a `.drv` file: inputSrcs ∪ inputDrvs paths. */
export function derivationReferences(drv: Derivation): string[] {
  return [...new Set([...drv.inputSrcs, ...drv.inputDrvs.keys()])].sort();
}

/** A derivation's name from its `.drv` path (`/nix/store/…-hello.drv` → `hello`). */
export function derivationNameFromPath(drvPath: string | StorePath, options: DerivationOptions = {}): string {
  const path = typeof drvPath === 'string' ? parseAbsoluteStorePath(drvPath, options.storeDir ?? DEFAULT_STORE_DIR) : drvPath;
  if (!path.name.endsWith('.drv') || path.name.length === 4) {
    throw new NixFormatError('INVALID_STORE_PATH', `${JSON.stringify(path.baseName)} is not a derivation path`, {
      details: { path: path.baseName },
    });
  }
  return path.name.slice(0, -4);
}

/** A deep copy, so that callers can change it without touching the original. */
export function cloneDerivation(drv: Derivation): Derivation {
  return {
    outputs: new Map([...drv.outputs].map(([name, output]) => [name, { ...output }])),
    inputDrvs: new Map([...drv.inputDrvs].map(([path, names]) => [path, new Set(names)])),
    inputSrcs: new Set(drv.inputSrcs),
    system: drv.system,
    builder: drv.builder,
    args: [...drv.args],
    env: new Map(drv.env),
  };
}

/** Byte order of two Nix strings (what every writer sorts env keys and names by). */
export function compareNixStrings(a: string, b: string): number {
  if (/^[\x00-\x7f]*$/.test(a) && /^[\x00-\x7f]*$/.test(b)) return a < b ? -1 : a > b ? 1 : 0;
  return Buffer.compare(nixStringToBytes(a), nixStringToBytes(b));
}
