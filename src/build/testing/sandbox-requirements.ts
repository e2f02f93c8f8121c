/**
 * Why a bwrap build cannot run on this host, or undefined when it can: the
 * tests skip with this reason printed (CI installs everything, so nothing
 * skips there).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export function bwrapSkipReason(): string | undefined {
  if (spawnSync('bwrap', ['--version']).status !== 0) return 'bwrap is not installed';
  if (!existsSync('/bin/busybox')) return 'busybox-static is not installed';
  if (process.getuid?.() !== 0) return 'bwrap builds run as dedicated build users, which needs root';
  return undefined;
}
