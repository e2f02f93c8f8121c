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
export function sandboxInitProgram(): Uint8Array {
  program ??= readFileSync(nativeProgram(KILN_SANDBOX_INIT));
  return program;
}

/**
 * The argv that runs `commandArgs` under the init, as seen inside the
 * sandbox: the program at fd `programFd`, the status pipe at `statusFd`.
 */
export function underSandboxInit(commandArgs: readonly string[], programFd: number, statusFd: number): string[] {
  return [`/proc/self/fd/${programFd}`, String(statusFd), ...commandArgs];
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
