/**
 * A push-to-pull bridge: producers `push` values (from callbacks such as
 * stream 'data' events) and one consumer drains them with `for await`.
 * Unbounded; producers that can pause should watch `size`.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  readonly #items: T[] = [];
  #waiting: (() => void) | undefined;
  #ended = false;
  #error: { error: unknown } | undefined;

  get size(): number {
    return this.#items.length;
  }

  push(item: T): void {
    if (this.#ended) return;
    this.#items.push(item);
    this.#wake();
  }

  /** No more items; the consumer finishes after draining what is queued. */
  end(): void {
    this.#ended = true;
    this.#wake();
  }

  /** The consumer throws `error` after draining what is queued. */
  fail(error: unknown): void {
    this.#error ??= { error };
    this.end();
  }

  #wake(): void {
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for (;;) {
      while (this.#items.length > 0) yield this.#items.shift() as T;
      if (this.#ended) {
        if (this.#error) throw this.#error.error;
        return;
      }
      await new Promise<void>((resolve) => {
        this.#waiting = resolve;
      });
    }
  }
}
