/**
 * The build layer's one error class and its closed set of codes.
 */
import { CodedError } from '../common/coded-error.js';

/**
 * - `INVALID_REQUEST`: the BuildRequest breaks a rule; `details.field` names the field.
 * - `SANDBOX_UNAVAILABLE`: the backend cannot run here (binary missing, kernel refuses, wrong platform).
 * - `CONSTRAINTS_UNMET`: this builder cannot satisfy the request's constraints (system, memory, paths).
 * - `BUILDER_FAILED`: the build ran and failed (exit code, signal, timeout, out of memory).
 * - `OUTPUT_MISSING`: the build ended without producing a requested output.
 * - `INPUT_MISSING`: an input's closure is not in the store; `details.missing` lists digests.
 * - `BUILDER_BUSY`: a remote builder's queue is full; try later or elsewhere.
 * - `BUILDER_UNREACHABLE`: a remote builder cannot be reached, or the connection broke.
 * - `UNAUTHENTICATED`: a remote builder refused the credentials.
 */
export type BuildErrorCode =
  | 'INVALID_REQUEST'
  | 'SANDBOX_UNAVAILABLE'
  | 'CONSTRAINTS_UNMET'
  | 'BUILDER_FAILED'
  | 'OUTPUT_MISSING'
  | 'INPUT_MISSING'
  | 'BUILDER_BUSY'
  | 'BUILDER_UNREACHABLE'
  | 'UNAUTHENTICATED';

export class BuildError extends CodedError<BuildErrorCode> {
  override readonly name = 'BuildError';
}

export function isBuildError(error: unknown, code?: BuildErrorCode): error is BuildError {
  return error instanceof BuildError && (code === undefined || error.code === code);
}

/** An INVALID_REQUEST error naming the field. */
export function invalidRequest(field: string, problem: string): BuildError {
  return new BuildError('INVALID_REQUEST', `invalid build request: ${field} ${problem}`, { details: { field } });
}
