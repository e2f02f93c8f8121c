/**
 * The /etc files every Kiln sandbox gets, as Nix's sandbox writes them:
 * a build user `nixbld` with uid 1000 / gid 100 whose home is the working
 * directory, and a hosts file for loopback only.
 */
export const SANDBOX_UID = 1000;
export const SANDBOX_GID = 100;

export function etcFiles(homeDir: string): Record<'passwd' | 'group' | 'hosts', string> {
  return {
    passwd: `root:x:0:0:Nix build user:${homeDir}:/noshell\nnixbld:x:${SANDBOX_UID}:${SANDBOX_GID}:Nix build user:${homeDir}:/noshell\nnobody:x:65534:65534:Nobody:/:/noshell\n`,
    group: `root:x:0:\nnixbld:!:${SANDBOX_GID}:\nnogroup:x:65534:\n`,
    hosts: '127.0.0.1 localhost\n::1 localhost\n',
  };
}
