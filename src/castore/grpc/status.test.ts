import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Code, ConnectError } from '@connectrpc/connect';
import { CastoreError, type CastoreErrorCode, isCastoreError } from '../errors.js';
import { CASTORE_ERROR_CODE_TRAILER, castoreCodeToGrpcCode, castoreErrorToConnectError, connectErrorToCastoreError } from './status.js';

describe('castoreCodeToGrpcCode', () => {
  const table: [CastoreErrorCode, Code][] = [
    ['NOT_FOUND', Code.NotFound],
    ['INVALID_DIGEST', Code.InvalidArgument],
    ['INVALID_NAME', Code.InvalidArgument],
    ['INVALID_NODE', Code.InvalidArgument],
    ['INVALID_DIRECTORY', Code.InvalidArgument],
    ['INVALID_URL', Code.InvalidArgument],
    ['INTEGRITY_MISMATCH', Code.DataLoss],
    ['BACKEND_FAILURE', Code.Internal],
  ];
  for (const [code, grpc] of table) it(`maps ${code} to ${Code[grpc]}`, () => assert.equal(castoreCodeToGrpcCode(code), grpc));
});

describe('castoreErrorToConnectError', () => {
  it('carries the status, the message and the exact code as a trailer', () => {
    const error = castoreErrorToConnectError(new CastoreError('INVALID_DIRECTORY', '"b" is not sorted in files'));
    assert.equal(error.code, Code.InvalidArgument);
    assert.equal(error.rawMessage, '"b" is not sorted in files');
    assert.equal(error.metadata.get(CASTORE_ERROR_CODE_TRAILER), 'INVALID_DIRECTORY');
  });

  it('turns the call signal reason and AbortErrors into Canceled', () => {
    const controller = new AbortController();
    const reason = new Error('gone');
    controller.abort(reason);
    assert.equal(castoreErrorToConnectError(reason, controller.signal).code, Code.Canceled);
    assert.equal(castoreErrorToConnectError(new DOMException('x', 'AbortError')).code, Code.Canceled);
  });

  it('maps unknown failures to Internal and passes ConnectErrors through', () => {
    assert.equal(castoreErrorToConnectError(new Error('disk on fire')).code, Code.Internal);
    const passthrough = new ConnectError('nope', Code.Unavailable);
    assert.equal(castoreErrorToConnectError(passthrough), passthrough);
  });
});

describe('connectErrorToCastoreError', () => {
  it('returns the caller abort reason untouched', () => {
    const controller = new AbortController();
    const reason = new Error('stop');
    controller.abort(reason);
    assert.equal(connectErrorToCastoreError(new ConnectError('canceled', Code.Canceled), { signal: controller.signal }), reason);
  });

  it('restores the exact code from the Kiln trailer', () => {
    const wire = new ConnectError('bad', Code.InvalidArgument, { [CASTORE_ERROR_CODE_TRAILER]: 'INVALID_NAME' });
    const error = connectErrorToCastoreError(wire, { operation: 'grpc X' });
    assert.ok(isCastoreError(error, 'INVALID_NAME'));
    assert.equal((error as Error).message, 'grpc X: bad');
    assert.equal((error as Error).cause, wire);
  });

  it('falls back on the status for peers that send no trailer', () => {
    const cases: [Code, CastoreErrorCode, CastoreErrorCode | undefined][] = [
      [Code.NotFound, 'NOT_FOUND', undefined],
      [Code.InvalidArgument, 'INVALID_DIGEST', undefined],
      [Code.InvalidArgument, 'INVALID_DIRECTORY', 'INVALID_DIRECTORY'],
      [Code.DataLoss, 'INTEGRITY_MISMATCH', undefined],
      [Code.Internal, 'BACKEND_FAILURE', undefined],
      [Code.Unavailable, 'BACKEND_FAILURE', undefined],
      [Code.Canceled, 'BACKEND_FAILURE', undefined],
    ];
    for (const [code, expected, invalidArgumentCode] of cases) {
      const error = connectErrorToCastoreError(new ConnectError('x', code), { invalidArgumentCode });
      assert.ok(isCastoreError(error, expected), `${Code[code]} → ${expected}`);
    }
  });

  it('ignores a trailer that names no castore code', () => {
    const error = connectErrorToCastoreError(new ConnectError('x', Code.NotFound, { [CASTORE_ERROR_CODE_TRAILER]: 'SOMETHING_ELSE' }));
    assert.ok(isCastoreError(error, 'NOT_FOUND'));
  });
});
