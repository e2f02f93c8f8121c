/**
 * `oci://?runtime=runc|crun`: builds in an OCI container. Each build gets a
 * bundle (config.json from oci-spec.ts) in its build directory; the root file
 * system, holding only mount points, is kept per build user in the sandbox
 * directory, and of its mount points only those the request names are made
 * and removed for each build. The runtime runs as root but maps every id of
 * the sandbox to unprivileged host ids in a user namespace.
 *
 * Both runtimes put the container in the build's cgroups: runc, started
 * from Kiln's own cgroups, takes the build's (their name as its relative
 * cgroups path) as its own, places the container in them itself and keeps
 * them after the container exits (`--keep`, so the build's OOM count can be
 * read) until they are removed; crun, whose cgroup manager is disabled,
 * starts inside them. crun refuses a host whose cgroup v2 hierarchy is mounted beside
 * v1 ("hybrid" mode), so it starts in a private mount namespace without it.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type BuildRequest, isPathWithin } from '../build-request.js';
import { BuildError } from '../errors.js';
import { findExecutable } from '../sandbox/find-executable.js';
import { Launcher } from '../sandbox/launcher.js';
import {
  LocalSandboxBuildService,
  type LocalSandboxOptions,
  type SandboxBuild,
  type SandboxCommand,
} from '../sandbox/local-sandbox-service.js';
import { SANDBOX_INIT_FDS, underSandboxInit, withSandboxInit } from '../sandbox/sandbox-init.js';
import { hostPathOf, type SandboxLayout } from '../sandbox/sandbox-layout.js';
import { ociSeccompProfile, seccompBpfProgram } from '../sandbox/seccomp.js';
import { ociSpec } from './oci-spec.js';

export type OciRuntime = 'runc' | 'crun';

export interface OciBuildServiceOptions extends LocalSandboxOptions {
  runtime: OciRuntime;
  /** The runtime binary; default the runtime's name on PATH. */
  runtimePath?: string;
  /** Where bundles are written; default the build's own directory. */
  bundleRoot?: string;
  /** Host ids for the sandbox's root are the build user's plus this; default `ROOT_UID_OFFSET`. */
  rootUidOffset?: number;
}

/** The sandbox's root maps to the build user's host uid plus this (e.g. 30001 → 40001). */
export const ROOT_UID_OFFSET = 10_000;

/**
 * The seccomp filter refusing setuid/setgid modes: runc compiles the profile
 * with its libseccomp; crun takes Kiln's own program as is, the same bytes
 * bwrap loads.
 */
const SECCOMP_PROFILE = ociSeccompProfile();
const CRUN_SECCOMP = { 'run.oci.seccomp_bpf_data': seccompBpfProgram().toString('base64') };
/** The fds the runtime passes to the container's process: kiln-sandbox-init's (the runtime reads none of its own). */
const PRESERVED_FDS = String(SANDBOX_INIT_FDS);

const CRUN_PRELUDE = '{ ! mountpoint -q /sys/fs/cgroup/unified || umount /sys/fs/cgroup/unified; } && exec "$@"';

/**
 * `argv` (a crun command) run where crun accepts this host: in a private
 * mount namespace without the cgroup v2 hierarchy that a cgroup v1 host
 * mounts beside v1 ("hybrid" mode, which crun 1.8 refuses).
 */
export function withoutHybridCgroups(argv: readonly string[]): string[] {
  return ['unshare', '-m', '--propagation', 'private', '/bin/sh', '-c', CRUN_PRELUDE, 'kiln-crun', ...argv];
}

export class OciBuildService extends LocalSandboxBuildService {
  constructor(options: OciBuildServiceOptions) {
    const runtime = options.runtimePath ?? findExecutable(options.runtime);
    if (!runtime) throw new BuildError('SANDBOX_UNAVAILABLE', `oci builds with ${options.runtime} need \`${options.runtime}\` on PATH`);
    if (process.getuid?.() !== 0) throw new BuildError('SANDBOX_UNAVAILABLE', 'oci builds need root (the runtime maps ids itself)');
    const driver = new OciDriver(options.runtime, runtime, options);
    super({ name: `oci(${options.runtime})`, command: (build) => driver.command(build) }, options);
  }
}

class OciDriver {
  readonly #runtime: OciRuntime;
  readonly #binary: string;
  readonly #options: OciBuildServiceOptions;

  constructor(runtime: OciRuntime, binary: string, options: OciBuildServiceOptions) {
    this.#runtime = runtime;
    this.#binary = binary;
    this.#options = options;
  }

  command(build: SandboxBuild): SandboxCommand {
    const { request, buildUid, invocationId } = build;
    const id = `kiln-${invocationId}`;
    // config.json goes in the build's own directory (or a bundle root); the root file system, mount points only, is
    // kept per build user between builds, so the standard mount points are not made and removed for every build.
    const bundle = this.#options.bundleRoot ? join(this.#options.bundleRoot, id) : build.buildDir;
    const rootfs = join(build.sandboxDir, 'rootfs', String(buildUid));
    const runtime = this.#runtime;
    const binary = this.#binary;
    const options = this.#options;
    return {
      // The container's process is kiln-sandbox-init running the command (its program at fd 3, its status pipe fd 4).
      argv:
        runtime === 'crun'
          ? withoutHybridCgroups([binary, '--cgroup-manager=disabled', 'run', '--preserve-fds', PRESERVED_FDS, '--bundle', bundle, id])
          : [binary, 'run', '--keep', '--preserve-fds', PRESERVED_FDS, '--bundle', bundle, id],
      asBuildUser: false,
      reportsStatus: true,
      placesInCgroups: runtime === 'runc',
      async prepare(layout) {
        const spec = ociSpec(
          request,
          layout,
          { buildUid, rootUid: buildUid + (options.rootUidOffset ?? ROOT_UID_OFFSET) },
          {
            rootPath: rootfs,
            processArgs: underSandboxInit(request.commandArgs, 0),
            ...(runtime === 'runc' ? { cgroupsPath: build.cgroupName, seccomp: SECCOMP_PROFILE } : { annotations: CRUN_SECCOMP }),
          },
        );
        // A few tiny files and directories: synchronous calls cost less than trips through the thread pool.
        const rootfsMountPoints = new Map<string, boolean>();
        for (const mount of spec.mounts) {
          const isFile = mount.type === 'bind' && statSync(mount.source).isFile();
          const inScratch = mount.options.includes('rw') ? undefined : scratchHostPath(request, layout, mount.destination);
          if (inScratch === undefined) {
            if (mount.destination !== '/') rootfsMountPoints.set(mount.destination.slice(1), isFile);
          } else makeMountPoint(inScratch, isFile);
        }
        const requestMountPoints = layOutRootfs(rootfs, rootfsMountPoints);
        const removeRequestMountPoints = () => removeEntries(rootfs, requestMountPoints);
        try {
          if (options.bundleRoot) mkdirSync(bundle, { recursive: true, mode: 0o711 });
          writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
        } catch (error) {
          removeRequestMountPoints();
          throw error;
        }
        return {
          inputFds: withSandboxInit([]),
          // runc is asked to kill its container, then the default stop (kill the command's process group and every
          // process in the build's cgroups) follows; that default alone reaches a crun container.
          ...(runtime === 'runc' ? { stop: () => runQuietly(binary, ['kill', '--all', id, 'KILL']) } : {}),
          cleanup: async () => {
            removeRequestMountPoints();
            await removeContainer(runtime, binary, id);
            if (options.bundleRoot) await fs.rm(bundle, { recursive: true, force: true });
          },
        };
      },
    };
  }
}

/** Mount points of every build (or of many): they stay in a build user's root file system from one build to the next. */
const STANDARD_MOUNT_POINTS = new Set(['proc', 'dev', 'dev/pts', 'dev/shm', 'tmp', 'etc', 'bin', 'bin/sh']);

/**
 * Makes `rootfs` hold exactly the mount points `wanted` (relative path →
 * whether it is a file) and their parent directories, creating what is
 * missing and removing whatever else an earlier build left (only an
 * interrupted one leaves more than the standard mount points). Returns the
 * entries it created that the request named, parents first, for removal
 * after the build.
 */
function layOutRootfs(rootfs: string, wanted: ReadonlyMap<string, boolean>): string[] {
  const kinds = new Map<string, 'file' | 'directory'>();
  for (const [path, isFile] of wanted) {
    if (!kinds.has(path)) kinds.set(path, isFile ? 'file' : 'directory');
    for (let parent = dirname(path); parent !== '.'; parent = dirname(parent)) kinds.set(parent, 'directory');
  }
  const present = new Set<string>();
  const prune = (dir: string, prefix: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = prefix + entry.name;
      const kind = kinds.get(path);
      if (kind === 'directory' && entry.isDirectory()) {
        present.add(path);
        prune(join(dir, entry.name), `${path}/`);
      } else if (kind === 'file' && entry.isFile()) present.add(path);
      else rmSync(join(dir, entry.name), { recursive: true, force: true });
    }
  };
  // Only build users' roots may traverse the directory of root file systems.
  if (mkdirSync(rootfs, { recursive: true, mode: 0o755 }) !== undefined) chmodSync(dirname(rootfs), 0o711);
  prune(rootfs, '');
  const created: string[] = [];
  try {
    // Sorted, a directory comes before what it holds.
    for (const path of [...kinds.keys()].sort()) {
      if (present.has(path)) continue;
      const target = join(rootfs, path);
      if (kinds.get(path) === 'file') writeFileSync(target, '', { mode: 0o444 });
      else {
        mkdirSync(target, { mode: 0o755 });
        if (path === 'tmp') chmodSync(target, 0o1777);
      }
      if (!STANDARD_MOUNT_POINTS.has(path)) created.push(path);
    }
  } catch (error) {
    removeEntries(rootfs, created);
    throw error;
  }
  return created;
}

/** Removes `entries` (relative to `dir`, parents first) and anything below them. */
function removeEntries(dir: string, entries: readonly string[]): void {
  for (const path of [...entries].reverse()) {
    try {
      rmdirSync(join(dir, path)); // most are empty directories: one call
    } catch {
      rmSync(join(dir, path), { recursive: true, force: true });
    }
  }
}

/**
 * Forgets a container that has exited. For a stopped runc container that
 * is its state directory and its (empty) cgroups, the build's own among
 * them (whose removal tolerates this), which Kiln removes itself, sparing a `runc delete` process per build (with synchronous
 * calls: a dozen tiny removals cost less than trips through the thread
 * pool); anything else, or anything that will not go, is left to
 * `delete --force`.
 */
async function removeContainer(runtime: OciRuntime, binary: string, id: string): Promise<void> {
  const stateDir = join('/run', runtime, id);
  if (!existsSync(stateDir)) return;
  if (runtime === 'runc') {
    try {
      const state = JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as { cgroup_paths?: Record<string, string> };
      for (const path of new Set(Object.values(state.cgroup_paths ?? {}))) {
        if (!path.startsWith('/sys/fs/cgroup/')) continue;
        try {
          rmdirSync(path);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        }
      }
      rmSync(stateDir, { recursive: true, force: true });
      return;
    } catch {
      // fall through to the runtime
    }
  }
  await runQuietly(binary, ['delete', '--force', id]);
}

/** The host path behind a sandbox path that lies in a scratch path, if it does. */
function scratchHostPath(request: BuildRequest, layout: SandboxLayout, sandboxPath: string): string | undefined {
  const relative = sandboxPath.slice(1);
  if (!request.scratchPaths.some((scratch) => isPathWithin(relative, scratch))) return undefined;
  return hostPathOf(request, layout.scratchDirs, relative);
}

/**
 * Creates a mount point in the scratch directory the mount lands in (the
 * runtime, unprivileged in its user namespace, could not create it there).
 */
function makeMountPoint(target: string, isFile: boolean): void {
  if (existsSync(target)) return;
  mkdirSync(isFile ? dirname(target) : target, { recursive: true, mode: 0o755 });
  if (isFile) writeFileSync(target, '', { mode: 0o444 });
}

/** Runs the runtime to its end, ignoring its output and failures (through the launcher: Node does not fork). */
async function runQuietly(binary: string, args: string[]): Promise<void> {
  try {
    await (await Launcher.shared().launch({ argv: [binary, ...args] })).exited;
  } catch {}
}
