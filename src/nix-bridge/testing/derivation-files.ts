/**
 * Writing `.drv` files for tests: a derivation described by its parts gets
 * its output paths (and `env[<output>]`) computed as Nix would, and is
 * written as `<dir>/<hash>-<name>.drv`, the name its contents give.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  contentAddress,
  type Derivation,
  DerivationHasher,
  derivationPath,
  type HashAlgorithm,
  hashBytes,
  parseDerivation,
  writeDerivation,
} from '../../nix/index.js';

export interface TestDerivation {
  name: string;
  builder: string;
  args?: string[];
  /** Extra env entries (`name`, `builder`, `system` and the outputs are added). */
  env?: Record<string, string>;
  /** Output names (default `["out"]`). */
  outputs?: string[];
  inputSrcs?: string[];
  /** Input `.drv` path → output names. */
  inputDrvs?: Record<string, string[]>;
  /** Makes it a fixed-output derivation whose `out` must hash to this content. */
  fixed?: { method: 'flat' | 'nar'; algo: HashAlgorithm; contents?: Uint8Array; hash?: Uint8Array };
  system?: string;
}

/** Writes the derivation into `dir`; returns its `.drv` path and the derivation with output paths. */
export async function writeTestDerivation(dir: string, spec: TestDerivation): Promise<{ drvPath: string; drv: Derivation }> {
  const system = spec.system ?? 'x86_64-linux';
  const outputs = spec.outputs ?? ['out'];
  const ca = spec.fixed
    ? contentAddress(
        spec.fixed.method,
        spec.fixed.hash
          ? { algo: spec.fixed.algo, digest: spec.fixed.hash }
          : hashBytes(spec.fixed.algo, spec.fixed.contents ?? new Uint8Array()),
      )
    : undefined;
  const drv: Derivation = {
    outputs: new Map(outputs.map((o) => [o, ca ? { path: '', ca } : { path: '' }])),
    inputDrvs: new Map(Object.entries(spec.inputDrvs ?? {}).map(([path, names]) => [path, new Set(names)])),
    inputSrcs: new Set(spec.inputSrcs ?? []),
    system,
    builder: spec.builder,
    args: spec.args ?? [],
    env: new Map([
      ['builder', spec.builder],
      ['name', spec.name],
      ['system', system],
      ...(outputs.length > 1 ? [['outputs', outputs.join(' ')] as [string, string]] : []),
      ...Object.entries(spec.env ?? {}),
    ]),
  };
  const hasher = new DerivationHasher(async (path) => parseDerivation(await readDrv(dir, path)));
  const withPaths = await hasher.computeOutputPaths(drv, spec.name);
  const drvPath = derivationPath(withPaths, spec.name).toAbsolute();
  await writeFile(join(dir, drvPath.slice('/nix/store/'.length)), writeDerivation(withPaths));
  return { drvPath, drv: withPaths };
}

async function readDrv(dir: string, drvPath: string): Promise<Uint8Array> {
  const { readFile } = await import('node:fs/promises');
  return readFile(join(dir, drvPath.slice('/nix/store/'.length)));
}
