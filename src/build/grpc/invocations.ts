/**
 * The builds a server runs on behalf of clients. Each build's events go to
 * a journal that any number of watchers read from any point, so a client
 * that lost its connection attaches again and misses nothing.
 *
 * A build without watchers is cancelled: at once, or after the grace its
 * starter asked for (`reattachGraceMs`), giving a lost client time to come
 * back. Finished builds stay attachable for `retainMs`. At most
 * `maxInFlight` builds are accepted at once (running or queued in the
 * backend); more are refused with `BUILDER_BUSY`.
 */
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import type { BuildEvent } from '../build-events.js';
import type { BuildRequest } from '../build-request.js';
import type { BuildService } from '../build-service.js';
import { BuildError } from '../errors.js';
import { EventJournal } from './event-journal.js';

export const DEFAULT_MAX_IN_FLIGHT = 64;
export const DEFAULT_RETAIN_MS = 10 * 60_000;

export interface InvocationsOptions {
  service: BuildService;
  /** Where journals are written; created if missing. */
  journalDir: string;
  maxInFlight?: number;
  retainMs?: number;
}

export class Invocation {
  readonly id: string;
  readonly buildId: string;
  readonly journal: EventJournal;
  readonly #controller = new AbortController();
  readonly #graceMs: number;
  #watchers = 0;
  #idleTimer: NodeJS.Timeout | undefined;
  /** Settles when the build has ended and its last event is recorded. */
  done: Promise<void> = Promise.resolve();

  constructor(id: string, buildId: string, journal: EventJournal, graceMs: number) {
    this.id = id;
    this.buildId = buildId;
    this.journal = journal;
    this.#graceMs = graceMs;
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** The build's encoded events from `from` on, until its last one or until `signal` aborts. */
  async *watch(from: number, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    this.#watchers++;
    clearTimeout(this.#idleTimer);
    try {
      yield* this.journal.read(from, signal);
    } finally {
      this.#watchers--;
      if (this.#watchers === 0 && !this.journal.complete) {
        if (this.#graceMs === 0) this.cancel('the last watcher went away');
        else this.#idleTimer = setTimeout(() => this.cancel('no watcher came back'), this.#graceMs);
      }
    }
  }

  cancel(why: string): void {
    clearTimeout(this.#idleTimer);
    this.#controller.abort(new BuildError('BUILDER_FAILED', `the build was cancelled: ${why}`));
  }
}

export class Invocations {
  readonly #options: InvocationsOptions;
  readonly #byId = new Map<string, Invocation>();
  #inFlight = 0;
  #draining = false;
  #journalDirReady: Promise<void> | undefined;

  constructor(options: InvocationsOptions) {
    this.#options = options;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  get maxInFlight(): number {
    return this.#options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
  }

  get(id: string): Invocation | undefined {
    return this.#byId.get(id);
  }

  /**
   * Starts a build and resolves once the backend has accepted it (rejecting
   * with its error when it refuses the request outright).
   */
  async start(request: BuildRequest, options: { reattachGraceMs?: number } = {}): Promise<Invocation> {
    if (this.#draining) throw new BuildError('BUILDER_UNREACHABLE', 'the server is shutting down');
    this.#journalDirReady ??= fs.mkdir(this.#options.journalDir, { recursive: true, mode: 0o700 }).then(
      () => {},
      (error: unknown) => {
        this.#journalDirReady = undefined;
        throw error;
      },
    );
    await this.#journalDirReady;
    const max = this.#options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    if (this.#inFlight >= max) throw new BuildError('BUILDER_BUSY', `the server already has ${max} builds running or queued`);
    this.#inFlight++;
    const controller = new AbortController();
    let iterator: AsyncIterator<BuildEvent> | undefined;
    let accepted: Extract<BuildEvent, { type: 'accepted' }>;
    try {
      iterator = this.#options.service.build(request, { signal: controller.signal })[Symbol.asyncIterator]();
      const first = await iterator.next();
      if (first.done || first.value.type !== 'accepted') throw new BuildError('BUILDER_FAILED', 'the backend did not accept the build');
      accepted = first.value;
    } catch (error) {
      this.#inFlight--;
      await iterator?.return?.();
      throw error;
    }
    const journal = EventJournal.create(join(this.#options.journalDir, `${accepted.invocationId}.events`));
    const invocation = new Invocation(accepted.invocationId, accepted.buildId, journal, options.reattachGraceMs ?? 0);
    invocation.signal.addEventListener('abort', () => controller.abort(invocation.signal.reason), { once: true });
    this.#byId.set(invocation.id, invocation);
    const appended = journal.append(accepted); // watchers see it at once
    invocation.done = this.#pump(invocation, iterator, appended);
    return invocation;
  }

  /** Records the build's events until its end; a journal that cannot be written stops the build. */
  async #pump(invocation: Invocation, iterator: AsyncIterator<BuildEvent>, first: Promise<void>): Promise<void> {
    const { journal } = invocation;
    try {
      await first;
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) await journal.append(next.value);
      await journal.written();
    } catch (error) {
      const cancelled = invocation.signal.aborted;
      await iterator.return?.().catch(() => {}); // stops the sandbox when the journal failed, not the builder
      await journal
        .append({
          type: 'failed',
          reason: cancelled ? 'cancelled' : 'sandbox-error',
          message: cancelled ? (invocation.signal.reason as Error).message : `the builder failed: ${(error as Error).message}`,
          logTail: '',
        })
        .catch(() => {}); // watchers still get it from memory
    } finally {
      this.#inFlight--;
      const timer = setTimeout(() => {
        this.#byId.delete(invocation.id);
        void journal.close();
      }, this.#options.retainMs ?? DEFAULT_RETAIN_MS);
      timer.unref();
    }
  }

  /**
   * Refuses new builds, lets running ones finish for up to `deadlineMs`,
   * then cancels the rest and waits for them to end.
   */
  async drain(deadlineMs: number): Promise<void> {
    this.#draining = true;
    const running = [...this.#byId.values()].filter((i) => !i.journal.complete);
    const all = Promise.all(running.map((i) => i.done));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, deadlineMs);
    });
    await Promise.race([all, deadline]);
    clearTimeout(timer);
    for (const invocation of running) if (!invocation.journal.complete) invocation.cancel('the server is shutting down');
    await all;
  }

  /** Cancels everything and deletes the journals. */
  async close(): Promise<void> {
    for (const invocation of this.#byId.values()) invocation.cancel('the server is closing');
    await Promise.all([...this.#byId.values()].map((i) => i.done));
    await Promise.all([...this.#byId.values()].map((i) => i.journal.close()));
    this.#byId.clear();
  }
}
