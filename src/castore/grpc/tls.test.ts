/**
 * grpc+https: the server with a throwaway self-signed certificate (made with
 * openssl at test time; skipped, saying why, without openssl) and clients
 * that trust it through the `ca` option.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { concatBytes } from '../../common/async-iterable.js';
import { MemoryBlobService } from '../blob-service/memory.js';
import { MemoryDirectoryService } from '../directory-service/memory.js';
import { isCastoreError } from '../errors.js';
import { BLOB_B, BLOB_B_DIGEST, DIRECTORY_A, DIRECTORY_B, DIRECTORY_B_DIGEST } from '../testing/fixtures.js';
import { opensslSkipReason, selfSignedCertificate } from '../testing/interop-tools.js';
import { grpcBlobServiceFromUrl } from './grpc-blob-service.js';
import { openGrpcCastore } from './open-grpc-castore.js';
import { type CastoreServer, startCastoreServer } from './server.js';

const skip = await opensslSkipReason();
if (skip) console.log(`# skipping the TLS tests: ${skip}`);

describe('castore gRPC over TLS (grpc+https)', { skip: skip ?? false }, () => {
  let dir: string;
  let ca: string;
  let server: CastoreServer;
  let port: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-grpc-tls-'));
    const certificate = await selfSignedCertificate(dir);
    ca = certificate.cert;
    server = await startCastoreServer({
      listen: '127.0.0.1:0',
      blobService: new MemoryBlobService(),
      directoryService: new MemoryDirectoryService(),
      tls: { cert: certificate.cert, key: certificate.key },
    });
    port = server.address.split(':')[1] as string;
  });
  after(async () => {
    await server?.close();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('reports a grpc+https URL', () => {
    assert.equal(server.url, `grpc+https://127.0.0.1:${port}`);
  });

  for (const fastBlobPath of [true, false]) {
    it(`round-trips blobs and directories when the client trusts the certificate (${fastBlobPath ? 'fast' : 'connect'} blob path)`, async () => {
      const castore = await openGrpcCastore(`grpc+https://localhost:${port}?wait-connect=1`, { ca, fastBlobPath });
      try {
        const { digest } = await castore.blobService.put(BLOB_B);
        assert.ok(digest.equals(BLOB_B_DIGEST));
        const stream = await castore.blobService.read(BLOB_B_DIGEST);
        assert.ok(stream);
        assert.deepEqual(await concatBytes(stream), BLOB_B);
        assert.ok((await castore.directoryService.putMany([DIRECTORY_A, DIRECTORY_B])).equals(DIRECTORY_B_DIGEST));
      } finally {
        await castore.close();
      }
    });
  }

  it('refuses the self-signed certificate without the ca option', async () => {
    await assert.rejects(grpcBlobServiceFromUrl(`grpc+https://localhost:${port}?wait-connect=1`), (e) =>
      isCastoreError(e, 'BACKEND_FAILURE'),
    );
    const lazy = await grpcBlobServiceFromUrl(`grpc+https://localhost:${port}`);
    await assert.rejects(lazy.has(BLOB_B_DIGEST), (e) => isCastoreError(e, 'BACKEND_FAILURE'));
    await lazy.close();
  });
});
