/**
 * BuildRequest → bubblewrap argv: a pure function of the request and the
 * host-side layout, with no I/O. The sandbox: an empty read-only root;
 * /etc from the build root; each scratch path bound writable; each input
 * bound read-only at `/<inputsDir>/<name>` (after the scratch paths, so
 * inputs stay read-only inside a scratch path that holds `inputsDir`);
 * fresh /proc, minimal /dev, /tmp 1777; every namespace unshared (network
 * too unless the request allows it); uid 1000, gid 100, hostname
 * `localhost`, exactly the requested environment, no capabilities.
 */
import type { BuildRequest } from '../build-request.js';
import { SANDBOX_GID, SANDBOX_UID } from '../sandbox/nix-compatible-etc.js';
import { sandboxEnvironment } from '../sandbox/sandbox-environment.js';
import type { SandboxLayout } from '../sandbox/sandbox-layout.js';

/** bwrap's options and the command it runs. */
export interface BwrapInvocation {
  /**
   * Raw options: environment values are bytes that need not be UTF-8, so the
   * caller passes these NUL-separated through `--args FD`.
   */
  readonly options: (string | Uint8Array)[];
  /** `--` and the command line, passed as ordinary arguments. */
  readonly command: string[];
}

export function bwrapArgs(request: BuildRequest, layout: SandboxLayout): BwrapInvocation {
  const network = request.constraints?.networkAccess === true;
  const args: (string | Uint8Array)[] = [
    '--unshare-user',
    '--unshare-ipc',
    '--unshare-pid',
    '--unshare-uts',
    '--unshare-cgroup-try',
    ...(network ? [] : ['--unshare-net']),
    '--uid',
    String(SANDBOX_UID),
    '--gid',
    String(SANDBOX_GID),
    '--hostname',
    'localhost',
    '--die-with-parent',
    '--new-session',
    '--cap-drop',
    'ALL',
    '--clearenv',
    '--tmpfs',
    '/',
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    '--perms',
    '1777',
    '--tmpfs',
    '/tmp',
    '--ro-bind',
    layout.etcDir,
    '/etc',
  ];
  for (const [i, path] of request.scratchPaths.entries()) args.push('--bind', layout.scratchDirs[i] as string, `/${path}`);
  for (const [i, input] of request.inputs.entries()) {
    const hostPath = layout.inputPaths[i];
    if (hostPath !== undefined) args.push('--ro-bind', hostPath, `/${request.inputsDir}/${Buffer.from(input.name).toString()}`);
  }
  for (const path of request.constraints?.availableRoPaths ?? []) args.push('--ro-bind', path, path);
  for (const file of layout.extraFiles) args.push('--ro-bind', file.hostPath, file.sandboxPath);
  if (request.constraints?.provideBinSh && layout.shell) args.push('--ro-bind', layout.shell, '/bin/sh');
  for (const { key, value } of sandboxEnvironment(request)) args.push('--setenv', key, value);
  args.push('--remount-ro', '/', '--chdir', `/${request.workingDir}`);
  return { options: args, command: ['--', ...request.commandArgs] };
}
