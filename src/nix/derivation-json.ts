/**
 * The JSON form of a derivation, as `nix show-derivation` (Nix 2.8) prints
 * it and as the `.drv.json` fixtures hold it:
 *
 * ```json
 * { "outputs": { "out": { "path": "/nix/store/…-bar", "hashAlgo": "r:sha256", "hash": "<hex>" } },
 *   "inputSrcs": ["/nix/store/…"], "inputDrvs": { "/nix/store/…-foo.drv": ["out"] },
 *   "system": "x86_64-linux", "builder": "…", "args": ["…"], "env": { "out": "/nix/store/…-bar" } }
 * ```
 *
 * `nix show-derivation` wraps it in an object keyed by the `.drv` path
 * (`showDerivationJson`). Writing is lossy for Nix strings that are not
 * UTF-8: each such byte prints as U+FFFD, as Nix prints it.
 *
 * Reading accepts what Nix and Snix accept: `hash` in base16, nixbase32 or
 * base64 (chosen by length; `hash` and `hashAlgo` both present or both
 * absent); also the newer Nix shapes (`"method": "nar"` with a bare
 * `hashAlgo`, and inputDrvs values `{ "outputs": [...], "dynamicOutputs": {} }`).
 * All seven keys are required; unknown keys are ignored. The result is validated like a parsed ATerm;
 * failures are `INVALID_DERIVATION` naming the field.
 */
import { toHex } from '../common/encoding.js';
import { type ContentAddressMethod, contentAddress, formatMethodAlgo, parseMethodAlgo } from './content-address.js';
import {
  compareNixStrings,
  type Derivation,
  type DerivationOutput,
  type ValidateDerivationOptions,
  validateDerivation,
} from './derivation.js';
import { NixFormatError } from './errors.js';
import { parseHashAlgorithm, parseNixHash } from './hash.js';
import { nixStringToDisplay } from './nix-string.js';

export interface DerivationOutputJson {
  path: string;
  /** `[r:|text:]<algo>`; only on a fixed output. */
  hashAlgo?: string;
  /** Lower-case hex; only on a fixed output. */
  hash?: string;
}

export interface DerivationJson {
  outputs: Record<string, DerivationOutputJson>;
  inputSrcs: string[];
  inputDrvs: Record<string, string[]>;
  system: string;
  builder: string;
  args: string[];
  env: Record<string, string>;
}

const byString = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** The JSON object, keys in the order Nix prints them and every map sorted. */
export function derivationToJson(drv: Derivation): DerivationJson {
  const outputs = [...drv.outputs].sort(([a], [b]) => byString(a, b));
  return {
    outputs: Object.fromEntries(
      outputs.map(([name, output]): [string, DerivationOutputJson] => [
        name,
        output.ca
          ? { path: output.path, hashAlgo: formatMethodAlgo(output.ca.method, output.ca.hash.algo), hash: toHex(output.ca.hash.digest) }
          : { path: output.path },
      ]),
    ),
    inputSrcs: [...drv.inputSrcs].sort(byString),
    inputDrvs: Object.fromEntries(
      [...drv.inputDrvs].sort(([a], [b]) => byString(a, b)).map(([path, names]) => [path, [...names].sort(compareNixStrings)]),
    ),
    system: nixStringToDisplay(drv.system),
    builder: nixStringToDisplay(drv.builder),
    args: drv.args.map(nixStringToDisplay),
    env: Object.fromEntries(
      [...drv.env].sort(([a], [b]) => compareNixStrings(a, b)).map(([key, value]) => [nixStringToDisplay(key), nixStringToDisplay(value)]),
    ),
  };
}

/** `nix show-derivation`'s shape: `{ "<drv path>": <derivation JSON> }`. */
export function showDerivationJson(drvPath: string, drv: Derivation): Record<string, DerivationJson> {
  return Object.fromEntries([[drvPath, derivationToJson(drv)]]);
}

function invalid(field: string, reason: string, cause?: unknown): NixFormatError {
  return new NixFormatError('INVALID_DERIVATION', `invalid derivation JSON: ${field}: ${reason}`, { cause, details: { field } });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function object(value: unknown, field: string): Record<string, unknown> {
  if (!isObject(value)) throw invalid(field, 'expected an object');
  return value;
}

function string(value: unknown, field: string): string {
  if (typeof value !== 'string') throw invalid(field, 'expected a string');
  return value;
}

function strings(value: unknown, field: string): string[] {
  if (!Array.isArray(value)) throw invalid(field, 'expected an array of strings');
  return value.map((v, i) => string(v, `${field}[${i}]`));
}

function uniqueSet(values: string[], field: string): Set<string> {
  const set = new Set<string>();
  for (const value of values) {
    if (set.has(value)) throw invalid(field, `duplicate ${JSON.stringify(value)}`);
    set.add(value);
  }
  return set;
}

function parseOutputJson(name: string, value: unknown): DerivationOutput {
  const field = `outputs.${name}`;
  const output = object(value, field);
  const path = string(output.path, `${field}.path`);
  const hasAlgo = output.hashAlgo !== undefined;
  if (hasAlgo !== (output.hash !== undefined)) throw invalid(field, 'hash and hashAlgo must be both present or both absent');
  if (!hasAlgo) return { path };
  const hashAlgo = string(output.hashAlgo, `${field}.hashAlgo`);
  const hashText = string(output.hash, `${field}.hash`);
  try {
    let method: ContentAddressMethod;
    let algo: ReturnType<typeof parseHashAlgorithm>;
    if (output.method !== undefined) {
      const m = string(output.method, `${field}.method`);
      if (m !== 'flat' && m !== 'nar' && m !== 'text') throw invalid(`${field}.method`, `unsupported method ${JSON.stringify(m)}`);
      method = m;
      algo = parseHashAlgorithm(hashAlgo);
    } else {
      ({ method, algo } = parseMethodAlgo(hashAlgo));
    }
    return { path, ca: contentAddress(method, parseNixHash(hashText, algo)) };
  } catch (error) {
    if (error instanceof NixFormatError && error.code === 'INVALID_DERIVATION') throw error;
    throw invalid(field, (error as Error).message, error);
  }
}

/** Parses the JSON value of one derivation (not the show-derivation wrapper) and validates it. */
export function derivationFromJson(json: unknown, options: ValidateDerivationOptions = {}): Derivation {
  const root = object(json, 'derivation');
  const outputs = new Map<string, DerivationOutput>();
  for (const [name, value] of Object.entries(object(root.outputs, 'outputs'))) outputs.set(name, parseOutputJson(name, value));
  const inputDrvs = new Map<string, Set<string>>();
  for (const [path, value] of Object.entries(object(root.inputDrvs, 'inputDrvs'))) {
    const field = `inputDrvs[${JSON.stringify(path)}]`;
    let names: unknown = value;
    if (isObject(value)) {
      const dynamic = value.dynamicOutputs;
      if (dynamic !== undefined && !(isObject(dynamic) && Object.keys(dynamic).length === 0))
        throw invalid(field, 'dynamic outputs are not supported');
      names = value.outputs;
    }
    inputDrvs.set(path, uniqueSet(strings(names, field), field));
  }
  const drv: Derivation = {
    outputs,
    inputDrvs,
    inputSrcs: uniqueSet(strings(root.inputSrcs, 'inputSrcs'), 'inputSrcs'),
    system: string(root.system, 'system'),
    builder: string(root.builder, 'builder'),
    args: strings(root.args, 'args'),
    env: new Map(Object.entries(object(root.env, 'env')).map(([key, value]) => [key, string(value, `env[${JSON.stringify(key)}]`)])),
  };
  validateDerivation(drv, options);
  return drv;
}

/** Parses `nix show-derivation` output: every `.drv` path with its derivation. */
export function derivationsFromShowDerivationJson(json: unknown, options: ValidateDerivationOptions = {}): Map<string, Derivation> {
  const result = new Map<string, Derivation>();
  for (const [path, value] of Object.entries(object(json, 'show-derivation'))) result.set(path, derivationFromJson(value, options));
  return result;
}
