/**
 * What a build server that died abruptly (SIGKILL, a crash, power loss)
 * leaves behind, and removing it when a server starts again.
 *
 * Every server keeps its event journals in a directory of its own,
 * `<journalRoot>/<pid>`. A directory whose process is gone belongs to a
 * server that did not shut down: each journal in it names a build
 * (`<invocation id>.events`) that may have been running. The sandbox's
 * processes died with the server (bubblewrap runs with --die-with-parent),
 * but its per-build cgroups (`kiln-<invocation id>`), an OCI runtime's
 * container of the same name, and its build directory stay. The build
 * directory is found through the build user: a `build-*` directory in the
 * sandbox directory whose scratch directories belong to a build user no
 * live process holds (build-user-lock.ts) is abandoned. A
 * build directory without scratch directories cannot be attributed and is
 * left alone.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';

import { buildUserHeld } from '../sandbox/build-user-lock.js';
import { emptyScratchDirs } from '../sandbox/sandbox-layout.js';

const run = promisify(execFile);
const CGROUP_ROOT = '/sys/fs/cgroup';
const CGROUP_CONTROLLERS = ['pids', 'memory', 'cpuacct'];
const OCI_RUNTIMES = ['runc', 'crun'];

export interface AbandonedBuildsSwept {
  /** Invocation ids of builds whose server died and that left cgroups or containers (gone now). */
  invocations: string[];
  /** Build directories removed. */
  buildDirs: string[];
}

/** Whether process `pid` exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** This process's cgroup path in a v1 controller's hierarchy (where a build's cgroups are made). */
function ownCgroupPath(controller: string): string {
  try {
    for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
      const [, controllers, path] = line.split(':');
      if (controllers?.split(',').includes(controller)) return path ?? '/';
    }
  } catch {
    // not Linux
  }
  return '/';
}

/** Kills every process in a cgroup and the cgroups below it, then removes them, deepest first. */
async function removeCgroup(dir: string): Promise<void> {
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) if (entry.isDirectory()) await removeCgroup(join(dir, entry.name));
  for (let attempt = 0; attempt < 20; attempt++) {
    const pids = (await fs.readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => ''))
      .split('\n')
      .filter((p) => p !== '')
      .map(Number);
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    try {
      await fs.rmdir(dir);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/** Removes the containers and cgroups of a build; whether there were any. */
async function removeInvocationLeftovers(invocationId: string): Promise<boolean> {
  const name = `kiln-${invocationId}`;
  let found = false;
  for (const runtime of OCI_RUNTIMES) {
    if (!existsSync(join('/run', runtime, name))) continue;
    found = true;
    await run(runtime, ['delete', '--force', name]).catch(() => {});
  }
  for (const controller of CGROUP_CONTROLLERS) {
    const dir = join(CGROUP_ROOT, controller, ownCgroupPath(controller), name);
    if (!existsSync(dir)) continue;
    found = true;
    await removeCgroup(dir);
  }
  return found;
}

/** The build user a build directory belongs to: named in it (`build-<uid>-…`), else the owner of its first scratch directory. */
async function buildUidOf(buildDir: string): Promise<number | undefined> {
  const named = /^build-(\d+)-/.exec(basename(buildDir))?.[1];
  if (named !== undefined) return Number(named);
  const scratch = join(buildDir, 'scratch');
  const entries = await fs.readdir(scratch).catch(() => [] as string[]);
  for (const entry of entries) {
    const stat = await fs.stat(join(scratch, entry)).catch(() => undefined);
    if (stat && stat.uid !== 0) return stat.uid;
  }
  return undefined;
}

/**
 * Removes the build directories in `sandboxDir` no live build holds (see
 * the header), and empties the kept scratch directories of build users
 * nobody holds.
 */
export async function sweepAbandonedBuildDirs(sandboxDir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const entry of await fs.readdir(join(sandboxDir, 'scratch')).catch(() => [] as string[])) {
    const uid = Number(entry);
    if (Number.isInteger(uid) && !(await buildUserHeld(uid))) await emptyScratchDirs(join(sandboxDir, 'scratch', entry));
  }
  const entries = await fs.readdir(sandboxDir).catch(() => [] as string[]);
  for (const entry of entries) {
    if (!entry.startsWith('build-')) continue;
    const dir = join(sandboxDir, entry);
    const uid = await buildUidOf(dir);
    if (uid === undefined || (await buildUserHeld(uid))) continue;
    await fs.rm(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}

/**
 * Cleans up after servers that died without shutting down: for every
 * journal directory under `journalRoot` whose server process is gone, the
 * cgroups and containers of its builds, then the directory; and, given the
 * builder's sandbox directory, the abandoned build directories in it.
 */
export async function sweepAbandonedBuilds(options: { journalRoot: string; sandboxDir?: string }): Promise<AbandonedBuildsSwept> {
  const swept: AbandonedBuildsSwept = { invocations: [], buildDirs: [] };
  const servers = await fs.readdir(options.journalRoot).catch(() => [] as string[]);
  for (const server of servers) {
    const pid = Number(server);
    if (!/^[1-9][0-9]*$/.test(server) || (pid !== process.pid && alive(pid))) continue;
    const dir = join(options.journalRoot, server);
    for (const journal of await fs.readdir(dir).catch(() => [] as string[])) {
      if (!journal.endsWith('.events')) continue;
      const invocationId = journal.slice(0, -'.events'.length);
      if (await removeInvocationLeftovers(invocationId)) swept.invocations.push(invocationId);
    }
    await fs.rm(dir, { recursive: true, force: true });
  }
  if (options.sandboxDir) swept.buildDirs = await sweepAbandonedBuildDirs(options.sandboxDir);
  return swept;
}
