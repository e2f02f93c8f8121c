/**
 * `bwrap://`: builds in a bubblewrap sandbox. bwrap runs as the build's
 * unprivileged host user, so the sandbox's uid 1000 maps to that user and
 * never to host root; everything else is the shared local-sandbox lifecycle.
 */
import { BuildError } from '../errors.js';
import { findExecutable } from '../sandbox/find-executable.js';
import {
  LocalSandboxBuildService,
  type LocalSandboxOptions,
  type SandboxBuild,
  type SandboxCommand,
} from '../sandbox/local-sandbox-service.js';
import { underSandboxInit, withSandboxInit } from '../sandbox/sandbox-init.js';
import { seccompBpfProgram } from '../sandbox/seccomp.js';
import { bwrapArgs } from './bwrap-args.js';

export interface BwrapBuildServiceOptions extends LocalSandboxOptions {
  /** The bwrap binary; default `bwrap` on PATH. */
  bwrap?: string;
}

export class BwrapBuildService extends LocalSandboxBuildService {
  constructor(options: BwrapBuildServiceOptions) {
    const bwrap = options.bwrap ?? findExecutable('bwrap');
    if (!bwrap) throw new BuildError('SANDBOX_UNAVAILABLE', 'bwrap builds need bubblewrap (`bwrap`) on PATH');
    super({ name: 'bwrap', command: (build) => bwrapCommand(bwrap, build) }, options);
  }
}

const SECCOMP_PROGRAM = seccompBpfProgram();

function bwrapCommand(bwrap: string, { request }: SandboxBuild): SandboxCommand {
  const pwd = request.environmentVars.findIndex((e) => e.key === 'PWD');
  if (pwd >= 0 && Buffer.from(request.environmentVars[pwd]?.value ?? []).toString() !== `/${request.workingDir}`) {
    const field = `environment_vars[${pwd}].value`;
    throw new BuildError('CONSTRAINTS_UNMET', `${field}: bwrap always sets PWD to the working directory /${request.workingDir}`, {
      details: { field },
    });
  }
  return {
    // bwrap reads its options (NUL-separated raw bytes) from fd 3 and the seccomp program from fd 4; the sandbox's
    // PID 1 is kiln-sandbox-init (fd 5) instead of bwrap's own reaper: it runs the command, reaps orphans, and reports
    // how the command ended on the status pipe (fd 6).
    argv: [bwrap, '--args', '3', '--seccomp', '4', '--as-pid-1', '--', ...underSandboxInit(request.commandArgs, 2)],
    asBuildUser: true,
    reportsStatus: true,
    async prepare(layout) {
      const options = bwrapArgs(request, layout).options;
      return { inputFds: withSandboxInit([Buffer.concat(options.flatMap((a) => [Buffer.from(a), Buffer.of(0)])), SECCOMP_PROGRAM]) };
    },
  };
}
