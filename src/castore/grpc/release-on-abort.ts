/**
 * Server-stream cleanup for connect handlers: when a client cancels, connect
 * aborts the call's signal but leaves the handler's generator suspended at
 * `yield`, so its `finally` blocks never run. This wrapper returns the source
 * iterator as soon as the signal fires, which releases what it holds.
 */

/** Iterates `source`; when `signal` aborts, `source` is returned even if nobody pulls again. */
export function releaseOnAbort<T>(source: AsyncIterable<T>, signal: AbortSignal): AsyncIterableIterator<T> {
  const iterator = source[Symbol.asyncIterator]();
  let finished = false;
  const finish = (): Promise<unknown> => {
    if (finished) return Promise.resolve();
    finished = true;
    signal.removeEventListener('abort', onAbort);
    return Promise.resolve(iterator.return?.()).catch(() => {});
  };
  const onAbort = () => void finish();
  signal.addEventListener('abort', onAbort, { once: true });
  if (signal.aborted) void finish();
  return {
    [Symbol.asyncIterator]() {
      return this;
    },
    async next() {
      signal.throwIfAborted();
      try {
        const result = await iterator.next();
        if (result.done) {
          finished = true;
          signal.removeEventListener('abort', onAbort);
        }
        return result;
      } catch (error) {
        finished = true;
        signal.removeEventListener('abort', onAbort);
        throw error;
      }
    },
    async return(value?: unknown) {
      await finish();
      return { done: true, value: value as T };
    },
  };
}
