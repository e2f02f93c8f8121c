/**
 * Starts sandbox processes through `kiln-launcher`, a small C helper (see
 * kiln-launcher.c for why and for its protocol), instead of Node's `spawn`:
 * a fork of a large Node process costs milliseconds per build and grows
 * with the heap, the helper's does not. One helper serves the whole
 * process; it is compiled from its source on first use when the compiled
 * copy is missing or older (`scripts/build.sh` compiles it ahead).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BuildError } from '../errors.js';
import { findExecutable } from './find-executable.js';

/** The package root: this module is src/build/sandbox/launcher.ts or dist/build/sandbox/launcher.js. */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const LAUNCHER_SOURCE = join(ROOT, 'src/build/sandbox/kiln-launcher.c');
export const LAUNCHER_BINARY = join(ROOT, 'dist/native/kiln-launcher');

export interface LaunchOptions {
  readonly argv: readonly string[];
  /** Host ids the process runs as; default the launcher's (root). */
  readonly uid?: number;
  readonly gid?: number;
  /** cgroup v1 `tasks` files the process writes `0` to (joins) before it execs. */
  readonly joinCgroups?: readonly string[];
  /** Contents of the process's fds 3, 4, … (readable from offset 0). */
  readonly inputFds?: readonly Uint8Array[];
  /** Receives the process's output as it comes, in order per stream. */
  readonly onOutput?: (stream: 'stdout' | 'stderr', data: Buffer) => void;
}

export interface LaunchResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface Launched {
  /** Leads its own session and process group. */
  readonly pid: number;
  /** Settles once the process has exited and its stdout and stderr are closed. */
  readonly exited: Promise<LaunchResult>;
  /** Whether `exited` has settled. */
  readonly done: boolean;
}

const EVENT = { started: 0, stdout: 1, stderr: 2, exited: 3, failed: 4 } as const;

interface Pending {
  readonly options: LaunchOptions;
  resolveStart(pid: number): void;
  rejectStart(error: Error): void;
  resolveExit?(result: LaunchResult): void;
}

const signalNames = new Map(Object.entries(constants.signals).map(([name, number]) => [number, name as NodeJS.Signals]));

export class Launcher {
  static #shared: Launcher | undefined;

  /** The process's one launcher, started on first use. */
  static shared(): Launcher {
    if (!Launcher.#shared || Launcher.#shared.#gone) Launcher.#shared = new Launcher(launcherBinary());
    return Launcher.#shared;
  }

  readonly #child: ChildProcess;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #input: Buffer = Buffer.alloc(0);
  #gone: Error | undefined;

  private constructor(binary: string) {
    this.#child = spawn(binary, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.#child.stdout?.on('data', (data: Buffer) => this.#receive(data));
    this.#child.stdin?.on('error', () => {}); // the exit below reports it
    this.#child.once('error', (error) => this.#fail(error));
    this.#child.once('exit', (code, signal) => this.#fail(new Error(`kiln-launcher exited (${signal ?? `status ${code}`})`)));
    this.#updateRef();
  }

  /** Starts a process; rejects when it could not be started at all. */
  launch(options: LaunchOptions): Promise<Launched> {
    if (this.#gone) return Promise.reject(this.#gone);
    const id = this.#nextId++;
    const started = new Promise<number>((resolveStart, rejectStart) => {
      this.#pending.set(id, { options, resolveStart, rejectStart });
    });
    const exited = new Promise<LaunchResult>((resolve) => {
      (this.#pending.get(id) as Pending).resolveExit = resolve;
    });
    this.#updateRef();
    this.#child.stdin?.write(encodeRequest(id, options));
    return started.then((pid) => {
      const launched = { pid, exited, done: false };
      exited.then(() => (launched.done = true));
      return launched;
    });
  }

  /** A running build keeps the process alive; an idle launcher does not. */
  #updateRef(): void {
    const busy = this.#pending.size > 0;
    for (const handle of [this.#child, this.#child.stdout, this.#child.stdin] as ({ ref(): void; unref(): void } | null)[]) {
      if (busy) handle?.ref();
      else handle?.unref();
    }
  }

  #receive(data: Buffer): void {
    this.#input = this.#input.length ? Buffer.concat([this.#input, data]) : data;
    let offset = 0;
    while (this.#input.length - offset >= 4) {
      const length = this.#input.readUInt32LE(offset);
      if (this.#input.length - offset - 4 < length) break;
      this.#event(this.#input.subarray(offset + 4, offset + 4 + length));
      offset += 4 + length;
    }
    this.#input = this.#input.subarray(offset);
  }

  #event(body: Buffer): void {
    const id = body.readUInt32LE(0);
    const kind = body[4];
    const pending = this.#pending.get(id);
    if (!pending) return;
    const payload = body.subarray(5);
    switch (kind) {
      case EVENT.started:
        pending.resolveStart(payload.readInt32LE(0));
        break;
      case EVENT.stdout:
      case EVENT.stderr:
        pending.options.onOutput?.(kind === EVENT.stdout ? 'stdout' : 'stderr', payload);
        break;
      case EVENT.exited: {
        const code = payload.readInt32LE(0);
        const signal = payload.readInt32LE(4);
        this.#pending.delete(id);
        pending.resolveExit?.({ code: code < 0 ? null : code, signal: signal ? (signalNames.get(signal) ?? 'SIGKILL') : null });
        this.#updateRef();
        break;
      }
      case EVENT.failed:
        this.#pending.delete(id);
        pending.rejectStart(new BuildError('SANDBOX_UNAVAILABLE', `kiln-launcher could not start ${pending.options.argv[0]}: ${payload}`));
        this.#updateRef();
        break;
    }
  }

  /** The launcher died (its children died with it): every waiting caller learns so. */
  #fail(error: Error): void {
    this.#gone ??= error;
    for (const pending of this.#pending.values()) {
      pending.rejectStart(error);
      pending.resolveExit?.({ code: null, signal: 'SIGKILL' });
    }
    this.#pending.clear();
  }
}

function encodeRequest(id: number, options: LaunchOptions): Buffer {
  const parts: Buffer[] = [];
  const u32 = (value: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(value >>> 0);
    parts.push(b);
  };
  const strings = (list: readonly (string | Uint8Array)[]) => {
    u32(list.length);
    for (const item of list) {
      const bytes = typeof item === 'string' ? Buffer.from(item) : Buffer.from(item.buffer, item.byteOffset, item.byteLength);
      u32(bytes.byteLength);
      parts.push(bytes);
    }
  };
  u32(0); // the length, filled in below
  u32(id);
  u32(options.uid ?? -1);
  u32(options.gid ?? -1);
  strings(options.joinCgroups ?? []);
  strings(options.argv);
  strings(options.inputFds ?? []);
  const message = Buffer.concat(parts);
  message.writeUInt32LE(message.byteLength - 4, 0);
  return message;
}

/** The compiled launcher, compiled now when it is missing or older than its source. */
export function launcherBinary(): string {
  const built = statSync(LAUNCHER_BINARY, { throwIfNoEntry: false });
  const source = statSync(LAUNCHER_SOURCE, { throwIfNoEntry: false });
  if (built && (!source || built.mtimeMs >= source.mtimeMs)) return LAUNCHER_BINARY;
  if (!source)
    throw new BuildError(
      'SANDBOX_UNAVAILABLE',
      `kiln-launcher is neither built (${LAUNCHER_BINARY}) nor at hand to build (${LAUNCHER_SOURCE})`,
    );
  compileLauncher();
  return LAUNCHER_BINARY;
}

/** Compiles kiln-launcher.c with the system's C compiler (atomically: concurrent compiles each rename a whole file). */
export function compileLauncher(): void {
  const cc = findExecutable('cc') ?? findExecutable('gcc');
  if (!cc) throw new BuildError('SANDBOX_UNAVAILABLE', 'building kiln-launcher needs a C compiler (`cc`; Debian: apt-get install gcc)');
  mkdirSync(dirname(LAUNCHER_BINARY), { recursive: true });
  const temporary = `${LAUNCHER_BINARY}.${process.pid}.tmp`;
  try {
    execFileSync(cc, ['-O2', '-Wall', '-o', temporary, LAUNCHER_SOURCE], { stdio: ['ignore', 'ignore', 'pipe'] });
    renameSync(temporary, LAUNCHER_BINARY);
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    throw new BuildError('SANDBOX_UNAVAILABLE', `cannot compile kiln-launcher: ${stderr || (error as Error).message}`);
  } finally {
    if (existsSync(temporary)) rmSync(temporary, { force: true });
  }
}
