/**
 * What every local sandbox backend shares, so they differ only in how they
 * start the sandbox (a `SandboxDriver`): admission, the concurrency limit,
 * a locked build user, the host layout, per-build cgroups with limits,
 * log streaming, timeouts, out-of-memory detection, cancellation, output
 * ingestion with reference scanning, and removing every trace afterwards.
 *
 * Once the sandbox is laid out, the driver's command is started through
 * the process's `kiln-launcher` (Node never forks itself for it): the child joins
 * the build's cgroups, drops to the build user and execs the command, so
 * nothing of the build ever runs outside its cgroups. A runtime that puts
 * the sandbox in the build's cgroups itself (runc) is started without
 * joining them.
 */
import { randomUUID } from 'node:crypto';
import { chmodSync, lstatSync, mkdtempSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { type BlobService, type DirectoryService, importPath, isCastoreError, type Node } from '../../castore/index.js';
import type { AbortOptions } from '../../common/abort.js';
import { AsyncQueue } from '../../common/async-queue.js';
import type { BuildEvent, BuildFailureReason } from '../build-events.js';
import type { BuildRequest } from '../build-request.js';
import { type BuildService, DEFAULT_PIDS_LIMIT, type SandboxLimits } from '../build-service.js';
import { checkConstraints } from '../constraints.js';
import { BuildError } from '../errors.js';
import { buildRequestDigest } from '../proto-convert.js';
import { type BuildUserLock, DEFAULT_BUILD_USER_COUNT, lockBuildUser } from './build-user-lock.js';
import { BuildCgroup, cgroupV1Unavailable } from './cgroup-v1.js';
import { InputsCache } from './inputs-cache.js';
import { type Launched, Launcher } from './launcher.js';
import { LogTail } from './log-tail.js';
import { commandExit } from './sandbox-init.js';
import { emptyScratchDirs, hostPathOf, prepareSandboxLayout, removeEntry, type SandboxLayout } from './sandbox-layout.js';
import { TimeLimits } from './time-limits.js';

/** Default parent of build roots and the inputs cache: build users must be able to traverse it. */
export const DEFAULT_SANDBOX_DIR = '/var/tmp/kiln-sandbox';
/** Host uids of build users start here. */
export const DEFAULT_BUILD_UID_BASE = 30_000;
/** Lines of log kept for the failure summary. */
export const LOG_TAIL_LINES = 20;
/** How often a running build's resource usage is reported (ms). */
const RESOURCES_EVERY_MS = 1000;

export interface LocalSandboxOptions extends SandboxLimits {
  blobService: BlobService;
  directoryService: DirectoryService;
  /** Parent of build roots and the inputs cache; default `DEFAULT_SANDBOX_DIR`. */
  sandboxDir?: string;
  /** First host uid of the build users; default `DEFAULT_BUILD_UID_BASE`. */
  buildUidBase?: number;
  /** Static shell bound at /bin/sh on request; default `/bin/busybox`. */
  shell?: string;
  /** Systems this builder accepts in `constraints.system`; default `hostSystems()`. */
  systems?: readonly string[];
}

/** One build, as a driver sees it. */
export interface SandboxBuild {
  readonly request: BuildRequest;
  /** A fresh directory for this build only, removed afterwards. */
  readonly buildDir: string;
  /**
   * The directory holding every build directory. What a driver keeps there
   * between builds under a name holding `buildUid` is this build's alone
   * until its `cleanup` has returned (the uid is locked until then).
   */
  readonly sandboxDir: string;
  /** The host uid and gid the sandbox's uid 1000 / gid 100 must map to. */
  readonly buildUid: number;
  /** The name of the build's cgroups, each below this process's own cgroup in its hierarchy. */
  readonly cgroupName: string;
  readonly invocationId: string;
}

/** The sandbox's command, known before its files are laid out. */
export interface SandboxCommand {
  /**
   * The command, started inside the build's cgroups with stdout and stderr
   * captured once `prepare` has returned. It reads the prepared `inputFds`
   * from fd 3, 4, … in order.
   */
  readonly argv: readonly string[];
  /** Run it as the build user (bwrap), or as root (an OCI runtime that maps ids itself). */
  readonly asBuildUser: boolean;
  /**
   * The sandbox runs the build's command under kiln-sandbox-init, which
   * writes how it ended to a status pipe the command gets at the fd after
   * its `inputFds`: death by a signal is then told apart from an exit status
   * of 128+n.
   */
  readonly reportsStatus?: boolean;
  /**
   * The command puts the sandbox in the build's cgroups (or below them)
   * itself before anything of the build runs, as runc does given
   * `cgroupName` as its cgroups path: it is then started without joining
   * them first.
   */
  readonly placesInCgroups?: boolean;
  /** Writes what the runtime needs on disk (a bundle) and returns the data for its fds and how to stop and clean up. */
  prepare(layout: SandboxLayout): Promise<SandboxLaunch>;
}

export interface SandboxLaunch {
  /** Bytes for the command's fd 3, 4, … (bwrap takes its options and seccomp program so). */
  readonly inputFds?: readonly Uint8Array[];
  /** Stops every process of the sandbox; default: SIGKILL the command's process group. */
  stop?(): Promise<void>;
  /** Removes what the runtime left behind; called once, after the command is gone (as soon as its usage is read). */
  cleanup?(): Promise<void>;
}

export interface SandboxDriver {
  /** The backend's name in events, e.g. `bwrap` or `oci(runc)`. */
  readonly name: string;
  command(build: SandboxBuild): SandboxCommand;
}

export class LocalSandboxBuildService implements BuildService {
  readonly name: string;
  readonly #driver: SandboxDriver;
  readonly #options: LocalSandboxOptions;
  readonly #sandboxDir: string;
  readonly #inputs: InputsCache;
  readonly #freeSlots: number[];
  readonly #waiters: ((slot: number) => void)[] = [];

  constructor(driver: SandboxDriver, options: LocalSandboxOptions) {
    if (process.platform !== 'linux') throw new BuildError('SANDBOX_UNAVAILABLE', `${driver.name} builds need Linux`);
    const noCgroups = cgroupV1Unavailable();
    if (noCgroups) throw new BuildError('SANDBOX_UNAVAILABLE', `${driver.name} builds need cgroups for their limits: ${noCgroups}`);
    this.name = driver.name;
    this.#driver = driver;
    this.#options = options;
    this.#sandboxDir = options.sandboxDir ?? DEFAULT_SANDBOX_DIR;
    this.#inputs = new InputsCache(join(this.#sandboxDir, 'inputs'), options);
    this.#freeSlots = Array.from({ length: options.concurrency ?? cpus().length }, (_, i) => i);
  }

  async *build(request: BuildRequest, options: AbortOptions = {}): AsyncGenerator<BuildEvent> {
    const { signal } = options;
    signal?.throwIfAborted();
    checkConstraints(request, this.#options.systems);
    const invocationId = randomUUID();
    yield { type: 'accepted', buildId: buildRequestDigest(request).toString(), invocationId, backend: this.name };
    const slot = await this.#acquire(signal);
    let buildDir: string | undefined;
    let child: Launched | undefined;
    let launch: SandboxLaunch | undefined;
    let cleaning: Promise<void> | undefined;
    let cgroup: BuildCgroup | undefined;
    let user: BuildUserLock | undefined;
    try {
      await this.#sandboxDirReady();
      const base = this.#options.buildUidBase ?? DEFAULT_BUILD_UID_BASE;
      user = await lockBuildUser(base);
      if (!user)
        throw new BuildError('SANDBOX_UNAVAILABLE', `every build user is busy (uids ${base}–${base + DEFAULT_BUILD_USER_COUNT - 1})`);
      const uid = user.uid;
      buildDir = mkdtempSync(join(this.#sandboxDir, `build-${uid}-`)); // the uid in the name: see sweepAbandonedBuildDirs
      chmodSync(buildDir, 0o711);
      const cgroupName = `kiln-${invocationId}`;
      const command = this.#driver.command({ request, buildDir, sandboxDir: this.#sandboxDir, buildUid: uid, cgroupName, invocationId });
      cgroup = await BuildCgroup.create(cgroupName, {
        pidsMax: this.#options.pidsLimit ?? DEFAULT_PIDS_LIMIT,
        ...(this.#options.memoryLimitBytes !== undefined ? { memoryLimitBytes: this.#options.memoryLimitBytes } : {}),
      });
      const layout = await this.#prepare(request, buildDir, uid, signal);
      launch = await command.prepare(layout);
      const events = new AsyncQueue<BuildEvent>();
      const tail = new LogTail(LOG_TAIL_LINES);
      const offsets = { stdout: 0, stderr: 0 };
      child = await Launcher.shared().launch({
        argv: command.argv,
        ...(command.asBuildUser ? { uid, gid: uid } : {}),
        joinCgroups: command.placesInCgroups ? [] : cgroup.tasksFiles,
        inputFds: launch.inputFds ?? [],
        statusPipe: command.reportsStatus === true,
        onOutput(stream, data) {
          events.push({ type: 'log', stream, offset: offsets[stream], data });
          offsets[stream] += data.byteLength;
          tail.add(data);
        },
      });
      const started = performance.now();
      const exited = child.exited;
      exited.then(() => events.end());
      const running = { child, launch, cgroup };
      const stop = () => void stopSandbox(running);
      signal?.addEventListener('abort', stop, { once: true });
      if (signal?.aborted) stop(); // aborted while the sandbox was being set up
      const limits = new TimeLimits(this.#options, stop);
      const sampler = new UsageSampler(cgroup, (usage) => events.push(usage));
      yield { type: 'started' };
      try {
        for await (const event of events) {
          if (event.type === 'log') limits.activity();
          yield event;
        }
      } finally {
        signal?.removeEventListener('abort', stop);
        limits.stop();
        sampler.stop();
      }
      signal?.throwIfAborted();
      const result = commandExit(await exited);
      await cgroup.killAll();
      const wallTimeMs = performance.now() - started;
      const usage = await cgroup.stats();
      // The sandbox is gone and its usage read: what the runtime left is removed while the outputs are ingested
      // (on the next turn of the event loop, while ingestion waits on the thread pool).
      const exitedLaunch = launch;
      if (exitedLaunch.cleanup) {
        cleaning = new Promise<void>((resolve, reject) => setImmediate(() => exitedLaunch.cleanup?.().then(resolve, reject)));
        cleaning.catch(() => {}); // awaited below
      }
      yield { type: 'resources', cpuTimeMs: usage.cpuTimeMs, peakMemoryBytes: usage.peakMemoryBytes };
      const ran = {
        ...(result.code !== null ? { exitCode: result.code } : {}),
        ...(result.signal ? { signal: result.signal } : {}),
      };
      const fail = (reason: BuildFailureReason, message: string, extra: { exitCode?: number; signal?: string } = ran): BuildEvent => ({
        type: 'failed',
        reason,
        message,
        ...extra,
        logTail: tail.text(),
      });
      if (limits.expired === 'timeout') {
        yield fail('timeout', `the build ran longer than ${this.#options.timeoutMs} ms and was killed`, {});
        return;
      }
      if (limits.expired === 'silence-timeout') {
        yield fail('silence-timeout', `the build wrote nothing for ${this.#options.silenceTimeoutMs} ms and was killed`, {});
        return;
      }
      if (usage.oomKilled) {
        yield fail('out-of-memory', `the build went over its memory limit of ${this.#options.memoryLimitBytes} bytes and was killed`);
        return;
      }
      if (result.code !== 0) {
        const what = result.signal ? `was killed by ${result.signal}` : `exited with status ${result.code}`;
        yield fail(result.signal ? 'signal' : 'exit-code', `the build ${what}`);
        return;
      }
      const outputs: { node: Node; needles: number[] }[] = [];
      const needles = request.refscanNeedles.map((n) => Buffer.from(n));
      for (const [index, output] of request.outputs.entries()) {
        const hostPath = hostPathOf(request, layout.scratchDirs, output);
        if (lstatSync(hostPath, { throwIfNoEntry: false }) === undefined) {
          yield fail('output-missing', `output ${output} was not produced`);
          return;
        }
        let ingested: Awaited<ReturnType<typeof importPath>>;
        try {
          ingested = await importPath(hostPath, {
            blobService: this.#options.blobService,
            directoryService: this.#options.directoryService,
            needles,
            signal,
          });
        } catch (error) {
          if (!isCastoreError(error, 'INVALID_NODE')) throw error;
          yield fail('output-invalid', `output ${output} cannot be stored: ${error.message}`);
          return;
        }
        const found = (ingested.needlesFound ?? []).flatMap((hit, i) => (hit ? [i] : []));
        outputs.push({ node: ingested.node, needles: found });
        yield { type: 'output-ingested', index, path: output, node: ingested.node, needles: found };
      }
      yield {
        type: 'finished',
        response: { outputs },
        exitCode: 0,
        wallTimeMs,
        cpuTimeMs: usage.cpuTimeMs,
        peakMemoryBytes: usage.peakMemoryBytes,
      };
    } finally {
      if (child && cgroup) await stopSandbox({ child, launch: launch ?? {}, cgroup });
      // Independent removals, at once (a runtime's own nested cgroups may go either way: both sides expect that);
      // the build user is released once what the build left in its scratch directories is gone and the driver has
      // cleaned up what it keeps for that user. (Should emptying fail, the user's next build empties them first.)
      const scratchEmptied = user ? emptyScratchDirs(this.#scratchRoot(user.uid)) : undefined;
      await Promise.all([
        Promise.all([scratchEmptied, cleaning ?? launch?.cleanup?.()]).finally(() => user?.release()),
        cgroup?.destroy(),
        buildDir && removeEntry(buildDir, true),
      ]);
      this.#release(slot);
    }
  }

  #sandboxDirMade: Promise<void> | undefined;

  /** Creates the sandbox directory (traversable by build users) once per service. */
  #sandboxDirReady(): Promise<void> {
    this.#sandboxDirMade ??= (async () => {
      await fs.mkdir(this.#sandboxDir, { recursive: true, mode: 0o711 });
      await fs.chmod(this.#sandboxDir, 0o711);
    })();
    this.#sandboxDirMade.catch(() => (this.#sandboxDirMade = undefined));
    return this.#sandboxDirMade;
  }

  /** The build user's scratch directories, kept (empty) between its builds. */
  #scratchRoot(uid: number): string {
    return join(this.#sandboxDir, 'scratch', String(uid));
  }

  async #prepare(request: BuildRequest, buildDir: string, uid: number, signal?: AbortSignal): Promise<SandboxLayout> {
    try {
      return await prepareSandboxLayout(request, buildDir, { uid, gid: uid }, this.#inputs, {
        sharedEtcRoot: join(this.#sandboxDir, 'etc'),
        scratchRoot: this.#scratchRoot(uid),
        ...(signal ? { signal } : {}),
        ...(this.#options.shell !== undefined ? { shell: this.#options.shell } : {}),
      });
    } catch (error) {
      if (!isCastoreError(error, 'NOT_FOUND')) throw error;
      throw new BuildError('INPUT_MISSING', `an input is not in the store: ${error.message}`, {
        cause: error,
        details: { field: 'inputs' },
      });
    }
  }

  #acquire(signal?: AbortSignal): Promise<number> {
    const slot = this.#freeSlots.shift();
    if (slot !== undefined) return Promise.resolve(slot);
    return new Promise((resolve, reject) => {
      const waiter = (s: number) => {
        signal?.removeEventListener('abort', onAbort);
        resolve(s);
      };
      const onAbort = () => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  #release(slot: number): void {
    const next = this.#waiters.shift();
    if (next) next(slot);
    else this.#freeSlots.push(slot);
  }

  async close(): Promise<void> {}
}

/** Ends the sandbox: the driver's way first, then every process left in the build's cgroups. */
async function stopSandbox({
  child,
  launch,
  cgroup,
}: {
  child: Launched;
  launch: Pick<SandboxLaunch, 'stop'>;
  cgroup: BuildCgroup;
}): Promise<void> {
  if (child.done) return;
  if (launch.stop) {
    await launch.stop().catch(() => {});
    if (await exitsWithin(child, 500)) return;
  }
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {}
  await cgroup.killAll();
  await exitsWithin(child, 1000);
}

function exitsWithin(child: Launched, ms: number): Promise<boolean> {
  if (child.done) return Promise.resolve(true);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  return Promise.race([child.exited.then(() => true), timeout]).finally(() => clearTimeout(timer));
}

/** Reports a running build's resource usage every `RESOURCES_EVERY_MS`. */
class UsageSampler {
  readonly #timer: NodeJS.Timeout;

  constructor(cgroup: BuildCgroup, report: (event: BuildEvent) => void) {
    this.#timer = setInterval(() => {
      cgroup.stats().then(
        (usage) => report({ type: 'resources', cpuTimeMs: usage.cpuTimeMs, peakMemoryBytes: usage.peakMemoryBytes }),
        () => {}, // the build is ending; its final usage is reported after it exits
      );
    }, RESOURCES_EVERY_MS);
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
