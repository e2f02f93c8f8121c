/**
 * Whether this host can meet a request's constraints: its system, its
 * memory and the read-only host paths it wants. A builder refuses a request
 * it cannot meet before running anything (`CONSTRAINTS_UNMET`, naming the
 * field).
 */
import { existsSync } from 'node:fs';
import { totalmem } from 'node:os';
import type { BuildRequest } from './build-request.js';
import { BuildError } from './errors.js';

/** The Nix-style system names this host runs natively. */
export function hostSystems(): string[] {
  switch (process.arch) {
    case 'x64':
      return ['x86_64-linux', 'i686-linux'];
    case 'arm64':
      return ['aarch64-linux'];
    default:
      return [`${process.arch}-linux`];
  }
}

export function checkConstraints(request: BuildRequest, systems: readonly string[] = hostSystems()): void {
  const c = request.constraints;
  if (!c) return;
  const unmet = (field: string, why: string) => new BuildError('CONSTRAINTS_UNMET', `${field}: ${why}`, { details: { field } });
  if (!systems.includes(c.system)) throw unmet('constraints.system', `this builder runs ${systems.join(', ')}, not ${c.system}`);
  if (c.minMemory > totalmem())
    throw unmet('constraints.min_memory', `the build needs ${c.minMemory} bytes of memory; this host has ${totalmem()}`);
  c.availableRoPaths.forEach((path, i) => {
    if (!existsSync(path)) throw unmet(`constraints.available_ro_paths[${i}]`, `${path} does not exist on this builder`);
  });
}
