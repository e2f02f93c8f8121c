/**
 * Error → exit status and one-line message. 0 success; 1 the work ran and
 * failed (missing objects, corruption, backend failures, a failed build); 2
 * invalid input or usage (a request a builder rejects for its constraints
 * included: it never ran); 130 interrupted (SIGINT/SIGTERM).
 */
import { CodedError } from '../common/coded-error.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_INVALID = 2;
export const EXIT_INTERRUPTED = 130;

const INVALID_CODES = new Set([
  'USAGE',
  'INVALID_DIGEST',
  'INVALID_NAME',
  'INVALID_NODE',
  'INVALID_DIRECTORY',
  'INVALID_URL',
  'INVALID_REQUEST',
  'CONSTRAINTS_UNMET',
]);

export function exitStatusFor(error: unknown): number {
  if (error instanceof CodedError && INVALID_CODES.has(error.code)) return EXIT_INVALID;
  return EXIT_FAILURE;
}

/** `error: <message>` on one line, with the cause chain and the offending field (when not named yet) appended. */
export function errorLine(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && depth < 4; depth++) {
    const message = current instanceof Error ? current.message : String(current);
    // A gRPC error's message repeats its cause's with the status in front: `[unavailable] …`.
    const core = message.replace(/^\[[a-z_]+\] /, '');
    if (!parts.some((p) => p.includes(core))) parts.push(message);
    current = current instanceof Error ? current.cause : undefined;
  }
  const field = error instanceof CodedError ? error.details.field : undefined;
  const named = typeof field === 'string' && !parts.some((p) => p.includes(field)) ? ` (field ${field})` : '';
  return `error: ${parts.join(': ').replace(/\s*\n\s*/g, ' ')}${named}`;
}
