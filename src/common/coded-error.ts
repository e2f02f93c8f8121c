/**
 * Base class of every typed error in Kiln: a closed code per layer, a message
 * that names the offending value, an optional ES2022 `cause` and structured
 * `details`. Imports nothing of Kiln.
 */
export class CodedError<Code extends string = string> extends Error {
  /** Machine-readable condition; a string-literal union per layer. */
  readonly code: Code;
  /** Structured facts about the failure (digest, field, offset, …). */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: Code, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
  }
}

/** True when `error` is the reason an abort signal carried (we never wrap those). */
export function isAbortReason(error: unknown, signal?: AbortSignal): boolean {
  if (signal?.aborted && error === signal.reason) return true;
  return error instanceof Error && (error.name === 'AbortError' || error.name === 'TimeoutError');
}
