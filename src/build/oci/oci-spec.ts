/**
 * BuildRequest → OCI runtime spec (`config.json`): a pure function of the
 * request and the host layout, with no I/O. The sandbox is the one every
 * Kiln backend gives (see build-service.ts): a read-only root, scratch paths
 * bound writable, inputs bound read-only after them, fresh /proc, minimal
 * /dev, /tmp 1777, all namespaces unshared (the network too unless the
 * request allows it), uid 1000 / gid 100, hostname `localhost`, exactly the
 * requested environment, no capabilities, no new privileges.
 *
 * A user namespace maps the sandbox's uid 1000 / gid 100 to the build's
 * unprivileged host user, and the sandbox's root (which only the runtime's
 * own set-up uses) to a second unprivileged host id: nothing in the
 * sandbox is ever host root.
 */
import type { BuildRequest } from '../build-request.js';
import { BuildError } from '../errors.js';
import { SANDBOX_GID, SANDBOX_UID } from '../sandbox/nix-compatible-etc.js';
import { sandboxEnvironment } from '../sandbox/sandbox-environment.js';
import type { SandboxLayout } from '../sandbox/sandbox-layout.js';

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

/** The subset of the runtime spec Kiln writes. */
export interface OciSpec {
  ociVersion: string;
  process: {
    terminal: false;
    user: { uid: number; gid: number; additionalGids: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: Record<'bounding' | 'effective' | 'inheritable' | 'permitted' | 'ambient', string[]>;
    noNewPrivileges: true;
  };
  root: { path: string; readonly: true };
  hostname: string;
  annotations?: Record<string, string>;
  mounts: OciMount[];
  linux: {
    uidMappings: { containerID: number; hostID: number; size: number }[];
    gidMappings: { containerID: number; hostID: number; size: number }[];
    namespaces: { type: string }[];
    maskedPaths: string[];
    readonlyPaths: string[];
    resources: { devices: { allow: boolean; access: string }[] };
    cgroupsPath?: string;
    seccomp?: unknown;
  };
}

export interface OciIds {
  /** Host uid and gid of the sandbox's uid 1000 / gid 100. */
  readonly buildUid: number;
  /** Host uid and gid of the sandbox's root. */
  readonly rootUid: number;
}

export interface OciSpecOptions {
  /** The cgroup path the runtime creates below the caller's (runc); none for a runtime that manages no cgroups. */
  readonly cgroupsPath?: string;
  /** A `linux.seccomp` profile. */
  readonly seccomp?: unknown;
  /** Runtime-specific annotations. */
  readonly annotations?: Record<string, string>;
  /** The root file system: absolute, or relative to the bundle; default `rootfs`. */
  readonly rootPath?: string;
  /** The process's argv, when it is not the request's command itself (a program that runs it); default `command_args`. */
  readonly processArgs?: readonly string[];
}

/** Mounts that go on top of the root file system, in order (every destination needs a mount point). */
export function ociMounts(request: BuildRequest, layout: SandboxLayout): OciMount[] {
  const bind = (source: string, destination: string, mode: 'ro' | 'rw'): OciMount => ({
    destination,
    type: 'bind',
    source,
    options: ['rbind', mode, 'nosuid', 'nodev'],
  });
  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'],
    },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] },
    bind(layout.etcDir, '/etc', 'ro'),
  ];
  for (const [i, path] of request.scratchPaths.entries()) mounts.push(bind(layout.scratchDirs[i] as string, `/${path}`, 'rw'));
  for (const [i, input] of request.inputs.entries()) {
    const hostPath = layout.inputPaths[i];
    if (hostPath !== undefined) mounts.push(bind(hostPath, `/${request.inputsDir}/${Buffer.from(input.name).toString()}`, 'ro'));
  }
  for (const path of request.constraints?.availableRoPaths ?? []) mounts.push(bind(path, path, 'ro'));
  for (const file of layout.extraFiles) mounts.push(bind(file.hostPath, file.sandboxPath, 'ro'));
  if (request.constraints?.provideBinSh && layout.shell) mounts.push(bind(layout.shell, '/bin/sh', 'ro'));
  return mounts;
}

export function ociSpec(request: BuildRequest, layout: SandboxLayout, ids: OciIds, options: OciSpecOptions = {}): OciSpec {
  const network = request.constraints?.networkAccess === true;
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: SANDBOX_UID, gid: SANDBOX_GID, additionalGids: [] },
      args: [...(options.processArgs ?? request.commandArgs)],
      env: sandboxEnvironment(request).map(({ key, value }, i) => `${key}=${utf8(value, `environment_vars[${i}].value`)}`),
      cwd: `/${request.workingDir}`,
      capabilities: { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] },
      noNewPrivileges: true,
    },
    root: { path: options.rootPath ?? 'rootfs', readonly: true },
    hostname: 'localhost',
    ...(options.annotations ? { annotations: options.annotations } : {}),
    mounts: ociMounts(request, layout),
    linux: {
      uidMappings: [
        { containerID: 0, hostID: ids.rootUid, size: 1 },
        { containerID: SANDBOX_UID, hostID: ids.buildUid, size: 1 },
      ],
      gidMappings: [
        { containerID: 0, hostID: ids.rootUid, size: 1 },
        { containerID: SANDBOX_GID, hostID: ids.buildUid, size: 1 },
      ],
      namespaces: ['pid', 'ipc', 'uts', 'mount', 'user', 'cgroup', ...(network ? [] : ['network'])].map((type) => ({ type })),
      maskedPaths: [
        '/proc/acpi',
        '/proc/asound',
        '/proc/kcore',
        '/proc/keys',
        '/proc/latency_stats',
        '/proc/timer_list',
        '/proc/timer_stats',
        '/proc/sched_debug',
        '/proc/scsi',
        '/sys/firmware',
      ],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      ...(options.cgroupsPath !== undefined ? { cgroupsPath: options.cgroupsPath } : {}),
      ...(options.seccomp !== undefined ? { seccomp: options.seccomp } : {}),
    },
  };
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** config.json is JSON, and OCI runtimes read its strings as UTF-8: other bytes cannot be passed faithfully. */
function utf8(bytes: Uint8Array, field: string): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new BuildError('CONSTRAINTS_UNMET', `${field} is not UTF-8, which an OCI runtime cannot pass on unchanged; use bwrap://`, {
      details: { field },
    });
  }
}
