/**
 * node:crypto hashes computed on a worker thread, so that hashing a long
 * stream costs its producer only a copy: a 1 GiB NAR is read and
 * BLAKE3-verified on the calling thread while its sha256 runs beside it.
 *
 * Each open hash has a ring of shared memory: `update` copies the chunk
 * into free space and tells the worker which bytes to hash; the worker
 * hands the space back once hashed. A producer that reads its data can
 * instead read into one of the hash's own buffers (`freeBuffer`) and move
 * that buffer to the worker and back (`updateInPlace`), sparing the copy.
 * Nothing is allocated per chunk, so a long stream makes no garbage. One
 * worker, started on first use, serves every open hash; it does not keep
 * the process alive once none is open.
 */
import { Worker } from 'node:worker_threads';

/** Bytes of shared memory per open hash: what may be handed over and not yet hashed. */
export const HASH_RING_BYTES = 16 * 2 ** 20;
/** Size of a buffer that moves to the worker (`freeBuffer`); a hash has `MOVED_BUFFERS` of them. */
export const MOVED_BUFFER_BYTES = 2 ** 20;
const MOVED_BUFFERS = 8;
/** The worker is told of copied bytes once this many have gathered (or the ring wraps, fills or the hash ends). */
const ANNOUNCE_BYTES = 256 * 2 ** 10;

export interface OffThreadHash {
  /**
   * Copies a chunk for hashing. Returns a promise when the ring was full:
   * the caller must wait for it before the next call (the chunk itself may
   * be reused as soon as this returns or the promise settles).
   */
  update(chunk: Uint8Array): Promise<void> | undefined;
  /**
   * One of the hash's own buffers (`MOVED_BUFFER_BYTES`) to read the next
   * chunk into, or undefined while all of them are at the worker. The
   * same buffer comes back until a chunk in it is handed to `updateInPlace`.
   */
  freeBuffer(): Uint8Array | undefined;
  /**
   * Hashes a chunk that lies in a buffer from `freeBuffer` by moving that
   * buffer to the worker (every view of it is emptied); false, doing
   * nothing, for any other chunk (hash that one with `update`).
   */
  updateInPlace(chunk: Uint8Array): boolean;
  /**
   * Undefined when `freeBuffer` has a buffer to give, else a promise that
   * settles once the worker moves one back (or the hash fails): a producer
   * that waits for it instead of falling back to `update` spares the copy.
   */
  bufferFree(): Promise<void> | undefined;
  /** One digest per algorithm, in the order given; the hash is closed afterwards. */
  digest(): Promise<Uint8Array[]>;
  /** Drops the hash (after a failure of the stream it was hashing). */
  abort(): void;
}

interface Session {
  /** Bytes copied into the ring and not yet hashed. */
  inFlight: number;
  /** Moved buffers back from the worker (or never sent). */
  readonly buffers: ArrayBuffer[];
  waiting?: () => void;
  /** Wakes a producer waiting for a moved buffer to come back. */
  bufferWaiting?: () => void;
  finished?: { resolve(digests: Uint8Array[]): void; reject(error: Error): void };
  failure?: Error;
}

interface WorkerReply {
  id: number;
  hashed?: number;
  /** A moved buffer, hashed and moved back. */
  returned?: ArrayBuffer;
  digests?: Uint8Array[];
  error?: string;
}

class HashWorker {
  readonly #worker: Worker;
  readonly #sessions = new Map<number, Session>();
  /** Rings of closed hashes, kept for the next ones. */
  readonly #spareRings: SharedArrayBuffer[] = [];
  #nextId = 1;
  #dead?: Error;

  constructor() {
    this.#worker = new Worker(new URL('./hash-worker.js', import.meta.url), { execArgv: [] });
    this.#worker.unref();
    this.#worker.on('message', (reply: WorkerReply) => this.#onReply(reply));
    this.#worker.on('error', (error) => this.#die(error));
    this.#worker.on('exit', (code) => this.#die(new Error(`the hash worker exited with status ${code}`)));
  }

  get dead(): boolean {
    return this.#dead !== undefined;
  }

  open(algos: readonly string[]): OffThreadHash {
    const id = this.#nextId++;
    const session: Session = { inFlight: 0, buffers: [] };
    let buffersMade = 0;
    if (this.#dead) session.failure = this.#dead;
    const sharedRing = this.#spareRings.pop() ?? new SharedArrayBuffer(HASH_RING_BYTES);
    const ring = new Uint8Array(sharedRing);
    let writeAt = 0;
    this.#sessions.set(id, session);
    if (this.#sessions.size === 1) this.#worker.ref();
    this.#post({ id, algos: [...algos], ring: sharedRing });
    const closed = () => {
      this.#close(id);
      this.#spareRings.push(sharedRing);
    };

    // Bytes copied in but not yet announced to the worker: small chunks are announced together.
    let unannouncedFrom = 0;
    let unannounced = 0;
    const announce = () => {
      if (unannounced === 0) return;
      this.#post({ id, start: unannouncedFrom, length: unannounced });
      unannounced = 0;
    };
    const freeStretch = () => Math.min(HASH_RING_BYTES - session.inFlight, HASH_RING_BYTES - writeAt);
    /** Hands the `length` bytes at the write position to the worker. */
    const handOver = (length: number) => {
      if (unannounced === 0) unannouncedFrom = writeAt;
      unannounced += length;
      session.inFlight += length;
      writeAt = (writeAt + length) % HASH_RING_BYTES;
      if (unannounced >= ANNOUNCE_BYTES || writeAt === 0) announce();
    };
    /** Copies as much of `bytes` as fits in one stretch of free ring space; returns how much. */
    const copyIn = (bytes: Uint8Array): number => {
      const length = Math.min(freeStretch(), bytes.byteLength);
      if (length === 0) return 0;
      ring.set(bytes.subarray(0, length), writeAt);
      handOver(length);
      return length;
    };
    const untilSpace = () => {
      announce();
      return new Promise<void>((resolve) => {
        session.waiting = resolve;
      });
    };

    return {
      update: (chunk) => {
        if (session.failure) throw session.failure;
        let done = copyIn(chunk);
        if (done < chunk.byteLength) done += copyIn(chunk.subarray(done)); // the rest from the ring's start
        if (done === chunk.byteLength) return undefined;
        const rest = chunk.subarray(done);
        return (async () => {
          let offset = 0;
          while (offset < rest.byteLength) {
            await untilSpace();
            if (session.failure) throw session.failure;
            offset += copyIn(rest.subarray(offset));
          }
        })();
      },
      freeBuffer: () => {
        if (session.buffers.length === 0 && buffersMade < MOVED_BUFFERS) {
          session.buffers.push(new ArrayBuffer(MOVED_BUFFER_BYTES));
          buffersMade++;
        }
        const buffer = session.buffers[session.buffers.length - 1];
        return buffer ? new Uint8Array(buffer) : undefined;
      },
      bufferFree: () => {
        if (session.failure || session.buffers.length > 0 || buffersMade < MOVED_BUFFERS) return undefined;
        return new Promise<void>((resolve) => {
          session.bufferWaiting = resolve;
        });
      },
      updateInPlace: (chunk) => {
        const index = session.buffers.indexOf(chunk.buffer as ArrayBuffer);
        if (index < 0) return false;
        if (session.failure) throw session.failure;
        session.buffers.splice(index, 1);
        announce(); // the ring's bytes so far come first
        const buffer = chunk.buffer as ArrayBuffer;
        if (!this.#dead) this.#worker.postMessage({ id, buffer, start: chunk.byteOffset, length: chunk.byteLength }, [buffer]);
        return true;
      },
      digest: () =>
        new Promise<Uint8Array[]>((resolve, reject) => {
          if (session.failure) return reject(session.failure);
          session.finished = {
            resolve: (digests) => {
              closed();
              resolve(digests);
            },
            reject,
          };
          announce();
          this.#post({ id, finish: true });
        }),
      abort: () => {
        if (!this.#sessions.has(id)) return;
        this.#close(id); // the ring is dropped: the worker may still be reading it
        this.#post({ id, abort: true });
      },
    };
  }

  #post(message: object): void {
    if (!this.#dead) this.#worker.postMessage(message);
  }

  #close(id: number): void {
    this.#sessions.delete(id);
    if (this.#sessions.size === 0) this.#worker.unref();
  }

  #onReply(reply: WorkerReply): void {
    const session = this.#sessions.get(reply.id);
    if (!session) return;
    if (reply.returned) {
      session.buffers.push(reply.returned);
      session.bufferWaiting?.();
      session.bufferWaiting = undefined;
    } else if (reply.hashed !== undefined) {
      session.inFlight -= reply.hashed;
      // Wake the writer once a good stretch is free, not for every chunk hashed.
      if (session.waiting && session.inFlight <= HASH_RING_BYTES / 2) {
        session.waiting();
        session.waiting = undefined;
      }
    } else if (reply.digests) {
      session.finished?.resolve(reply.digests);
    } else {
      this.#fail(reply.id, session, new Error(`hashing failed on the hash worker: ${reply.error}`));
    }
  }

  #fail(id: number, session: Session, error: Error): void {
    session.failure = error;
    session.waiting?.();
    session.bufferWaiting?.();
    session.finished?.reject(error);
    this.#close(id);
  }

  #die(error: Error): void {
    if (this.#dead) return;
    this.#dead = error;
    for (const [id, session] of this.#sessions) this.#fail(id, session, error);
  }
}

let shared: HashWorker | undefined;

/** Opens hashes of `algos` (node:crypto names) on the shared hash worker. */
export function createOffThreadHash(algos: readonly string[]): OffThreadHash {
  if (!shared || shared.dead) shared = new HashWorker();
  return shared.open(algos);
}
