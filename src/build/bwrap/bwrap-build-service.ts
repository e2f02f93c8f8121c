/**
 * `bwrap://`: builds in a bubblewrap sandbox. bwrap runs as an unprivileged
 * host build user (a uid from `buildUidBase` on, locked across processes), so the
 * sandbox's uid 1000 maps to that user, never to host root. The build root
 * lives under `sandboxDir`, which those users must be able to traverse.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, lstatSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { type BlobService, type DirectoryService, importPath, type Node } from '../../castore/index.js';
import type { AbortOptions } from '../../common/abort.js';
import { AsyncQueue } from '../../common/async-queue.js';
import type { BuildEvent } from '../build-events.js';
import { type BuildRequest, scratchPathFor } from '../build-request.js';
import { type BuildService, DEFAULT_PIDS_LIMIT, type SandboxLimits } from '../build-service.js';
import { BuildError } from '../errors.js';
import { buildRequestDigest } from '../proto-convert.js';
import { type BuildUserLock, lockBuildUser } from '../sandbox/build-user-lock.js';
import { BuildCgroup, cgroupV1Unavailable } from '../sandbox/cgroup-v1.js';
import { InputsCache } from '../sandbox/inputs-cache.js';
import { etcFiles } from '../sandbox/nix-compatible-etc.js';
import { bwrapArgs } from './bwrap-args.js';

/** Default parent of build roots and the inputs cache. */
export const DEFAULT_SANDBOX_DIR = '/var/tmp/kiln-sandbox';
/** Host uids of build users start here. */
export const DEFAULT_BUILD_UID_BASE = 30_000;
/** Lines of log kept for the failure summary. */
export const LOG_TAIL_LINES = 20;

export interface BwrapBuildServiceOptions extends SandboxLimits {
  blobService: BlobService;
  directoryService: DirectoryService;
  /** Parent of build roots and the inputs cache; default `DEFAULT_SANDBOX_DIR`. */
  sandboxDir?: string;
  /** First host uid of the build users; default `DEFAULT_BUILD_UID_BASE`. */
  buildUidBase?: number;
  /** Static shell bound at /bin/sh on request; default `/bin/busybox`. */
  shell?: string;
  /** The bwrap binary; default `bwrap` on PATH. */
  bwrap?: string;
}

export class BwrapBuildService implements BuildService {
  readonly name = 'bwrap';
  readonly #options: BwrapBuildServiceOptions;
  readonly #inputs: InputsCache;
  readonly #freeSlots: number[];
  readonly #waiters: ((slot: number) => void)[] = [];

  constructor(options: BwrapBuildServiceOptions) {
    if (process.platform !== 'linux') throw new BuildError('SANDBOX_UNAVAILABLE', 'bwrap builds need Linux');
    const noCgroups = cgroupV1Unavailable();
    if (noCgroups) throw new BuildError('SANDBOX_UNAVAILABLE', `bwrap builds need cgroups for their limits: ${noCgroups}`);
    this.#options = options;
    const sandboxDir = options.sandboxDir ?? DEFAULT_SANDBOX_DIR;
    this.#inputs = new InputsCache(join(sandboxDir, 'inputs'), options);
    this.#freeSlots = Array.from({ length: options.concurrency ?? cpus().length }, (_, i) => i);
  }

  async *build(request: BuildRequest, options: AbortOptions = {}): AsyncGenerator<BuildEvent> {
    const { signal } = options;
    signal?.throwIfAborted();
    const minMemory = request.constraints?.minMemory ?? 0;
    if (minMemory > totalmem()) {
      throw new BuildError('CONSTRAINTS_UNMET', `the build needs ${minMemory} bytes of memory; this host has ${totalmem()}`, {
        details: { field: 'constraints.min_memory' },
      });
    }
    const invocationId = randomUUID();
    yield { type: 'accepted', buildId: buildRequestDigest(request).toString(), invocationId, backend: this.name };
    const slot = await this.#acquire(signal);
    const sandboxDir = this.#options.sandboxDir ?? DEFAULT_SANDBOX_DIR;
    let buildDir: string | undefined;
    let child: ChildProcess | undefined;
    let cgroup: BuildCgroup | undefined;
    let user: BuildUserLock | undefined;
    try {
      await fs.mkdir(sandboxDir, { recursive: true, mode: 0o711 });
      await fs.chmod(sandboxDir, 0o711);
      user = await lockBuildUser(join(sandboxDir, 'locks'), this.#options.buildUidBase ?? DEFAULT_BUILD_UID_BASE);
      if (!user) throw new BuildError('SANDBOX_UNAVAILABLE', `every build user is busy (locks in ${join(sandboxDir, 'locks')})`);
      const uid = user.uid;
      buildDir = await fs.mkdtemp(join(sandboxDir, 'build-'));
      await fs.chmod(buildDir, 0o711);
      const layout = await this.#prepare(request, buildDir, uid, signal);
      const started = performance.now();
      const events = new AsyncQueue<BuildEvent>();
      const tail = new LogTail(LOG_TAIL_LINES);
      const invocation = bwrapArgs(request, layout);
      cgroup = await BuildCgroup.create(
        `kiln-${invocationId}`,
        {
          pidsMax: this.#options.pidsLimit ?? DEFAULT_PIDS_LIMIT,
          ...(this.#options.memoryLimitBytes !== undefined ? { memoryLimitBytes: this.#options.memoryLimitBytes } : {}),
        },
        uid,
      );
      // The first process joins the build's cgroups itself, then becomes bwrap: nothing of the build runs outside them.
      const enter = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"';
      const sandboxArgs = [
        'kiln-enter-cgroup',
        ...cgroup.procsFiles,
        '--',
        this.#options.bwrap ?? 'bwrap',
        '--args',
        '3',
        ...invocation.command,
      ];
      child = spawn('/bin/sh', ['-c', enter, ...sandboxArgs], {
        uid,
        gid: uid,
        stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
        detached: true,
      });
      const argStream = child.stdio[3] as NodeJS.WritableStream;
      argStream.end(Buffer.concat(invocation.options.flatMap((a) => [Buffer.from(a), Buffer.of(0)])));
      const offsets = { stdout: 0, stderr: 0 };
      for (const stream of ['stdout', 'stderr'] as const) {
        child[stream]?.on('data', (data: Buffer) => {
          events.push({ type: 'log', stream, offset: offsets[stream], data });
          offsets[stream] += data.byteLength;
          tail.add(data);
        });
      }
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
        child?.once('error', reject);
        child?.once('close', (code, sig) => resolve({ code, signal: sig }));
      });
      exited.then(
        () => events.end(),
        (error) => events.fail(error),
      );
      const onAbort = () => killTree(child);
      signal?.addEventListener('abort', onAbort, { once: true });
      const limits = new TimeLimits(this.#options, () => killTree(child));
      yield { type: 'started' };
      try {
        for await (const event of events) {
          if (event.type === 'log') limits.activity();
          yield event;
        }
      } finally {
        signal?.removeEventListener('abort', onAbort);
        limits.stop();
      }
      signal?.throwIfAborted();
      const result = await exited;
      const wallTimeMs = performance.now() - started;
      const usage = await cgroup.stats();
      yield { type: 'resources', cpuTimeMs: usage.cpuTimeMs, peakMemoryBytes: usage.peakMemoryBytes };
      if (limits.expired) {
        const [reason, ms] =
          limits.expired === 'timeout' ? ['timeout', this.#options.timeoutMs] : ['silence-timeout', this.#options.silenceTimeoutMs];
        const what = reason === 'timeout' ? `ran longer than ${ms} ms` : `wrote nothing for ${ms} ms`;
        yield {
          type: 'failed',
          reason: reason as 'timeout' | 'silence-timeout',
          message: `the build ${what} and was killed`,
          logTail: tail.text(),
        };
        return;
      }
      if (usage.oomKilled) {
        yield {
          type: 'failed',
          reason: 'out-of-memory',
          message: `the build went over its memory limit of ${this.#options.memoryLimitBytes} bytes and was killed`,
          ...(result.code !== null ? { exitCode: result.code } : {}),
          ...(result.signal ? { signal: result.signal } : {}),
          logTail: tail.text(),
        };
        return;
      }
      if (result.code !== 0) {
        const reason = result.signal ? 'signal' : 'exit-code';
        const what = result.signal ? `was killed by ${result.signal}` : `exited with status ${result.code}`;
        yield {
          type: 'failed',
          reason,
          message: `the build ${what}`,
          ...(result.code !== null ? { exitCode: result.code } : {}),
          ...(result.signal ? { signal: result.signal } : {}),
          logTail: tail.text(),
        };
        return;
      }
      const outputs: { node: Node; needles: number[] }[] = [];
      const needles = request.refscanNeedles.map((n) => Buffer.from(n));
      for (const [index, output] of request.outputs.entries()) {
        const hostPath = hostPathOf(request, layout.scratchDirs, output);
        if (lstatSync(hostPath, { throwIfNoEntry: false }) === undefined) {
          yield {
            type: 'failed',
            reason: 'output-missing',
            message: `output ${output} was not produced`,
            exitCode: 0,
            logTail: tail.text(),
          };
          return;
        }
        const ingested = await importPath(hostPath, {
          blobService: this.#options.blobService,
          directoryService: this.#options.directoryService,
          needles,
          signal,
        });
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
      killTree(child);
      await cgroup?.destroy();
      await user?.release();
      if (buildDir) await fs.rm(buildDir, { recursive: true, force: true });
      this.#release(slot);
    }
  }

  /** Writes /etc, the scratch directories (owned by the build user) and additional files; materializes inputs. */
  async #prepare(request: BuildRequest, buildDir: string, uid: number, signal?: AbortSignal) {
    const etcDir = join(buildDir, 'etc');
    await fs.mkdir(etcDir, { mode: 0o755 });
    for (const [name, content] of Object.entries(etcFiles(`/${request.workingDir}`)))
      await fs.writeFile(join(etcDir, name), content, { mode: 0o444 });
    const scratchDirs: string[] = [];
    for (const [i] of request.scratchPaths.entries()) {
      const dir = join(buildDir, 'scratch', String(i));
      await fs.mkdir(dir, { recursive: true, mode: 0o755 });
      await fs.chown(dir, uid, uid);
      scratchDirs.push(dir);
    }
    for (const file of request.additionalFiles) {
      const scratch = scratchPathFor(request, file.path);
      if (scratch === undefined)
        throw new BuildError('INVALID_REQUEST', `additional file ${file.path} is outside every scratch path (not yet supported by bwrap)`, {
          details: { field: 'additional_files' },
        });
      const target = hostPathOf(request, scratchDirs, file.path);
      await fs.mkdir(join(target, '..'), { recursive: true });
      await fs.writeFile(target, file.contents, { mode: 0o644 });
      await fs.chown(target, uid, uid);
    }
    const inputPaths: string[] = [];
    for (const input of request.inputs) inputPaths.push(await this.#inputs.pathOf(input.node, { signal }));
    return {
      etcDir,
      scratchDirs,
      inputPaths,
      ...(this.#options.shell !== undefined || existsSync('/bin/busybox') ? { shell: this.#options.shell ?? '/bin/busybox' } : {}),
    };
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

/** The host path of `path` (inside a scratch path) in the build's scratch directories. */
function hostPathOf(request: BuildRequest, scratchDirs: readonly string[], path: string): string {
  const scratch = scratchPathFor(request, path) as string;
  const dir = scratchDirs[request.scratchPaths.indexOf(scratch)] as string;
  return path === scratch ? dir : join(dir, path.slice(scratch === '' ? 0 : scratch.length + 1));
}

/** bwrap runs the build as pid 1 of its own pid namespace: killing bwrap's process group ends every process in it. */
function killTree(child: ChildProcess | undefined): void {
  if (!child || child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    child.kill('SIGKILL');
  }
}

/** Wall-clock and silence limits: `onExpire` runs once when either passes. */
class TimeLimits {
  expired: 'timeout' | 'silence-timeout' | undefined;
  readonly #silenceMs: number | undefined;
  readonly #onExpire: () => void;
  readonly #wall: NodeJS.Timeout | undefined;
  #silence: NodeJS.Timeout | undefined;

  constructor(limits: SandboxLimits, onExpire: () => void) {
    this.#onExpire = onExpire;
    this.#silenceMs = limits.silenceTimeoutMs;
    if (limits.timeoutMs !== undefined) this.#wall = setTimeout(() => this.#expire('timeout'), limits.timeoutMs);
    this.activity();
  }

  /** The build wrote something: the silence clock starts again. */
  activity(): void {
    if (this.#silenceMs === undefined || this.expired) return;
    clearTimeout(this.#silence);
    this.#silence = setTimeout(() => this.#expire('silence-timeout'), this.#silenceMs);
  }

  #expire(kind: 'timeout' | 'silence-timeout'): void {
    if (this.expired) return;
    this.expired = kind;
    this.stop();
    this.#onExpire();
  }

  stop(): void {
    clearTimeout(this.#wall);
    clearTimeout(this.#silence);
  }
}

/** The last lines of the combined log. */
class LogTail {
  readonly #max: number;
  #text = '';
  constructor(maxLines: number) {
    this.#max = maxLines;
  }
  add(data: Buffer): void {
    this.#text = (this.#text + data.toString('utf8'))
      .split('\n')
      .slice(-(this.#max + 1))
      .join('\n');
  }
  text(): string {
    return this.#text;
  }
}
