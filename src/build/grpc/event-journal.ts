/**
 * The event log of one remote build: every event, encoded once as a
 * `kiln.build.v1.BuildEvent`, appended to a file with its sequence number,
 * and readable from any sequence on by any number of watchers, live or
 * late. Memory stays bounded however much a build logs: events live in the
 * file; only their offsets are kept. File descriptors too: the journal
 * writes through one descriptor until its terminal event, and each reader
 * opens its own while it reads, so a finished journal kept for late readers
 * holds none.
 */
import * as fs from 'node:fs/promises';
import { toBinary } from '@bufbuild/protobuf';
import { BuildEventSchema } from '../../gen/kiln/build/v1/build_events_pb.js';
import type { BuildEvent } from '../build-events.js';
import { buildEventToMessage, isTerminal } from './event-convert.js';

export class EventJournal {
  readonly path: string;
  /** Open until the terminal event is written (or the journal is closed). */
  #writer: fs.FileHandle | undefined;
  /** Start offset of each event in the file; event i ends where i+1 starts. */
  readonly #offsets: number[] = [];
  #end = 0;
  /** Events accepted by `append` but not yet written. */
  #pending = 0;
  #appending: Promise<void> = Promise.resolve();
  #complete = false;
  #closed = false;
  #wake: (() => void)[] = [];

  private constructor(path: string, writer: fs.FileHandle) {
    this.path = path;
    this.#writer = writer;
  }

  static async create(path: string): Promise<EventJournal> {
    return new EventJournal(path, await fs.open(path, 'wx', 0o600));
  }

  /** Events recorded so far. */
  get length(): number {
    return this.#offsets.length;
  }

  /** Whether the terminal event has been recorded. */
  get complete(): boolean {
    return this.#complete;
  }

  /** Records `event` as the next in sequence; appends are serialized. */
  append(event: BuildEvent): Promise<void> {
    if (this.#complete) return this.#appending;
    this.#complete = isTerminal(event);
    const bytes = toBinary(BuildEventSchema, buildEventToMessage(event, this.#offsets.length + this.#pending++));
    const terminal = this.#complete;
    this.#appending = this.#appending.then(async () => {
      if (!this.#writer) return; // closed meanwhile
      await this.#writer.write(bytes, 0, bytes.byteLength, this.#end);
      this.#offsets.push(this.#end);
      this.#end += bytes.byteLength;
      this.#pending--;
      if (terminal) await this.#closeWriter();
      for (const wake of this.#wake.splice(0)) wake();
    });
    return this.#appending;
  }

  /**
   * The encoded events from `from` on, waiting for new ones until the
   * terminal event has been read, or until `signal` aborts.
   */
  async *read(from: number, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    let next = from;
    let reader: fs.FileHandle | undefined;
    try {
      for (;;) {
        while (next < this.#offsets.length && !this.#closed) {
          const start = this.#offsets[next] as number;
          const end = next + 1 < this.#offsets.length ? (this.#offsets[next + 1] as number) : this.#end;
          const bytes = Buffer.alloc(end - start);
          try {
            reader ??= await fs.open(this.path, 'r');
          } catch (error) {
            if (this.#closed && (error as NodeJS.ErrnoException).code === 'ENOENT') return; // closed and deleted meanwhile
            throw error;
          }
          await reader.read(bytes, 0, bytes.byteLength, start);
          next++;
          yield bytes;
        }
        if ((this.#complete && this.#pending === 0) || this.#closed) return;
        signal?.throwIfAborted();
        await new Promise<void>((resolve) => {
          const onAbort = () => resolve();
          signal?.addEventListener('abort', onAbort, { once: true });
          this.#wake.push(() => {
            signal?.removeEventListener('abort', onAbort);
            resolve();
          });
        });
      }
    } finally {
      await reader?.close();
    }
  }

  async #closeWriter(): Promise<void> {
    const writer = this.#writer;
    this.#writer = undefined;
    await writer?.close();
  }

  /** Closes and deletes the file; readers end. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#appending;
    for (const wake of this.#wake.splice(0)) wake();
    await this.#closeWriter();
    await fs.rm(this.path, { force: true });
  }
}
