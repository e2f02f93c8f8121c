/**
 * The one place where build errors become gRPC statuses and back. The exact
 * BuildErrorCode travels in the `kiln-build-error-code` trailer, so a Kiln
 * client restores it; other peers see a fitting standard status.
 */
import { Code, ConnectError } from '@connectrpc/connect';
import { isCastoreError } from '../../castore/index.js';
import { isAbortReason } from '../../common/coded-error.js';
import { BuildError, type BuildErrorCode } from '../errors.js';

export const BUILD_ERROR_CODE_TRAILER = 'kiln-build-error-code';

const GRPC_CODES: Record<BuildErrorCode, Code> = {
  INVALID_REQUEST: Code.InvalidArgument,
  CONSTRAINTS_UNMET: Code.FailedPrecondition,
  INPUT_MISSING: Code.FailedPrecondition,
  BUILDER_BUSY: Code.ResourceExhausted,
  SANDBOX_UNAVAILABLE: Code.Unavailable,
  BUILDER_UNREACHABLE: Code.Unavailable,
  UNAUTHENTICATED: Code.Unauthenticated,
  BUILDER_FAILED: Code.Internal,
  OUTPUT_MISSING: Code.Internal,
};

/** What a server sends for an error a build call threw. */
export function buildErrorToConnectError(error: unknown, signal?: AbortSignal): ConnectError {
  if (error instanceof ConnectError) return error;
  if (isAbortReason(error, signal)) return new ConnectError('call canceled', Code.Canceled, undefined, undefined, error);
  if (error instanceof BuildError)
    return new ConnectError(error.message, GRPC_CODES[error.code], { [BUILD_ERROR_CODE_TRAILER]: error.code }, undefined, error);
  if ((error as { code?: string }).code === 'NOT_FOUND')
    return new ConnectError((error as Error).message, Code.FailedPrecondition, { [BUILD_ERROR_CODE_TRAILER]: 'INPUT_MISSING' });
  return new ConnectError(error instanceof Error ? error.message : String(error), Code.Internal, undefined, undefined, error);
}

/** The build error code for a failed call's gRPC status. */
function codeFor(grpcCode: Code): BuildErrorCode {
  if (grpcCode === Code.Unauthenticated || grpcCode === Code.PermissionDenied) return 'UNAUTHENTICATED';
  if (grpcCode === Code.InvalidArgument) return 'INVALID_REQUEST';
  if (grpcCode === Code.FailedPrecondition) return 'CONSTRAINTS_UNMET';
  if (grpcCode === Code.ResourceExhausted) return 'BUILDER_BUSY';
  if (grpcCode === Code.Unavailable || grpcCode === Code.Unknown || grpcCode === Code.Canceled) return 'BUILDER_UNREACHABLE';
  return 'BUILDER_FAILED';
}

/**
 * What a client raises for a failed call (a build call, or a castore call
 * made for a build: uploading its inputs); the caller's own abort comes
 * back untouched. The message names the builder.
 */
export function connectErrorToBuildError(error: unknown, url: string, signal?: AbortSignal): unknown {
  if (signal?.aborted) return signal.reason;
  if (error instanceof BuildError) return error;
  if (isCastoreError(error)) {
    const grpcCode = error.details.grpcCode;
    const code =
      typeof grpcCode === 'string' && grpcCode in Code
        ? codeFor(Code[grpcCode as keyof typeof Code])
        : error.code === 'BACKEND_FAILURE'
          ? 'BUILDER_UNREACHABLE'
          : 'BUILDER_FAILED';
    return new BuildError(code, `builder ${url}: ${error.message}`, { cause: error, details: { ...error.details } });
  }
  const connect = ConnectError.from(error);
  const named = connect.metadata.get(BUILD_ERROR_CODE_TRAILER);
  const code = named !== null && named in GRPC_CODES ? (named as BuildErrorCode) : codeFor(connect.code);
  return new BuildError(code, `builder ${url}: ${connect.rawMessage}`, { cause: error, details: { grpcCode: Code[connect.code] } });
}
