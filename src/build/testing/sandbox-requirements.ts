/**
 * Why a sandbox backend cannot run on this host, or undefined when it can:
 * the tests skip with this reason printed (CI installs everything, so
 * nothing skips there).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

function commonSkipReason(): string | undefined {
  if (!existsSync('/bin/busybox')) return 'busybox-static is not installed';
  if (process.getuid?.() !== 0) return 'sandboxed builds run as dedicated build users, which needs root';
  return undefined;
}

export function bwrapSkipReason(): string | undefined {
  if (spawnSync('bwrap', ['--version']).status !== 0) return 'bwrap is not installed';
  return commonSkipReason();
}

export function ociSkipReason(runtime: 'runc' | 'crun'): string | undefined {
  if (spawnSync(runtime, ['--version']).status !== 0) return `${runtime} is not installed`;
  return commonSkipReason();
}

/** Containers the runtime still knows of whose bundle lies under `dir`. */
export function ociContainers(runtime: 'runc' | 'crun', dir: string): string[] {
  const list = spawnSync(runtime, ['list', '--format', 'json'], { encoding: 'utf8' });
  const containers = (JSON.parse(list.stdout.trim() || '[]') ?? []) as { id: string; bundle: string }[];
  return containers.filter((c) => c.bundle.startsWith(`${dir}/`)).map((c) => c.id);
}
