/**
 * Pipelined writes to an HTTP/2 stream for the blob fast path. Waiting for
 * 'drain' after every chunk (what `write() === false` asks for, given the
 * 16 KiB high-water mark) would stop the producer (a disk read, a hash) until
 * the socket has taken everything; instead up to `limit` bytes may be in
 * flight, and the producer only waits when more are.
 */
import type { Http2Stream } from 'node:http2';

/** Bytes a blob transfer may have queued on its stream before the producer waits. */
export const DEFAULT_WRITE_WINDOW = 8 << 20;

export class WriteWindow {
  readonly #stream: Http2Stream;
  readonly #limit: number;
  #inFlight = 0;
  #wake: (() => void) | undefined;

  constructor(stream: Http2Stream, limit = DEFAULT_WRITE_WINDOW) {
    this.#stream = stream;
    this.#limit = limit;
  }

  /** Queues `data`; it must not be modified until the transfer ends. */
  write(data: Uint8Array): void {
    const length = data.byteLength;
    this.#inFlight += length;
    this.#stream.write(data, () => {
      this.#inFlight -= length;
      if (this.#inFlight <= this.#limit) this.#wake?.();
    });
  }

  /**
   * Resolves once at most `limit` bytes are queued. Rejects with `onClose()`
   * when the stream closes first, or with `signal.reason` when it aborts.
   */
  ready(signal: AbortSignal | undefined, onClose: () => unknown): Promise<void> {
    if (this.#inFlight <= this.#limit) return Promise.resolve();
    const stream = this.#stream;
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        this.#wake = undefined;
        stream.off('close', closed);
        signal?.removeEventListener('abort', aborted);
      };
      const closed = () => {
        cleanup();
        reject(onClose());
      };
      const aborted = () => {
        cleanup();
        reject(signal?.reason);
      };
      this.#wake = () => {
        cleanup();
        resolve();
      };
      stream.on('close', closed);
      signal?.addEventListener('abort', aborted);
      if (signal?.aborted) aborted();
      else if (stream.closed || stream.destroyed) closed();
    });
  }
}
