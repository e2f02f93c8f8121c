/**
 * The worker threads behind `FsBlobService.putFile`: each reads, hashes,
 * writes and renames whole local files with synchronous calls
 * (fs-put-file.js), so an import keeps every core busy while the main thread
 * walks and builds directories. Files travel in batches (one message per
 * batch each way, paths and results packed in transferred buffers) and each
 * worker has up to two batches queued, so it never waits for a round trip.
 *
 * The workers are plain JavaScript started without the parent's loader flags
 * (`execArgv: []`): a worker that loads tsx takes half a second to start,
 * a plain one tens of milliseconds. They start only once a pool has stored
 * `INLINE_PUTS_BEFORE_WORKERS` files inline, so small imports pay for no
 * thread. Until the first worker is ready, and for good if workers cannot
 * run, files are stored inline on the calling thread. Idle workers do not
 * keep the process alive.
 */
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { blake3Backend, createBlake3 } from '../../common/blake3.js';
import { CastoreError } from '../errors.js';
import { createFilePutter, type FilePutResult, type FilePutter, type FilePutterOptions } from './fs-put-file.js';

/** Files per message to a worker. */
export const PUT_BATCH_FILES = 64;
/** A batch also ends once the files' expected sizes add up to this. */
export const PUT_BATCH_BYTES = 8 << 20;
/** Batches a worker has queued at most (one in progress, the rest waiting). */
const BATCHES_PER_WORKER = 2;
/** Default thread count: one per core, at most this many (the disk is shared by all of them). */
const MAX_DEFAULT_THREADS = 4;
/**
 * The first this many files are stored inline, and workers start only with
 * the next: starting a worker takes tens of milliseconds (and `close` lets a
 * starting worker finish before stopping it), more than a few small files
 * take to store on the calling thread.
 */
export const INLINE_PUTS_BEFORE_WORKERS = 64;

export interface FilePutPoolOptions extends Omit<FilePutterOptions, 'createHash' | 'tmpPrefix'> {
  /** Worker threads; 0 stores every file inline. Default: one per core, at most 4. */
  readonly threads?: number;
  /** Files stored inline before the workers start; default `INLINE_PUTS_BEFORE_WORKERS`. */
  readonly inlinePutsBeforeWorkers?: number;
  /** The worker script (tests substitute failing ones); default fs-put-worker.js. */
  readonly workerUrl?: URL;
}

interface Job {
  readonly path: Buffer;
  readonly sizeHint: number;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (result: FilePutResult) => void;
  readonly reject: (error: unknown) => void;
}

interface PutWorker {
  readonly worker: Worker;
  ready: boolean;
  /** Settles once the worker reported ready, failed or exited. */
  readonly started: Promise<void>;
  readonly batches: Map<number, Job[]>;
}

/** How long `close` waits for a worker still starting before stopping it anyway. */
const WORKER_START_GRACE_MS = 5000;

interface BatchResult {
  readonly id: number;
  readonly digests: Uint8Array;
  readonly sizes: Float64Array;
  readonly stored: Uint8Array;
  readonly errors?: readonly SerializedError[];
}

interface SerializedError {
  readonly index: number;
  readonly message: string;
  readonly code?: string;
  readonly errno?: number;
  readonly syscall?: string;
  readonly path?: string;
}

export class FilePutPool {
  readonly #options: FilePutPoolOptions;
  readonly #threads: number;
  readonly #tmpPrefix = `${process.pid}-${randomBytes(4).toString('hex')}-`;
  readonly #workers: PutWorker[] = [];
  readonly #queue: Job[] = [];
  #inline: FilePutter | undefined;
  #inlinePuts = 0;
  #pumpScheduled = false;
  #nextBatchId = 0;
  #inFlight = 0;
  #workersFailed = false;
  #closed = false;
  #closing: Promise<void> | undefined;
  #idle: (() => void) | undefined;

  constructor(options: FilePutPoolOptions) {
    this.#options = options;
    this.#threads = options.threads ?? Math.min(availableParallelism(), MAX_DEFAULT_THREADS);
  }

  /** Stores the file at `path`; see `FilePutter` for the semantics. */
  put(path: Buffer, sizeHint: number, signal?: AbortSignal): Promise<FilePutResult> {
    if (this.#closed) return Promise.reject(new CastoreError('BACKEND_FAILURE', 'the blob service is closed'));
    signal?.throwIfAborted();
    if (this.#threads === 0 || this.#workersFailed) return this.#putInline(path, sizeHint);
    if (this.#workers.length === 0) {
      if (++this.#inlinePuts <= (this.#options.inlinePutsBeforeWorkers ?? INLINE_PUTS_BEFORE_WORKERS))
        return this.#putInline(path, sizeHint);
      this.#startWorkers();
    }
    if (this.#workersFailed) return this.#putInline(path, sizeHint);
    return new Promise((resolve, reject) => {
      this.#queue.push({ path, sizeHint, signal, resolve, reject });
      this.#inFlight++;
      if (!this.#pumpScheduled) {
        this.#pumpScheduled = true;
        setImmediate(() => this.#pump());
      }
    });
  }

  /** Waits for the files in flight, then stops the workers. */
  close(): Promise<void> {
    this.#closed = true;
    this.#closing ??= (async () => {
      if (this.#inFlight > 0) await new Promise<void>((resolve) => (this.#idle = resolve));
      // Terminating a worker while it is still bootstrapping can abort the
      // whole process on Node 20; let it finish starting first.
      await Promise.all(
        this.#workers.map(async ({ worker, started }) => {
          await Promise.race([started, new Promise((resolve) => setTimeout(resolve, WORKER_START_GRACE_MS).unref())]);
          await worker.terminate();
        }),
      );
    })();
    return this.#closing;
  }

  #putInline(path: Buffer, sizeHint: number): Promise<FilePutResult> {
    try {
      return Promise.resolve(this.#inlinePutter()(path, sizeHint));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #inlinePutter(): FilePutter {
    this.#inline ??= createFilePutter({ ...this.#options, tmpPrefix: `${this.#tmpPrefix}m-`, createHash: createBlake3 });
    return this.#inline;
  }

  #startWorkers(): void {
    const { blobsDir, tmpDir, fsyncAlways } = this.#options;
    for (let index = 0; index < this.#threads; index++) {
      const putter = { blobsDir, tmpDir, fsyncAlways, tmpPrefix: `${this.#tmpPrefix}w${index}-` };
      let worker: Worker;
      try {
        worker = new Worker(this.#options.workerUrl ?? new URL('./fs-put-worker.js', import.meta.url), {
          workerData: { putter, blake3: blake3Backend },
          execArgv: [],
        });
      } catch {
        break; // no (more) threads: the ones started, or inline puts, do the work
      }
      worker.unref();
      const started = new Promise<void>((resolve) => {
        const settle = () => resolve();
        worker.once('error', settle);
        worker.once('exit', settle);
        worker.on('message', (message: { ready?: true }) => {
          if (message.ready) settle();
        });
      });
      const state: PutWorker = { worker, ready: false, started, batches: new Map() };
      this.#workers.push(state);
      worker.on('message', (message: BatchResult | { ready: true }) => {
        if ('ready' in message) state.ready = true;
        else this.#finishBatch(state, message);
        this.#pump();
      });
      worker.on('error', (error) => this.#workerFailed(state, error));
      worker.on('exit', (code) => {
        if (!this.#closed || state.batches.size > 0) this.#workerFailed(state, new Error(`exited with code ${code}`));
      });
    }
    if (this.#workers.length === 0) this.#workersFailed = true;
  }

  /** Hands queued files to workers with room; stores them inline while no worker is ready yet. */
  #pump(): void {
    this.#pumpScheduled = false;
    while (this.#queue.length > 0) {
      let target: PutWorker | undefined;
      for (const candidate of this.#workers) {
        if (!candidate.ready || candidate.batches.size >= BATCHES_PER_WORKER) continue;
        if (!target || candidate.batches.size < target.batches.size) target = candidate;
      }
      if (target) this.#send(target);
      else if (this.#workersFailed || !this.#workers.some((w) => w.ready)) this.#runInline(this.#queue.shift() as Job);
      else return;
    }
  }

  #send(target: PutWorker): void {
    const jobs: Job[] = [];
    let bytes = 0;
    let pathBytes = 0;
    while (jobs.length < PUT_BATCH_FILES && bytes < PUT_BATCH_BYTES && this.#queue.length > 0) {
      const job = this.#queue.shift() as Job;
      if (job.signal?.aborted) {
        this.#settle(job, undefined, job.signal.reason);
        continue;
      }
      jobs.push(job);
      bytes += job.sizeHint;
      pathBytes += job.path.byteLength;
    }
    if (jobs.length === 0) return;
    const paths = new Uint8Array(pathBytes);
    const ends = new Uint32Array(jobs.length);
    const hints = new Float64Array(jobs.length);
    let offset = 0;
    for (const [index, job] of jobs.entries()) {
      paths.set(job.path, offset);
      offset += job.path.byteLength;
      ends[index] = offset;
      hints[index] = job.sizeHint;
    }
    const id = this.#nextBatchId++;
    if (target.batches.size === 0) target.worker.ref();
    target.batches.set(id, jobs);
    target.worker.postMessage({ id, paths, ends, hints }, [paths.buffer, ends.buffer, hints.buffer]);
  }

  #finishBatch(state: PutWorker, result: BatchResult): void {
    const jobs = state.batches.get(result.id);
    if (!jobs) return;
    state.batches.delete(result.id);
    if (state.batches.size === 0) state.worker.unref();
    const errors = new Map(result.errors?.map((e) => [e.index, e]));
    for (const [index, job] of jobs.entries()) {
      const error = errors.get(index);
      if (error) this.#settle(job, undefined, revive(error));
      else {
        const digest = result.digests.slice(32 * index, 32 * index + 32);
        this.#settle(job, { digest, size: result.sizes[index] as number, stored: result.stored[index] === 1 });
      }
    }
  }

  #runInline(job: Job): void {
    if (job.signal?.aborted) {
      this.#settle(job, undefined, job.signal.reason);
      return;
    }
    try {
      this.#settle(job, this.#inlinePutter()(job.path, job.sizeHint));
    } catch (error) {
      this.#settle(job, undefined, error);
    }
  }

  /** A worker that failed has its batches rejected and gets no more; without workers, files are stored inline. */
  #workerFailed(state: PutWorker, error: unknown): void {
    const index = this.#workers.indexOf(state);
    if (index < 0) return;
    this.#workers.splice(index, 1);
    if (this.#workers.length === 0) this.#workersFailed = true;
    const failure = new CastoreError('BACKEND_FAILURE', `a blob put worker failed: ${(error as Error)?.message ?? error}`, {
      cause: error,
    });
    for (const jobs of state.batches.values()) for (const job of jobs) this.#settle(job, undefined, failure);
    state.batches.clear();
    void state.worker.terminate();
    this.#pump();
  }

  #settle(job: Job, result: FilePutResult | undefined, error?: unknown): void {
    if (result && job.signal?.aborted) job.reject(job.signal.reason);
    else if (result) job.resolve(result);
    else job.reject(error);
    if (--this.#inFlight === 0) this.#idle?.();
  }
}

/** The worker's error as the Error Node would have thrown on this thread. */
function revive(serialized: SerializedError): Error {
  const error: NodeJS.ErrnoException = new Error(serialized.message);
  if (serialized.code !== undefined) error.code = serialized.code;
  if (serialized.errno !== undefined) error.errno = serialized.errno;
  if (serialized.syscall !== undefined) error.syscall = serialized.syscall;
  if (serialized.path !== undefined) error.path = serialized.path;
  return error;
}
