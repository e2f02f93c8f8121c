/**
 * Reads an HTTP/2 stream ahead of its consumer. node:http2 delivers one
 * piece per DATA frame (at most 16 KiB) and stops reading once 16 KiB wait
 * unread, so a consumer that writes each chunk to disk would see 16 KiB
 * chunks. Here the stream keeps flowing into a queue of up to `limit` bytes
 * while the consumer is busy, and each `next()` hands over everything
 * queued; HTTP/2 flow control still applies beyond the limit.
 */
import type { Readable } from 'node:stream';

/** Bytes a blob transfer may queue ahead of its consumer. */
export const DEFAULT_READ_AHEAD = 4 << 20;

export class ReadAhead {
  readonly #stream: Readable;
  readonly #limit: number;
  #queue: Buffer[] = [];
  #queued = 0;
  #ended = false;
  #error: { error: unknown } | undefined;
  #wake: (() => void) | undefined;
  readonly #onData = (chunk: Buffer) => {
    this.#queue.push(chunk);
    this.#queued += chunk.byteLength;
    if (this.#queued >= this.#limit) this.#stream.pause();
    this.#notify();
  };
  readonly #onEnd = () => {
    this.#ended = true;
    this.#notify();
  };
  readonly #onError = (error: unknown) => {
    this.#error ??= { error };
    this.#notify();
  };
  readonly #onClose = () => {
    if (!this.#ended) this.#error ??= { error: new Error('stream closed before its end') };
    this.#notify();
  };

  constructor(stream: Readable, limit = DEFAULT_READ_AHEAD) {
    this.#stream = stream;
    this.#limit = limit;
    stream.on('data', this.#onData);
    stream.once('end', this.#onEnd);
    stream.on('error', this.#onError);
    stream.once('close', this.#onClose);
  }

  /**
   * Everything received since the last call (waiting for at least one piece),
   * or undefined once the stream has ended. Throws when the stream failed.
   */
  async next(): Promise<Buffer[] | undefined> {
    while (this.#queue.length === 0) {
      if (this.#error) throw this.#error.error;
      if (this.#ended) return undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
    const batch = this.#queue;
    this.#queue = [];
    this.#queued = 0;
    if (this.#stream.isPaused() && !this.#ended) this.#stream.resume();
    return batch;
  }

  /** Stops listening; the stream is left as it is. */
  dispose(): void {
    const stream = this.#stream;
    stream.off('data', this.#onData);
    stream.off('end', this.#onEnd);
    stream.off('error', this.#onError);
    stream.off('close', this.#onClose);
    stream.pause();
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}
