/**
 * The BuildRequest most tests and benches need: `/bin/sh -c SCRIPT` in
 * `/build` with `/nix/store` writable, `$out` = `/nix/store/out` as the one
 * output, busybox as `/bin/sh`; `extra` and `constraints` override parts.
 */
import type { BuildRequest } from '../build-request.js';

export function shellBuildRequest(
  script: string,
  extra: Partial<BuildRequest> = {},
  constraints: Partial<NonNullable<BuildRequest['constraints']>> = {},
): BuildRequest {
  return {
    inputs: [],
    commandArgs: ['/bin/sh', '-c', script],
    workingDir: 'build',
    scratchPaths: ['build', 'nix/store'],
    inputsDir: 'nix/store',
    outputs: ['nix/store/out'],
    environmentVars: [{ key: 'out', value: new TextEncoder().encode('/nix/store/out') }],
    constraints: { system: 'x86_64-linux', minMemory: 0, availableRoPaths: [], networkAccess: false, provideBinSh: true, ...constraints },
    additionalFiles: [],
    refscanNeedles: [],
    ...extra,
  };
}
