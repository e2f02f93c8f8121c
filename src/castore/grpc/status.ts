/**
 * The one place where castore errors become gRPC statuses and back.
 *
 * Server side, `castoreErrorToConnectError` picks the status from the
 * CastoreError code (NOT_FOUND → NotFound, INVALID_* → InvalidArgument,
 * INTEGRITY_MISMATCH → DataLoss, an abort → Canceled, anything else →
 * Internal) and also sends the exact code in the `kiln-castore-error-code`
 * trailer, so a Kiln client can restore it; other peers simply ignore it.
 *
 * Client side, `connectErrorToCastoreError` does the reverse. An abort is
 * never wrapped: when the caller's signal has fired, its reason is returned
 * untouched. Imports connect and castore only; no transport code.
 */
import { Code, ConnectError } from '@connectrpc/connect';
import { isAbortReason } from '../../common/coded-error.js';
import { B3Digest } from '../b3-digest.js';
import { CastoreError, type CastoreErrorCode } from '../errors.js';

/** Trailer carrying the exact CastoreErrorCode next to the gRPC status. */
export const CASTORE_ERROR_CODE_TRAILER = 'kiln-castore-error-code';

const CASTORE_ERROR_CODES: ReadonlySet<string> = new Set<CastoreErrorCode>([
  'NOT_FOUND',
  'INVALID_DIGEST',
  'INVALID_NAME',
  'INVALID_NODE',
  'INVALID_DIRECTORY',
  'INTEGRITY_MISMATCH',
  'INVALID_URL',
  'BACKEND_FAILURE',
]);

/** The gRPC status code for a castore error code. */
export function castoreCodeToGrpcCode(code: CastoreErrorCode): Code {
  if (code === 'NOT_FOUND') return Code.NotFound;
  if (code === 'INTEGRITY_MISMATCH') return Code.DataLoss;
  if (code.startsWith('INVALID_')) return Code.InvalidArgument;
  return Code.Internal;
}

/**
 * Converts anything a service implementation threw into the ConnectError the
 * server sends. `signal` is the call's signal: its reason (or any AbortError)
 * becomes Canceled. A ConnectError passes through unchanged.
 */
export function castoreErrorToConnectError(error: unknown, signal?: AbortSignal): ConnectError {
  if (error instanceof ConnectError) return error;
  if (isAbortReason(error, signal)) return new ConnectError('call canceled', Code.Canceled, undefined, undefined, error);
  if (error instanceof CastoreError) {
    return new ConnectError(
      error.message,
      castoreCodeToGrpcCode(error.code),
      { [CASTORE_ERROR_CODE_TRAILER]: error.code },
      undefined,
      error,
    );
  }
  const message = error instanceof Error ? error.message : String(error);
  return new ConnectError(message, Code.Internal, undefined, undefined, error);
}

/** How a client call turns statuses into castore errors. */
export interface ConnectErrorMappingOptions {
  /** The caller's signal; once it has fired, its reason is returned as is. */
  signal?: AbortSignal;
  /**
   * Code for InvalidArgument when the peer did not name one (a non-Kiln
   * server); defaults to `INVALID_DIGEST`, the only argument most calls take.
   */
  invalidArgumentCode?: CastoreErrorCode;
  /** What the call was, prefixed to the message (e.g. `grpc BlobService.Read`). */
  operation?: string;
}

/**
 * Converts what a gRPC call threw into a CastoreError, or returns the
 * caller's abort reason untouched when the caller aborted.
 */
export function connectErrorToCastoreError(error: unknown, options: ConnectErrorMappingOptions = {}): unknown {
  const { signal } = options;
  if (signal?.aborted) return signal.reason;
  if (error instanceof CastoreError) return error;
  const prefix = options.operation ? `${options.operation}: ` : '';
  if (!(error instanceof ConnectError)) return CastoreError.from(error);
  const named = error.metadata.get(CASTORE_ERROR_CODE_TRAILER);
  let code: CastoreErrorCode;
  if (named !== null && CASTORE_ERROR_CODES.has(named)) code = named as CastoreErrorCode;
  else if (error.code === Code.NotFound) code = 'NOT_FOUND';
  else if (error.code === Code.InvalidArgument) code = options.invalidArgumentCode ?? 'INVALID_DIGEST';
  else if (error.code === Code.DataLoss) code = 'INTEGRITY_MISMATCH';
  else code = 'BACKEND_FAILURE';
  return new CastoreError(code, `${prefix}${error.rawMessage}`, { cause: error, details: { grpcCode: Code[error.code] } });
}

/** True when a call failed because the object is absent (NotFound), the one expected condition. */
export function isNotFound(error: unknown): boolean {
  return error instanceof ConnectError && error.code === Code.NotFound;
}

/** Validates a digest received on the wire; a wrong length is `INVALID_DIGEST` (→ InvalidArgument). */
export function digestFromWire(bytes: Uint8Array, what: string): B3Digest {
  try {
    return B3Digest.fromBytes(bytes);
  } catch (error) {
    throw new CastoreError('INVALID_DIGEST', `invalid digest length ${bytes.byteLength} for ${what}`, { cause: error });
  }
}

/** The NOT_FOUND a lookup answers for an absent object. */
export function notFound(kind: 'blob' | 'directory', digest: B3Digest): CastoreError {
  return new CastoreError('NOT_FOUND', `${kind} ${digest} not found`, { details: { digest: digest.toString() } });
}

/**
 * Call at the end of a connect request stream. When a client resets the
 * stream, node's HTTP/2 layer ends the request body as if it were complete and
 * only the call's signal tells the difference; a cut-off upload must fail.
 */
export function completeRequestStream(signal: AbortSignal): void {
  if (signal.aborted) throw signal.reason ?? new DOMException('the client canceled the call', 'AbortError');
}
