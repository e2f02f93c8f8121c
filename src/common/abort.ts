/**
 * Abort helpers shared by every layer: the `AbortOptions` type and racing a
 * promise against a signal. Imports nothing of Kiln.
 */

/** Every async operation accepts these as its final options. */
export interface AbortOptions {
  /** Cancels the operation; it then rejects with `signal.reason`, unwrapped. */
  signal?: AbortSignal;
}

/** Resolves like `promise`, or rejects with `signal.reason` as soon as it aborts. */
export function raceAbort<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
