/**
 * The BuildRequest contract: a generic, Nix-unaware description of one
 * build, and its validation. A builder exposes `inputs` read-only under
 * `inputsDir`, runs `commandArgs` in `workingDir` with exactly
 * `environmentVars`, lets the build write only below `scratchPaths`, and
 * ingests each of `outputs` into the castore, scanning it for
 * `refscanNeedles`. Depends on castore's domain types only.
 *
 * Paths are strings relative to the sandbox root (except
 * `availableRoPaths`, which are absolute host paths). "Clean" means: no
 * empty, `.` or `..` component, no leading or trailing `/`.
 */
import type { Node, PathComponent } from '../castore/index.js';
import { compareBytes } from '../common/encoding.js';
import { invalidRequest } from './errors.js';

/** An input tree exposed read-only at `<inputsDir>/<name>`. */
export interface BuildInput {
  readonly name: PathComponent;
  readonly node: Node;
}

export interface EnvVar {
  /** Not empty; no `=` or NUL. */
  readonly key: string;
  /** Raw bytes; no NUL. */
  readonly value: Uint8Array;
}

/** A small file written into the sandbox before the build starts. */
export interface AdditionalFile {
  /** Clean relative path, outside `inputsDir`. */
  readonly path: string;
  readonly contents: Uint8Array;
}

/** What the builder must provide. */
export interface BuildConstraints {
  /** The platform the build targets, e.g. `x86_64-linux`; never empty. */
  readonly system: string;
  /** Bytes of memory the builder must have (an admission check); 0 = no requirement. */
  readonly minMemory: number;
  /** Absolute, clean host paths bound read-only at the same place; sorted. */
  readonly availableRoPaths: readonly string[];
  /** Whether the build may reach the network (otherwise: loopback only). */
  readonly networkAccess: boolean;
  /** Whether `/bin/sh` must exist in the sandbox. */
  readonly provideBinSh: boolean;
}

export interface BuildRequest {
  /** Strictly sorted by name. */
  readonly inputs: readonly BuildInput[];
  /** argv; the first element is the program (looked up as given, no PATH search by Kiln). */
  readonly commandArgs: readonly string[];
  /** cwd relative to the root; `''` is the root itself. */
  readonly workingDir: string;
  /** Writable directories; clean, non-empty, sorted. */
  readonly scratchPaths: readonly string[];
  /** Where the inputs appear; clean relative. */
  readonly inputsDir: string;
  /** Paths to collect; clean, sorted, each below a scratch path. */
  readonly outputs: readonly string[];
  /** The complete environment; sorted by key. */
  readonly environmentVars: readonly EnvVar[];
  /** Absent means no constraints. */
  readonly constraints?: BuildConstraints;
  /** Sorted by path. */
  readonly additionalFiles: readonly AdditionalFile[];
  /** Byte strings every output is scanned for. */
  readonly refscanNeedles: readonly string[];
}

/** Clean: no empty, `.` or `..` components, no leading/trailing `/`. `''` is clean. */
export function isCleanRelativePath(path: string): boolean {
  if (path === '') return true;
  if (path.includes('\0')) return false;
  return path.split('/').every((c) => c !== '' && c !== '.' && c !== '..');
}

/** `/` or `/` followed by a clean relative path. */
export function isCleanAbsolutePath(path: string): boolean {
  return path === '/' || (path.startsWith('/') && path.length > 1 && isCleanRelativePath(path.slice(1)));
}

/** Whether `path` equals `prefix` or lies below it, by whole components. */
export function isPathWithin(path: string, prefix: string): boolean {
  return prefix === '' || path === prefix || path.startsWith(`${prefix}/`);
}

/** The scratch path an output lives in: the last (deepest) one containing it. */
export function scratchPathFor(request: Pick<BuildRequest, 'scratchPaths'>, output: string): string | undefined {
  for (let i = request.scratchPaths.length - 1; i >= 0; i--) {
    const scratch = request.scratchPaths[i] as string;
    if (isPathWithin(output, scratch)) return scratch;
  }
  return undefined;
}

const utf8 = (s: string) => Buffer.from(s, 'utf8');

function checkSorted(list: readonly string[], field: string, strict = false): void {
  for (let i = 1; i < list.length; i++) {
    const order = compareBytes(utf8(list[i - 1] as string), utf8(list[i] as string));
    if (order > 0 || (strict && order === 0)) {
      throw invalidRequest(`${field}[${i}]`, `${JSON.stringify(list[i])} is ${order === 0 ? 'a duplicate' : 'not sorted'}`);
    }
  }
}

function checkRelative(path: string, field: string, allowEmpty: boolean): void {
  if (!allowEmpty && path === '') throw invalidRequest(field, 'is empty');
  if (!isCleanRelativePath(path)) throw invalidRequest(field, `${JSON.stringify(path)} is not a clean relative path`);
}

/**
 * Checks every rule of the contract and throws `BuildError('INVALID_REQUEST')`
 * naming the first offending field (e.g. `scratch_paths[1]`). Field names
 * are the wire names, so a message reads the same whatever the front end.
 */
export function validateBuildRequest(request: BuildRequest): BuildRequest {
  for (let i = 1; i < request.inputs.length; i++) {
    if (compareBytes((request.inputs[i - 1] as BuildInput).name, (request.inputs[i] as BuildInput).name) >= 0) {
      throw invalidRequest(
        `inputs[${i}]`,
        `${JSON.stringify(Buffer.from((request.inputs[i] as BuildInput).name).toString())} is not sorted by name or is a duplicate`,
      );
    }
  }
  if (request.commandArgs.length === 0) throw invalidRequest('command_args', 'is empty');
  request.commandArgs.forEach((arg, i) => {
    if (arg.includes('\0')) throw invalidRequest(`command_args[${i}]`, 'contains NUL');
  });
  checkRelative(request.workingDir, 'working_dir', true);
  for (const [i, p] of request.scratchPaths.entries()) checkRelative(p, `scratch_paths[${i}]`, false);
  checkSorted(request.scratchPaths, 'scratch_paths');
  checkRelative(request.inputsDir, 'inputs_dir', true);
  if (request.inputs.length > 0 && request.inputsDir === '') throw invalidRequest('inputs_dir', 'is empty but there are inputs');
  request.outputs.forEach((p, i) => {
    checkRelative(p, `outputs[${i}]`, false);
    if (!scratchPathFor(request, p)) throw invalidRequest(`outputs[${i}]`, `${JSON.stringify(p)} is not inside any scratch path`);
    if (p === request.inputsDir || isPathWithin(request.inputsDir, p))
      throw invalidRequest(`outputs[${i}]`, `${JSON.stringify(p)} would hide inputs_dir`);
  });
  checkSorted(request.outputs, 'outputs');
  request.environmentVars.forEach(({ key, value }, i) => {
    if (key === '') throw invalidRequest(`environment_vars[${i}].key`, 'is empty');
    if (key.includes('=') || key.includes('\0'))
      throw invalidRequest(`environment_vars[${i}].key`, `${JSON.stringify(key)} contains "=" or NUL`);
    if (value.includes(0)) throw invalidRequest(`environment_vars[${i}].value`, `of ${JSON.stringify(key)} contains NUL`);
  });
  checkSorted(
    request.environmentVars.map((e) => e.key),
    'environment_vars',
  );
  const constraints = request.constraints;
  if (constraints) {
    if (constraints.system === '') throw invalidRequest('constraints.system', 'is empty');
    constraints.availableRoPaths.forEach((p, i) => {
      if (!isCleanAbsolutePath(p))
        throw invalidRequest(`constraints.available_ro_paths[${i}]`, `${JSON.stringify(p)} is not a clean absolute path`);
    });
    checkSorted(constraints.availableRoPaths, 'constraints.available_ro_paths');
  }
  request.additionalFiles.forEach(({ path }, i) => {
    checkRelative(path, `additional_files[${i}].path`, false);
    if (request.inputsDir !== '' && isPathWithin(path, request.inputsDir))
      throw invalidRequest(`additional_files[${i}].path`, `${JSON.stringify(path)} is inside inputs_dir`);
  });
  checkSorted(
    request.additionalFiles.map((f) => f.path),
    'additional_files',
  );
  return request;
}
