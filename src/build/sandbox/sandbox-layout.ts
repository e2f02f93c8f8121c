/**
 * The host side of a build's sandbox, the same for every backend: one
 * writable directory per scratch path (owned by the build user; under the
 * build directory, or kept empty between builds in a directory of the build
 * user's own); additional files outside the scratch paths (under the build
 * directory); `/etc` (shared by every build that gets the same files, or the
 * build's own when additional files go there); and the materialized inputs
 * (shared, from the inputs cache).
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import * as fs from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { AbortOptions } from '../../common/abort.js';
import { type BuildRequest, scratchPathFor } from '../build-request.js';
import type { InputsCache } from './inputs-cache.js';
import { etcFiles } from './nix-compatible-etc.js';

export interface SandboxLayout {
  /** Host directory holding passwd, group and hosts (read-only: shared by builds). */
  readonly etcDir: string;
  /** Host directory for each scratch path, in request order. */
  readonly scratchDirs: readonly string[];
  /**
   * Host path to bind read-only at each input's place, in request order;
   * undefined for an input already in place: a file input whose place lies
   * in a scratch directory is hard-linked there instead (as Nix does), which
   * spares the sandbox a mount and the file system a mount-point inode.
   */
  readonly inputPaths: readonly (string | undefined)[];
  /** Additional files that lie outside every scratch path: bound read-only at `sandboxPath`. */
  readonly extraFiles: readonly { readonly hostPath: string; readonly sandboxPath: string }[];
  /** Host path of the static shell bound at /bin/sh when the request asks for it. */
  readonly shell?: string;
}

/** Host /etc files a build with network access gets. */
export const NETWORK_ETC_FILES = ['resolv.conf', 'services'];

/** The default static shell, when the host has one. */
export const DEFAULT_SHELL = '/bin/busybox';

export async function prepareSandboxLayout(
  request: BuildRequest,
  buildDir: string,
  owner: { uid: number; gid: number },
  inputs: InputsCache,
  options: AbortOptions & {
    shell?: string;
    sharedEtcRoot?: string;
    /** The build user's own directory for scratch directories, kept (emptied) from one build to the next. */
    scratchRoot?: string;
  } = {},
): Promise<SandboxLayout> {
  // A few tiny files and directories: synchronous calls cost less than trips through the thread pool.
  const ownEtc = request.additionalFiles.some((file) => file.path.startsWith('etc/') && scratchPathFor(request, file.path) === undefined);
  const etcDir = ownEtc || !options.sharedEtcRoot ? writeEtc(request, join(buildDir, 'etc')) : sharedEtc(request, options.sharedEtcRoot);
  const scratchRoot = options.scratchRoot ?? join(buildDir, 'scratch');
  const scratchDirs = keptScratchDirs(scratchRoot, request.scratchPaths.length, owner);
  const extraFiles: { hostPath: string; sandboxPath: string }[] = [];
  for (const [i, file] of request.additionalFiles.entries()) {
    const inScratch = scratchPathFor(request, file.path) !== undefined;
    // /etc is the build's own directory: files for it go straight in; others are bound at their path.
    const inEtc = !inScratch && file.path.startsWith('etc/');
    const target = inScratch
      ? hostPathOf(request, scratchDirs, file.path)
      : inEtc
        ? join(etcDir, file.path.slice('etc/'.length))
        : join(buildDir, 'files', String(i));
    await mkdirOwned(dirname(target), inScratch ? owner : undefined);
    await fs.writeFile(target, file.contents, { mode: 0o644 });
    if (inScratch) await fs.chown(target, owner.uid, owner.gid);
    else if (!inEtc) extraFiles.push({ hostPath: target, sandboxPath: `/${file.path}` });
  }
  const inputPaths: (string | undefined)[] = [];
  for (const { name, node } of request.inputs) {
    const place = `${request.inputsDir}/${Buffer.from(name).toString()}`;
    const linked =
      node.type === 'file' &&
      scratchPathFor(request, place) !== undefined &&
      (await linkIntoScratch(request, scratchDirs, await inputs.linkSourceOf(node, options), place, owner));
    inputPaths.push(linked ? undefined : await inputs.pathOf(node, options));
  }
  const shell = options.shell ?? (existsSync(DEFAULT_SHELL) ? DEFAULT_SHELL : undefined);
  return { etcDir, scratchDirs, inputPaths, extraFiles, ...(shell ? { shell } : {}) };
}

/** The /etc files of a build (with the host's name resolution when it has the network, as Nix gives fixed-output derivations). */
function etcContents(request: BuildRequest): [string, string | Uint8Array][] {
  const files: [string, string | Uint8Array][] = Object.entries(etcFiles(`/${request.workingDir}`));
  if (request.constraints?.networkAccess)
    for (const name of NETWORK_ETC_FILES) if (existsSync(`/etc/${name}`)) files.push([name, readFileSync(`/etc/${name}`)]);
  return files;
}

/** Writes a build's /etc into `dir` (which must not exist). */
function writeEtc(request: BuildRequest, dir: string): string {
  mkdirSync(dir, { mode: 0o755 });
  for (const [name, content] of etcContents(request)) writeFileSync(join(dir, name), content, { mode: 0o444 });
  return dir;
}

/**
 * A read-only /etc shared by every build that gets the same files, named by
 * their digest under `root`: written once (whole, then renamed into place),
 * so a build makes and removes none of it.
 */
function sharedEtc(request: BuildRequest, root: string): string {
  const files = etcContents(request);
  const digest = createHash('sha256');
  for (const [name, content] of files) digest.update(`${name}\0${Buffer.byteLength(content)}\0`).update(content);
  const dir = join(root, digest.digest('hex').slice(0, 32));
  if (existsSync(dir)) return dir;
  mkdirSync(root, { recursive: true, mode: 0o755 });
  const temporary = writeEtc(request, join(root, `.tmp-${randomBytes(6).toString('hex')}`));
  try {
    renameSync(temporary, dir);
  } catch (error) {
    rmSync(temporary, { recursive: true, force: true });
    // Another build wrote the same files first.
    if (!['EEXIST', 'ENOTEMPTY'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
  }
  return dir;
}

/**
 * `count` empty directories `0`, `1`, … under `root`, owned by `owner`:
 * those left by an earlier build are emptied (whatever it left in them or
 * did to them) rather than made anew; others there are removed.
 */
function keptScratchDirs(root: string, count: number, owner: { uid: number; gid: number }): string[] {
  if (mkdirSync(root, { recursive: true, mode: 0o755 }) !== undefined) chmodSync(dirname(root), 0o711);
  const dirs = Array.from({ length: count }, (_, i) => join(root, String(i)));
  for (const entry of readdirSync(root)) {
    const index = Number(entry);
    if (!(Number.isInteger(index) && index >= 0 && index < count && entry === String(index)))
      rmSync(join(root, entry), { recursive: true, force: true });
  }
  for (const dir of dirs) {
    try {
      emptyDirectory(dir);
      chmodSync(dir, 0o755);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOTDIR') rmSync(dir, { force: true });
      else if (code !== 'ENOENT') throw error;
      mkdirSync(dir, { mode: 0o755 });
    }
    chownSync(dir, owner.uid, owner.gid);
  }
  return dirs;
}

/** Removes what `dir` holds, keeping `dir` itself (ENOENT when there is no such directory). */
function emptyDirectory(dir: string): void {
  for (const entry of readdirSync(dir)) rmSync(join(dir, entry), { recursive: true, force: true });
}

/**
 * Empties the scratch directories under `root` a build left (kept for the
 * next build of its user), through the thread pool: removing even a few
 * entries can take a millisecond of file-system work that the event loop
 * need not wait for.
 */
export async function emptyScratchDirs(root: string): Promise<void> {
  let dirs: string[];
  try {
    dirs = await fs.readdir(root);
  } catch {
    return;
  }
  await Promise.all(
    dirs.map(async (dir) => {
      const entries = await fs.readdir(join(root, dir), { withFileTypes: true }).catch(() => []);
      await Promise.all(entries.map((entry) => removeEntry(join(root, dir, entry.name), entry.isDirectory())));
    }),
  );
}

/**
 * Removes a file or directory tree: the common cases (a file, an empty
 * directory such as a mount point) with one call each, rather than `rm`'s
 * checks before it.
 */
export async function removeEntry(path: string, isDirectory: boolean): Promise<void> {
  try {
    await (isDirectory ? fs.rmdir(path) : fs.unlink(path));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (!['ENOTEMPTY', 'EEXIST', 'EISDIR', 'ENOTDIR', 'EPERM'].includes(code ?? '')) throw error;
    await fs.rm(path, { recursive: true, force: true });
  }
}

/**
 * Hard-links the file input at `hostPath` to its `place` (in a scratch
 * directory); false when the link cannot be made (another file system, too
 * many links): the input is then bound instead. The link stays read-only to
 * the build: the file is not the build user's and has no write permission
 * (the store and the inputs cache write it so).
 */
async function linkIntoScratch(
  request: BuildRequest,
  scratchDirs: readonly string[],
  hostPath: string,
  place: string,
  owner: { uid: number; gid: number },
): Promise<boolean> {
  const target = hostPathOf(request, scratchDirs, place);
  try {
    await mkdirOwned(dirname(target), owner);
    linkSync(hostPath, target);
    return true;
  } catch (error) {
    if (['EXDEV', 'EMLINK', 'EPERM', 'EEXIST'].includes((error as NodeJS.ErrnoException).code ?? '')) return false;
    throw error;
  }
}

/** Creates `dir` and its missing parents, giving the new ones to `owner`. */
async function mkdirOwned(dir: string, owner?: { uid: number; gid: number }): Promise<void> {
  if (existsSync(dir)) return;
  await mkdirOwned(dirname(dir), owner);
  await fs.mkdir(dir, { mode: 0o755 });
  if (owner) await fs.chown(dir, owner.uid, owner.gid);
}

/** The host path of `path` (inside a scratch path) in the build's scratch directories. */
export function hostPathOf(request: Pick<BuildRequest, 'scratchPaths'>, scratchDirs: readonly string[], path: string): string {
  const scratch = scratchPathFor(request, path);
  if (scratch === undefined) throw new Error(`${path} is outside every scratch path`);
  const dir = scratchDirs[request.scratchPaths.indexOf(scratch)] as string;
  return path === scratch ? dir : join(dir, path.slice(scratch === '' ? 0 : scratch.length + 1));
}
