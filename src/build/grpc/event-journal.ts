/**
 * The event log of one remote build: every event, encoded once as a
 * `kiln.build.v1.BuildEvent` with its sequence number, appended to a file,
 * and readable from any sequence on by any number of watchers, live or
 * late.
 *
 * Live watchers get each event from memory as soon as it is appended: the
 * most recent events (up to `RECENT_BYTES`) are kept, so the file write is
 * not on the way from the builder to the client. A watcher that falls
 * further behind, or comes late, reads from the file. Memory stays bounded
 * however much a build logs: beyond the recent events, only file offsets
 * are kept, and nothing once the build is over. File descriptors too: the
 * journal writes through one descriptor until its terminal event, and each
 * reader opens its own while it reads from the file, so a finished journal
 * kept for late readers holds none.
 */
import * as fs from 'node:fs/promises';
import { toBinary } from '@bufbuild/protobuf';
import { BuildEventSchema } from '../../gen/kiln/build/v1/build_events_pb.js';
import type { BuildEvent } from '../build-events.js';
import { buildEventToMessage, isTerminal } from './event-convert.js';

/** How many bytes of the latest events a running build's journal keeps in memory for live watchers. */
export const RECENT_BYTES = 1 << 20;

export class EventJournal {
  readonly path: string;
  /** Opened by the first write; closed after the terminal event is written (or by `close`). */
  #writer: Promise<fs.FileHandle> | undefined;
  /** Events appended so far (sequence numbers handed out). */
  #count = 0;
  /** Start offset in the file of each written event; event i ends where i+1 starts. */
  readonly #offsets: number[] = [];
  #end = 0;
  /** The latest events by sequence, at most `RECENT_BYTES` in all (the newest is always kept). */
  readonly #recent = new Map<number, Uint8Array>();
  #recentBytes = 0;
  /** The chain of writes; never rejects (a failure is kept in `#failure`). */
  #appending: Promise<void> = Promise.resolve();
  #unwrittenBytes = 0;
  #failure: unknown;
  #complete = false;
  #closed = false;
  #wake: (() => void)[] = [];

  private constructor(path: string) {
    this.path = path;
  }

  /** A new journal at `path` (which must not exist; the file is created by the first append). */
  static create(path: string): EventJournal {
    return new EventJournal(path);
  }

  /** Events recorded so far. */
  get length(): number {
    return this.#count;
  }

  /** Whether the terminal event has been recorded. */
  get complete(): boolean {
    return this.#complete;
  }

  /**
   * Records `event` as the next in sequence: watchers see it at once, and
   * it is written to the file behind them (writes are serialized). The
   * returned promise settles at once while less than `RECENT_BYTES` wait to
   * be written, else once they are (so a fast builder is held back by the
   * disk, and memory stays bounded). Once a write has failed it rejects,
   * though watchers still get the event from memory.
   */
  append(event: BuildEvent): Promise<void> {
    if (this.#complete || this.#closed) return this.#failure === undefined ? Promise.resolve() : Promise.reject(this.#failure);
    const sequence = this.#count++;
    const terminal = isTerminal(event);
    this.#complete = terminal;
    const bytes = toBinary(BuildEventSchema, buildEventToMessage(event, sequence));
    this.#recent.set(sequence, bytes);
    this.#recentBytes += bytes.byteLength;
    this.#evict(sequence);
    this.#unwrittenBytes += bytes.byteLength;
    this.#notify();
    this.#appending = this.#appending.then(async () => {
      if (this.#closed || this.#failure !== undefined) return;
      try {
        this.#writer ??= fs.open(this.path, 'wx', 0o600);
        const writer = await this.#writer;
        await writer.write(bytes, 0, bytes.byteLength, this.#end);
      } catch (error) {
        this.#failure = error;
        this.#notify();
        return;
      }
      this.#offsets.push(this.#end);
      this.#end += bytes.byteLength;
      this.#unwrittenBytes -= bytes.byteLength;
      if (terminal) {
        await this.#closeWriter();
        this.#recent.clear(); // the build is over: late readers read the file
        this.#recentBytes = 0;
      } else this.#evict(this.#count - 1);
      this.#notify();
    });
    if (this.#failure !== undefined) return Promise.reject(this.#failure); // recorded in memory all the same
    return this.#unwrittenBytes < RECENT_BYTES ? Promise.resolve() : this.written();
  }

  /** Settles once everything appended so far is in the file; rejects if a write failed. */
  async written(): Promise<void> {
    await this.#appending;
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Drops the oldest written events from memory while it holds more than `RECENT_BYTES` (never the newest). */
  #evict(newest: number): void {
    for (let oldest = newest - this.#recent.size + 1; this.#recentBytes > RECENT_BYTES && oldest < newest; oldest++) {
      const evicted = this.#recent.get(oldest);
      if (evicted === undefined || oldest >= this.#offsets.length) break; // not written yet: keep it
      this.#recent.delete(oldest);
      this.#recentBytes -= evicted.byteLength;
    }
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
        while (next < this.#count && !this.#closed) {
          let bytes = this.#recent.get(next);
          if (bytes === undefined) {
            // Only written events leave memory; one that is neither there nor written means the write failed.
            if (next >= this.#offsets.length) throw this.#failure ?? new Error(`event ${next} of ${this.path} is lost`);
            const start = this.#offsets[next] as number;
            const end = next + 1 < this.#offsets.length ? (this.#offsets[next + 1] as number) : this.#end;
            bytes = Buffer.alloc(end - start);
            try {
              reader ??= await fs.open(this.path, 'r');
            } catch (error) {
              if (this.#closed && (error as NodeJS.ErrnoException).code === 'ENOENT') return; // closed and deleted meanwhile
              throw error;
            }
            await reader.read(bytes, 0, bytes.byteLength, start);
          }
          next++;
          yield bytes;
        }
        if ((this.#complete && next >= this.#count) || this.#closed) return;
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

  #notify(): void {
    for (const wake of this.#wake.splice(0)) wake();
  }

  async #closeWriter(): Promise<void> {
    const writer = this.#writer;
    this.#writer = undefined;
    await (await writer?.catch(() => undefined))?.close();
  }

  /** Closes and deletes the file; readers end. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#notify();
    await this.#appending;
    await this.#closeWriter();
    this.#recent.clear();
    this.#recentBytes = 0;
    await fs.rm(this.path, { force: true });
  }
}
