/**
 * Build users shared by every Kiln process on the host: a build takes the
 * lowest host uid in `[base, base + count)` whose lock file it can create
 * (O_EXCL) under `lockDir`; a lock whose owner process is gone is taken over.
 * So two builds never run as the same host user, whichever process runs them.
 */
import * as fs from 'node:fs/promises';
import { join } from 'node:path';

/** How many build uids exist from the base. */
export const DEFAULT_BUILD_USER_COUNT = 64;

export interface BuildUserLock {
  readonly uid: number;
  release(): Promise<void>;
}

export async function lockBuildUser(lockDir: string, base: number, count = DEFAULT_BUILD_USER_COUNT): Promise<BuildUserLock | undefined> {
  await fs.mkdir(lockDir, { recursive: true, mode: 0o700 });
  for (let uid = base; uid < base + count; uid++) {
    const path = join(lockDir, `uid-${uid}`);
    if ((await tryCreate(path)) || ((await isStale(path)) && (await takeOver(path)))) {
      return { uid, release: () => fs.rm(path, { force: true }) };
    }
  }
  return undefined;
}

async function tryCreate(path: string): Promise<boolean> {
  try {
    await fs.writeFile(path, String(process.pid), { flag: 'wx' });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

async function isStale(path: string): Promise<boolean> {
  const pid = Number(await fs.readFile(path, 'utf8').catch(() => ''));
  if (!Number.isInteger(pid) || pid <= 0) return true;
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/**
 * Replaces a stale lock and reads it back. Two processes taking over the same
 * stale lock in the same instant could both read their own pid back (the
 * window is a rename and a read); live locks are never taken.
 */
async function takeOver(path: string): Promise<boolean> {
  const mine = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}`;
  await fs.writeFile(mine, String(process.pid));
  await fs.rename(mine, path);
  return (await fs.readFile(path, 'utf8').catch(() => '')) === String(process.pid);
}
