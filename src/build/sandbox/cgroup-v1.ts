/**
 * Per-build cgroups on a cgroup v1 host (pids, memory, cpuacct), nested
 * under the cgroups Kiln itself runs in. The build's first process joins
 * them itself before it execs the sandbox (kiln-launcher's child, still
 * root), so every process of the build is counted and limited from the
 * start. It moves itself by writing `0` to `tasks`: a single
 * thread moving itself spares the kernel the system-wide synchronisation
 * that a write to `cgroup.procs` waits for (measured: 6–20 ms per build). A sandbox runtime may put its processes in them
 * itself (runc takes them as its own) or nest cgroups of its own below;
 * limits, statistics and kills cover those too. On cgroup v1 the kernel
 * counts an OOM kill only in the victim's own cgroup, so `stats()` sums the
 * counters of the whole subtree: a runtime that nests must keep its cgroup
 * until the stats are read.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = '/sys/fs/cgroup';
const CONTROLLERS = ['pids', 'memory', 'cpuacct'] as const;
type Controller = (typeof CONTROLLERS)[number];

export interface CgroupLimits {
  readonly pidsMax: number;
  /** Bytes; undefined = no limit. */
  readonly memoryLimitBytes?: number;
}

export interface CgroupStats {
  readonly cpuTimeMs: number;
  readonly peakMemoryBytes: number;
  /** The kernel killed a process of the build for going over the memory limit. */
  readonly oomKilled: boolean;
}

/** Whether this host has the v1 controllers a build cgroup needs; otherwise the reason. */
export function cgroupV1Unavailable(): string | undefined {
  for (const controller of CONTROLLERS)
    if (!existsSync(join(ROOT, controller, 'cgroup.procs'))) return `no cgroup v1 ${controller} controller at ${ROOT}/${controller}`;
  return undefined;
}

let ownCgroups: string | undefined;

/** This process's cgroup path in one controller's hierarchy. */
function ownPath(controller: Controller): string {
  ownCgroups ??= readFileSync('/proc/self/cgroup', 'utf8');
  for (const line of ownCgroups.split('\n')) {
    const [, controllers, path] = line.split(':');
    if (controllers?.split(',').includes(controller)) return path ?? '/';
  }
  return '/';
}

export class BuildCgroup {
  readonly #dirs: Record<Controller, string>;

  private constructor(dirs: Record<Controller, string>) {
    this.#dirs = dirs;
  }

  /** Creates the cgroups and sets the limits. */
  static async create(name: string, limits: CgroupLimits): Promise<BuildCgroup> {
    const dirs = Object.fromEntries(CONTROLLERS.map((c) => [c, join(ROOT, c, ownPath(c), name)])) as Record<Controller, string>;
    const cgroup = new BuildCgroup(dirs);
    // Each of these takes the kernel microseconds: synchronous calls cost less than trips through the thread pool.
    try {
      for (const dir of Object.values(dirs)) mkdirSync(dir);
      writeFileSync(join(dirs.pids, 'pids.max'), String(limits.pidsMax));
      if (limits.memoryLimitBytes !== undefined) writeFileSync(join(dirs.memory, 'memory.limit_in_bytes'), String(limits.memoryLimitBytes));
    } catch (error) {
      await cgroup.destroy();
      throw error;
    }
    return cgroup;
  }

  /** The files the build's first process (single-threaded) writes `0` into to move itself. */
  get tasksFiles(): string[] {
    return CONTROLLERS.map((c) => join(this.#dirs[c], 'tasks'));
  }

  async stats(): Promise<CgroupStats> {
    const read = (controller: Controller, file: string) => readFileSync(join(this.#dirs[controller], file), 'utf8').trim();
    const cpuNs = Number(read('cpuacct', 'cpuacct.usage'));
    const peak = Number(read('memory', 'memory.max_usage_in_bytes'));
    let oomKills = 0;
    for (const dir of subtree(this.#dirs.memory)) {
      let oomControl = '';
      try {
        oomControl = readFileSync(join(dir, 'memory.oom_control'), 'utf8');
      } catch {}
      oomKills += Number(/oom_kill (\d+)/.exec(oomControl)?.[1] ?? 0);
    }
    return { cpuTimeMs: Math.round(cpuNs / 1e6), peakMemoryBytes: peak, oomKilled: oomKills > 0 };
  }

  /** SIGKILLs every process still in the build's pids cgroup or below it, until none is left. */
  async killAll(): Promise<void> {
    for (let round = 0; round < 50; round++) {
      const pids = this.#pids();
      if (pids.length === 0) return;
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  #pids(): number[] {
    const pids: number[] = [];
    for (const dir of subtree(this.#dirs.pids)) {
      try {
        const text = readFileSync(join(dir, 'cgroup.procs'), 'utf8');
        pids.push(...text.split('\n').filter(Boolean).map(Number));
      } catch {}
    }
    return pids;
  }

  /** Kills what is left and removes the cgroups, nested ones first. */
  async destroy(): Promise<void> {
    await this.killAll();
    for (const top of Object.values(this.#dirs)) {
      for (const dir of subtree(top).reverse()) {
        for (let attempt = 0; attempt < 50; attempt++) {
          try {
            rmdirSync(dir);
            break;
          } catch (error) {
            const code = (error as NodeJS.ErrnoException).code;
            if (code === 'ENOENT') break;
            if (code !== 'EBUSY') throw error;
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
        }
      }
    }
  }
}

/**
 * `dir` and every cgroup below it, parents before children (none when `dir`
 * is gone). A cgroup directory's link count is 2 plus its child cgroups, so
 * one without children (a build's, unless its runtime nests) is known
 * without listing its dozens of control files.
 */
function subtree(dir: string): string[] {
  const dirs: string[] = [];
  const visit = (path: string) => {
    const links = statSync(path, { throwIfNoEntry: false })?.nlink;
    if (links === undefined) return;
    dirs.push(path);
    if (links <= 2) return;
    try {
      for (const entry of readdirSync(path, { withFileTypes: true })) if (entry.isDirectory()) visit(join(path, entry.name));
    } catch {}
  };
  visit(dir);
  return dirs;
}
