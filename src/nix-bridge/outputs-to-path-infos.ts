/**
 * BuildResponse → path infos of a derivation's outputs, with the checks Nix
 * 2.8 makes before it registers outputs (`registerOutputs`, `checkOutputs`):
 *
 * - NAR hash and size of each output, streamed from the castore;
 * - references: the outputs and inputs whose hash part occurs in the
 *   output's NAR (Nix scans the NAR, so file names count too), self and
 *   sibling outputs included;
 * - no reference cycle between two outputs;
 * - a fixed output hashed `flat` (or `text`) is a non-executable regular
 *   file; its hash is the declared one (else `HASH_MISMATCH` naming both, in
 *   SRI form as Nix prints them); it refers to nothing;
 * - `allowedReferences`, `allowedRequisites`, `disallowedReferences`,
 *   `disallowedRequisites` (and, with structured attrs, `outputChecks` with
 *   `maxSize` and `maxClosureSize`).
 *
 * Nothing is written: the caller commits the result.
 */
import type { BuildResponse } from '../build/index.js';
import type { AbortOptions } from '../common/abort.js';
import {
  type ContentAddress,
  contentAddress,
  DEFAULT_STORE_DIR,
  type Derivation,
  fixedOutputOf,
  formatNixHash,
  nixHashEquals,
  parseAbsoluteStorePath,
} from '../nix/index.js';
import { type CastoreReader, hashFileNode, narDigestOfNode } from './castore-to-nar.js';
import { stringsAttrOf, structuredAttrsOf } from './derivation-environment.js';
import type { DerivationBuildRequest } from './derivation-to-build-request.js';
import { NixBridgeError } from './errors.js';
import type { PathInfo } from './path-info.js';
import type { AttrValue } from './structured-attrs.js';

export interface OutputsToPathInfosOptions extends AbortOptions {
  storeDir?: string;
  /** Path infos of the input closure (for requisite checks). */
  inputInfos?: ReadonlyMap<string, PathInfo>;
}

const byPath = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function rejected(message: string, details: Record<string, unknown> = {}): NixBridgeError {
  return new NixBridgeError('OUTPUT_REJECTED', message, { details });
}

/** Path infos of every output (output name → info), or an error naming what Nix would reject. */
export async function outputsToPathInfos(
  drv: Derivation,
  drvPath: string,
  built: DerivationBuildRequest,
  response: BuildResponse,
  castore: CastoreReader,
  options: OutputsToPathInfosOptions = {},
): Promise<Map<string, PathInfo>> {
  const storeDir = options.storeDir ?? DEFAULT_STORE_DIR;
  const { request, needlePaths, outputPaths } = built;
  const needles = request.refscanNeedles.map((n) => Buffer.from(n));
  const fixed = fixedOutputOf(drv);
  const infos = new Map<string, PathInfo>();

  for (const [name, path] of outputPaths) {
    const index = request.outputs.indexOf(path.slice(1));
    const output = response.outputs[index];
    if (!output) throw new NixBridgeError('BUILD_FAILED', `the builder returned no output for ${path}`, { details: { path } });
    const extraAlgo = fixed?.method === 'nar' && fixed.hash.algo !== 'sha256' ? fixed.hash.algo : undefined;
    const digest = await narDigestOfNode(output.node, castore, { ...options, needles, ...(extraAlgo ? { extraAlgo } : {}) });
    // The builder's scan covers contents and symlink targets; the NAR scan adds names. Both count.
    const found = new Set(output.needles);
    for (const [i, hit] of digest.found.entries()) if (hit) found.add(i);
    const references = [...new Set([...found].map((i) => needlePaths[i] as string))].sort(byPath);

    let ca: ContentAddress | undefined;
    if (fixed) {
      if (fixed.method !== 'nar' && (output.node.type !== 'file' || output.node.executable)) {
        throw rejected(
          `output path '${path}' should be a non-executable regular file since recursive hashing is not enabled (outputHashMode=flat)`,
          { path },
        );
      }
      const got =
        fixed.method === 'nar'
          ? fixed.hash.algo === 'sha256'
            ? digest.narHash
            : digest.extraHash
          : output.node.type === 'file'
            ? await hashFileNode(output.node, castore, fixed.hash.algo, options)
            : undefined;
      ca = got ? contentAddress(fixed.method, got) : undefined;
    }
    infos.set(name, {
      storePath: parseAbsoluteStorePath(path, storeDir),
      node: output.node,
      narHash: digest.narHash,
      narSize: digest.narSize,
      references,
      deriver: drvPath,
      ...(ca ? { ca } : {}),
    });
  }

  checkOutputCycles(drvPath, infos);
  checkOutputs(drv, infos, options.inputInfos ?? new Map(), storeDir);

  if (fixed) {
    const info = infos.get('out') as PathInfo;
    const got = info.ca?.hash;
    if (!got || !nixHashEquals(got, fixed.hash)) {
      const specified = formatNixHash(fixed.hash, 'sri');
      const gotText = got ? formatNixHash(got, 'sri') : '(nothing)';
      throw new NixBridgeError(
        'HASH_MISMATCH',
        `hash mismatch in fixed-output derivation '${drvPath}': specified: ${specified}, got: ${gotText}`,
        { details: { drvPath, specified, got: gotText } },
      );
    }
    if (info.references.length > 0) {
      throw rejected(`illegal path references in fixed-output derivation '${drvPath}': ${info.references.join(', ')}`, { drvPath });
    }
  }
  return infos;
}

/** Nix's topological sort of outputs by the references between them: a cycle between two outputs fails. */
function checkOutputCycles(drvPath: string, infos: ReadonlyMap<string, PathInfo>): void {
  const nameOfPath = new Map([...infos].map(([name, info]) => [info.storePath.toAbsolute(), name]));
  const visited = new Set<string>();
  const parents = new Set<string>();
  const visit = (name: string, parent: string | undefined) => {
    if (parents.has(name)) {
      throw rejected(`cycle detected in build of '${drvPath}' in the references of output '${name}' from output '${parent}'`, { drvPath });
    }
    if (visited.has(name)) return;
    visited.add(name);
    parents.add(name);
    const children = new Set<string>();
    for (const ref of infos.get(name)?.references ?? []) {
      const child = nameOfPath.get(ref);
      if (child !== undefined) children.add(child);
    }
    for (const child of [...children].sort(byPath)) if (child !== name) visit(child, name);
    parents.delete(name);
  };
  for (const name of [...infos.keys()].sort(byPath)) visit(name, undefined);
}

interface Checks {
  ignoreSelfRefs: boolean;
  maxSize?: bigint;
  maxClosureSize?: bigint;
  allowedReferences?: string[];
  allowedRequisites?: string[];
  disallowedReferences?: string[];
  disallowedRequisites?: string[];
}

/** Nix's `checkOutputs`. */
function checkOutputs(
  drv: Derivation,
  outputs: ReadonlyMap<string, PathInfo>,
  inputInfos: ReadonlyMap<string, PathInfo>,
  storeDir: string,
): void {
  const attrs = structuredAttrsOf(drv);
  const byOutputPath = new Map([...outputs.values()].map((info) => [info.storePath.toAbsolute(storeDir), info]));
  const infoOf = (path: string) => byOutputPath.get(path) ?? inputInfos.get(path);
  const closure = (root: string) => {
    const seen = new Set<string>();
    const queue = [root];
    let size = 0n;
    while (queue.length > 0) {
      const path = queue.pop() as string;
      if (seen.has(path)) continue;
      seen.add(path);
      const info = infoOf(path);
      size += BigInt(info?.narSize ?? 0);
      for (const ref of info?.references ?? []) queue.push(ref);
    }
    return { paths: seen, size };
  };

  for (const [outputName, info] of [...outputs].sort(([a], [b]) => byPath(a, b))) {
    const self = info.storePath.toAbsolute(storeDir);
    let checks: Checks | undefined;
    if (attrs) {
      const outputChecks = attrs.type === 'object' ? attrs.entries.get('outputChecks') : undefined;
      const spec = outputChecks?.type === 'object' ? outputChecks.entries.get(outputName) : undefined;
      if (spec?.type === 'object') {
        const number = (key: string) => {
          const v = spec.entries.get(key);
          return v?.type === 'integer' ? v.value : v?.type === 'float' ? BigInt(Math.trunc(v.value)) : undefined;
        };
        const strings = (key: string) => {
          const v = spec.entries.get(key);
          if (v === undefined) return undefined;
          const items: AttrValue[] = v.type === 'array' ? v.items : v.type === 'object' ? [...v.entries.values()] : [v];
          return items.map((item) => {
            if (item.type !== 'string') throw rejected(`attribute '${key}' of derivation must be a list of strings`);
            return item.value;
          });
        };
        checks = {
          ignoreSelfRefs: false,
          ...optional('maxSize', number('maxSize')),
          ...optional('maxClosureSize', number('maxClosureSize')),
          ...optional('allowedReferences', strings('allowedReferences')),
          ...optional('allowedRequisites', strings('allowedRequisites')),
          ...optional('disallowedReferences', strings('disallowedReferences')),
          ...optional('disallowedRequisites', strings('disallowedRequisites')),
        };
      }
    } else {
      checks = {
        ignoreSelfRefs: true,
        ...optional('allowedReferences', stringsAttrOf(drv, undefined, 'allowedReferences')),
        ...optional('allowedRequisites', stringsAttrOf(drv, undefined, 'allowedRequisites')),
        ...optional('disallowedReferences', stringsAttrOf(drv, undefined, 'disallowedReferences')),
        ...optional('disallowedRequisites', stringsAttrOf(drv, undefined, 'disallowedRequisites')),
      };
    }
    if (!checks) continue;
    if (checks.maxSize !== undefined && BigInt(info.narSize) > checks.maxSize) {
      throw rejected(`path '${self}' is too large at ${info.narSize} bytes; limit is ${checks.maxSize} bytes`, { path: self });
    }
    if (checks.maxClosureSize !== undefined) {
      const size = closure(self).size;
      if (size > checks.maxClosureSize) {
        throw rejected(`closure of path '${self}' is too large at ${size} bytes; limit is ${checks.maxClosureSize} bytes`, { path: self });
      }
    }
    const checkRefs = (value: string[] | undefined, allowed: boolean, recursive: boolean) => {
      if (!value) return;
      const spec = new Set<string>();
      for (const item of value) {
        const output = outputs.get(item);
        let asPath: string | undefined;
        try {
          asPath = parseAbsoluteStorePath(item, storeDir).toAbsolute(storeDir);
        } catch {}
        if (asPath) spec.add(asPath);
        else if (output) spec.add(output.storePath.toAbsolute(storeDir));
        else throw rejected(`derivation contains an illegal reference specifier '${item}'`);
      }
      const used = recursive ? closure(self).paths : new Set(info.references);
      if (recursive && checks.ignoreSelfRefs) used.delete(self);
      const bad = [...used].filter((p) => (allowed ? !spec.has(p) : spec.has(p))).sort(byPath);
      if (bad.length > 0)
        throw rejected(`output '${self}' is not allowed to refer to the following paths: ${bad.join(', ')}`, { path: self, bad });
    };
    checkRefs(checks.allowedReferences, true, false);
    checkRefs(checks.allowedRequisites, true, true);
    checkRefs(checks.disallowedReferences, false, false);
    checkRefs(checks.disallowedRequisites, false, true);
  }
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
