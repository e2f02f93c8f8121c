/**
 * Derivation → BuildRequest (reference §5, Snix's `derivation_to_build_request`),
 * with Nix 2.8's observable behaviour where the two differ (see
 * derivation-environment.ts). Pure: the caller supplies the castore nodes of
 * the whole input closure.
 *
 * The request:
 * - `inputs`: every path of the input closure, named by its base name, sorted;
 * - `command_args`: the builder (as is), then the arguments with output placeholders replaced;
 * - `working_dir` `build`; `scratch_paths` `build` and `nix/store` (builds may write stray files
 *   into the store, as in Nix); `inputs_dir` the store directory without its leading `/`;
 * - `outputs`: each output path without the leading `/`, sorted (the BuildRequest rule);
 * - `environment_vars`: Nix's sandbox environment, sorted by key bytes;
 * - `additional_files`: `build/<file>` for passAsFile, structured attrs and exportReferencesGraph;
 * - `constraints`: the derivation's system, `/bin/sh` (unless turned off), and network access for
 *   fixed-output derivations (as Nix, which runs them in the host's network namespace);
 * - `refscan_needles`: the hash parts of the outputs in output-name order, then of the inputs in
 *   store path order; `needlePaths` maps them back.
 */
import type { AdditionalFile, BuildInput, BuildRequest, EnvVar } from '../build/index.js';
import { type Node, parsePathComponent } from '../castore/index.js';
import { compareBytes } from '../common/encoding.js';
import {
  compareStorePaths,
  DEFAULT_STORE_DIR,
  type Derivation,
  isFixedOutput,
  nixStringToBytes,
  parseAbsoluteStorePath,
  type StorePath,
} from '../nix/index.js';
import { type DerivationEnvironmentOptions, derivationEnvironment, SANDBOX_BUILD_DIR } from './derivation-environment.js';
import { NixBridgeError } from './errors.js';

export interface DerivationToBuildRequestOptions extends DerivationEnvironmentOptions {
  /** Bind a static shell at `/bin/sh` (default true, as Snix and Nix builds whose `sandbox-paths` provide one). */
  provideBinSh?: boolean;
}

/** A BuildRequest and how its parts map back to the derivation. */
export interface DerivationBuildRequest {
  readonly request: BuildRequest;
  /** `needlePaths[i]` is the absolute store path whose hash part is `request.refscanNeedles[i]`. */
  readonly needlePaths: readonly string[];
  /** Output name → absolute output path, in output-name order. */
  readonly outputPaths: ReadonlyMap<string, string>;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function utf8Only(bytes: Uint8Array, what: string): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new NixBridgeError(
      'DERIVATION_REJECTED',
      `${what} is not valid UTF-8, which a BuildRequest cannot carry: ${JSON.stringify(Buffer.from(bytes).toString())}`,
      { details: { field: what } },
    );
  }
}

/** The BuildRequest of `drv` (output paths filled in); `inputs` maps every absolute store path of the input closure to its node. */
export function derivationToBuildRequest(
  drv: Derivation,
  inputs: ReadonlyMap<string, Node>,
  options: DerivationToBuildRequestOptions,
): DerivationBuildRequest {
  const storeDir = options.storeDir ?? DEFAULT_STORE_DIR;
  const inputsDir = storeDir.slice(1);
  const { env, files, args } = derivationEnvironment(drv, options);

  const outputNames = [...drv.outputs.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const outputPaths = new Map<string, string>();
  for (const name of outputNames) {
    const path = (drv.outputs.get(name) as { path: string }).path;
    if (path === '')
      throw new NixBridgeError('INVALID_DERIVATION', `output ${name} has no path`, { details: { field: `outputs.${name}` } });
    outputPaths.set(name, path);
  }

  const inputPaths: StorePath[] = [...inputs.keys()].map((p) => parseAbsoluteStorePath(p, storeDir)).sort(compareStorePaths);
  const buildInputs: BuildInput[] = inputPaths
    .map((p) => ({ name: parsePathComponent(p.baseName), node: inputs.get(p.toAbsolute(storeDir)) as Node }))
    .sort((a, b) => compareBytes(a.name, b.name));

  const environmentVars: EnvVar[] = [...env.keys()]
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((key) => ({ key: utf8Only(Buffer.from(key, 'latin1'), `environment variable name ${key}`), value: env.get(key) as Uint8Array }));
  const additionalFiles: AdditionalFile[] = [...files]
    .map(([name, contents]) => ({ path: `${SANDBOX_BUILD_DIR.slice(1)}/${name}`, contents }))
    .sort((a, b) => compareBytes(Buffer.from(a.path), Buffer.from(b.path)));

  const needlePaths = [...outputPaths.values(), ...inputPaths.map((p) => p.toAbsolute(storeDir))];
  const request: BuildRequest = {
    inputs: buildInputs,
    commandArgs: [utf8Only(nixStringToBytes(drv.builder), 'builder'), ...args.map((arg, i) => utf8Only(arg, `args[${i}]`))],
    workingDir: SANDBOX_BUILD_DIR.slice(1),
    scratchPaths: ['build', inputsDir].sort(),
    inputsDir,
    outputs: [...outputPaths.values()].map((p) => p.slice(1)).sort(),
    environmentVars,
    constraints: {
      system: utf8Only(nixStringToBytes(drv.system), 'system'),
      minMemory: 0,
      availableRoPaths: [],
      networkAccess: isFixedOutput(drv),
      provideBinSh: options.provideBinSh ?? true,
    },
    additionalFiles,
    refscanNeedles: needlePaths.map((p) => parseAbsoluteStorePath(p, storeDir).hashPart),
  };
  return { request, needlePaths, outputPaths };
}
