/** Small helpers over async iterables, shared by every layer. */

/** Accepts either a whole buffer or a stream of chunks. */
export type ByteSource = Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

export async function* toChunks(source: ByteSource): AsyncGenerator<Uint8Array> {
  if (source instanceof Uint8Array) {
    yield source;
    return;
  }
  for await (const chunk of source) yield chunk;
}

export async function collect<T>(source: AsyncIterable<T> | Iterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of source) out.push(item);
  return out;
}

export async function concatBytes(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let length = 0;
  for await (const part of source) {
    parts.push(part);
    length += part.byteLength;
  }
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/**
 * Maps `items` through `fn` with at most `concurrency` calls in flight and
 * yields results in input order. Stops pulling input when the consumer stops.
 */
export async function* mapConcurrent<T, R>(
  items: AsyncIterable<T> | Iterable<T>,
  concurrency: number,
  fn: (item: T) => Promise<R>,
): AsyncGenerator<R> {
  const pending: Promise<R>[] = [];
  const iterator = (Symbol.asyncIterator in items ? items[Symbol.asyncIterator]() : (items as Iterable<T>)[Symbol.iterator]()) as
    | AsyncIterator<T>
    | Iterator<T>;
  try {
    for (;;) {
      while (pending.length < concurrency) {
        const next = await iterator.next();
        if (next.done) {
          while (pending.length > 0) yield await (pending.shift() as Promise<R>);
          return;
        }
        const promise = fn(next.value);
        promise.catch(() => {}); // observed when its turn comes
        pending.push(promise);
      }
      yield await (pending.shift() as Promise<R>);
    }
  } finally {
    await iterator.return?.();
    await Promise.allSettled(pending);
  }
}
