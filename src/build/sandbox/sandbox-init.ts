/**
 * Running a build's command under kiln-sandbox-init (kiln-sandbox-init.c),
 * so that death by a signal is told apart from an exit status: runtimes
 * report signal n as status 128+n. The program reaches the sandbox as one
 * of the command's fds (a memfd the launcher makes) and runs as
 * `/proc/self/fd/N`, so it adds nothing to the sandbox's file system; it
 * writes the command's wait status to the launcher's status pipe. It is
 * meant to be the sandbox's PID 1 and reaps orphans as one.
 */
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import type { ExitStatus, LaunchResult } from './launcher.js';
import { KILN_SANDBOX_INIT, nativeProgram } from './native-programs.js';

let program: Uint8Array | undefined;

/** The program's bytes, compiled first when missing or stale. */
function sandboxInitProgram(): Uint8Array {
  program ??= readFileSync(nativeProgram(KILN_SANDBOX_INIT));
  return program;
}

/** The fds the init takes after a runtime's own: its program and the status pipe. */
export const SANDBOX_INIT_FDS = 2;

/**
 * The command's fds 3, 4, …: the runtime's own (`runtimeFds`), then the
 * init's program; the launcher's status pipe comes right after them.
 */
export function withSandboxInit(runtimeFds: readonly Uint8Array[]): Uint8Array[] {
  return [...runtimeFds, sandboxInitProgram()];
}

/**
 * The argv that runs `commandArgs` under the init, as seen inside the
 * sandbox, when the runtime reads `runtimeFdCount` fds of its own: the
 * program and the status pipe are the two after those (`withSandboxInit`).
 */
export function underSandboxInit(commandArgs: readonly string[], runtimeFdCount: number): string[] {
  const programFd = 3 + runtimeFdCount;
  return [`/proc/self/fd/${programFd}`, String(programFd + 1), ...commandArgs];
}

/**
 * How the command ended: what the init reported, when that agrees with the
 * runtime's status (which it passes on as a shell would: status n, or
 * 128+n after signal n), else the runtime's status.
 */
export function commandExit(result: LaunchResult): ExitStatus {
  const { reported } = result;
  if (!reported) return result;
  if (reported.code !== null && result.code === reported.code) return reported;
  const signal = reported.signal === null ? undefined : constants.signals[reported.signal];
  if (signal !== undefined && result.code === 128 + signal) return reported;
  return result;
}
