/**
 * Starts sandbox processes through `kiln-launcher`, a small C helper (see
 * kiln-launcher.c for why and for its protocol), instead of Node's `spawn`:
 * a fork of a large Node process costs milliseconds per build and grows
 * with the heap, the helper's does not. One helper serves the whole
 * process; it is compiled from its source on first use when the compiled
 * copy is missing or older (native-programs.ts; `scripts/build.sh` compiles
 * it ahead).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { constants } from 'node:os';
import { BuildError } from '../errors.js';
import { KILN_LAUNCHER, nativeProgram } from './native-programs.js';

export interface LaunchOptions {
  readonly argv: readonly string[];
  /** Host ids the process runs as; default the launcher's (root). */
  readonly uid?: number;
  readonly gid?: number;
  /** cgroup v1 `tasks` files the process writes `0` to (joins) before it execs. */
  readonly joinCgroups?: readonly string[];
  /** Contents of the process's fds 3, 4, … (readable from offset 0). */
  readonly inputFds?: readonly Uint8Array[];
  /**
   * Gives the process a pipe at the fd after `inputFds` (3 + their count)
   * for kiln-sandbox-init to write its command's wait status to: `exited`
   * then holds it as `reported`.
   */
  readonly statusPipe?: boolean;
  /** Receives the process's output as it comes, in order per stream. */
  readonly onOutput?: (stream: 'stdout' | 'stderr', data: Buffer) => void;
}

export interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface LaunchResult extends ExitStatus {
  /** How the command under kiln-sandbox-init ended, as it wrote to the status pipe; undefined when it wrote nothing. */
  readonly reported?: ExitStatus;
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
const signalName = (signal: number): NodeJS.Signals => signalNames.get(signal) ?? 'SIGKILL';

/** A raw wait status (Linux layout): exited with `(status >> 8) & 0xff`, or killed by signal `status & 0x7f`. */
function waitStatus(status: number): ExitStatus {
  const signal = status & 0x7f;
  return signal === 0 ? { code: (status >> 8) & 0xff, signal: null } : { code: null, signal: signalName(signal) };
}

export class Launcher {
  static #shared: Launcher | undefined;

  /** The process's one launcher, started on first use. */
  static shared(): Launcher {
    if (!Launcher.#shared || Launcher.#shared.#gone) Launcher.#shared = new Launcher(nativeProgram(KILN_LAUNCHER));
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
        const reported = payload.readInt32LE(8) === 1 ? waitStatus(payload.readInt32LE(12)) : undefined;
        this.#pending.delete(id);
        pending.resolveExit?.({
          code: code < 0 ? null : code,
          signal: signal ? signalName(signal) : null,
          ...(reported ? { reported } : {}),
        });
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
  u32(options.statusPipe ? 1 : 0);
  const message = Buffer.concat(parts);
  message.writeUInt32LE(message.byteLength - 4, 0);
  return message;
}
