/**
 * The environment a build's command starts with, the same on every backend:
 * exactly the request's variables, plus `PWD` and `HOME` set to the working
 * directory when the request sets neither. Nix's sandbox sets both itself;
 * bubblewrap always sets PWD, and OCI runtimes set HOME from /etc/passwd
 * (whose home for uid 1000 is the working directory), so Kiln defines them
 * rather than let them differ.
 */
import type { BuildRequest, EnvVar } from '../build-request.js';

export function sandboxEnvironment(request: Pick<BuildRequest, 'environmentVars' | 'workingDir'>): EnvVar[] {
  const defaults = ['HOME', 'PWD']
    .filter((key) => !request.environmentVars.some((e) => e.key === key))
    .map((key) => ({ key, value: new TextEncoder().encode(`/${request.workingDir}`) }));
  return [...request.environmentVars, ...defaults];
}
