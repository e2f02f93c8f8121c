/**
 * Build users shared by every Kiln process on the host: a build takes the
 * lowest host uid in `[base, base + count)` nobody else holds. The lock on
 * uid N is a listening Unix socket in the abstract namespace,
 * `@kiln-build-user-N`: the kernel lets one socket hold a name, and frees it
 * when its process exits however it exits, so a lock is never stale and
 * two processes can never both take one (lock files needed a takeover of
 * stale locks, racy when two processes tried it at once). The name is per
 * host uid, not per sandbox directory, as the uid is what must not be
 * shared. Abstract names belong to a network namespace: Kiln processes
 * sharing build uids must share one (as processes on a host do).
 */
import { createServer, type Server } from 'node:net';

/** How many build uids exist from the base. */
export const DEFAULT_BUILD_USER_COUNT = 64;

export interface BuildUserLock {
  readonly uid: number;
  release(): Promise<void>;
}

/** The abstract socket name that locks build uid `uid`. */
function lockName(uid: number): string {
  return `\0kiln-build-user-${uid}`;
}

/** Listens on `name`, or resolves to undefined when another socket holds it. */
function tryListen(name: string): Promise<Server | undefined> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) => (error.code === 'EADDRINUSE' ? resolve(undefined) : reject(error)));
    server.listen(name, () => {
      server.unref(); // a held lock does not keep the process alive
      resolve(server);
    });
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

export async function lockBuildUser(base: number, count = DEFAULT_BUILD_USER_COUNT): Promise<BuildUserLock | undefined> {
  for (let uid = base; uid < base + count; uid++) {
    const server = await tryListen(lockName(uid));
    if (server) return { uid, release: () => close(server) };
  }
  return undefined;
}

/** Whether some live process (this one included) holds build uid `uid`. */
export async function buildUserHeld(uid: number): Promise<boolean> {
  const server = await tryListen(lockName(uid));
  if (!server) return true;
  await close(server);
  return false;
}
