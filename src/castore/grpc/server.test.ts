import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { create, toBinary } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import type { AbortOptions } from '../../common/abort.js';
import { type ByteSource, collect, toChunks } from '../../common/async-iterable.js';
import { DirectorySchema } from '../../gen/snix/castore/v1/castore_pb.js';
import { BlobService as BlobServiceDesc } from '../../gen/snix/castore/v1/rpc_blobstore_pb.js';
import { DirectoryService as DirectoryServiceDesc } from '../../gen/snix/castore/v1/rpc_directory_pb.js';
import { B3Digest } from '../b3-digest.js';
import type { BlobPutOptions, BlobPutResult, BlobReadOptions, BlobService } from '../blob-service/blob-service.js';
import { MemoryBlobService } from '../blob-service/memory.js';
import type { Directory } from '../directory.js';
import type { DirectoryService } from '../directory-service/directory-service.js';
import { MemoryDirectoryService } from '../directory-service/memory.js';
import { CastoreError, isCastoreError } from '../errors.js';
import { directoryToMessage } from '../proto-convert.js';
import { BLOB_B, BLOB_B_DIGEST, DIRECTORY_A, DIRECTORY_B, DIRECTORY_B_DIGEST } from '../testing/fixtures.js';
import { GrpcChannel } from './channel.js';
import { BLOB_PUT_PATH, readBlobFast } from './fast-blob-client.js';
import { GrpcBlobService } from './grpc-blob-service.js';
import { blobChunkFrameHead, frameMessage } from './grpc-framing.js';
import { type CastoreServer, startCastoreServer } from './server.js';
import { CASTORE_ERROR_CODE_TRAILER } from './status.js';

/** Records how every put ended, so a test can wait for the server to give up on a cut-off upload. */
class SpyBlobService implements BlobService {
  readonly inner = new MemoryBlobService();
  readonly outcomes: Promise<'stored' | 'failed'>[] = [];
  has(digest: B3Digest, options?: AbortOptions) {
    return this.inner.has(digest, options);
  }
  read(digest: B3Digest, options?: BlobReadOptions) {
    return this.inner.read(digest, options);
  }
  put(source: ByteSource, options?: BlobPutOptions): Promise<BlobPutResult> {
    const result = this.inner.put(source, options);
    this.outcomes.push(
      result.then(
        () => 'stored' as const,
        () => 'failed' as const,
      ),
    );
    return result;
  }
  async close() {}
}

class SpyDirectoryService implements DirectoryService {
  readonly inner = new MemoryDirectoryService();
  readonly outcomes: Promise<'stored' | 'failed'>[] = [];
  get(digest: B3Digest, options?: AbortOptions) {
    return this.inner.get(digest, options);
  }
  getRecursive(root: B3Digest, options?: AbortOptions) {
    return this.inner.getRecursive(root, options);
  }
  putMany(directories: AsyncIterable<Directory> | Iterable<Directory>, options?: AbortOptions) {
    const result = this.inner.putMany(directories, options);
    this.outcomes.push(
      result.then(
        () => 'stored' as const,
        () => 'failed' as const,
      ),
    );
    return result;
  }
  async close() {}
}

async function waitForOutcome(outcomes: Promise<'stored' | 'failed'>[], count: number): Promise<'stored' | 'failed'> {
  for (let i = 0; i < 200 && outcomes.length < count; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(outcomes.length, count, 'the server never started the put');
  return outcomes[count - 1] as Promise<'stored' | 'failed'>;
}

async function* stream<T>(items: T[]): AsyncGenerator<T> {
  yield* items;
}

function grpcHeaders(path: string): http2.OutgoingHttpHeaders {
  return { ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' };
}

for (const fastBlobPath of [true, false]) {
  describe(`castore server (blob ${fastBlobPath ? 'fast' : 'connect'} path)`, () => {
    let dir: string;
    let server: CastoreServer;
    let channel: GrpcChannel;
    const blobs = new SpyBlobService();
    const directories = new SpyDirectoryService();
    const socket = () => path.join(dir, 'castore.sock');

    before(async () => {
      dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-grpc-server-'));
      server = await startCastoreServer({ listen: `unix://${socket()}`, blobService: blobs, directoryService: directories, fastBlobPath });
      channel = new GrpcChannel(server.url);
    });
    after(async () => {
      await channel.close();
      await server.close();
      await fs.rm(dir, { recursive: true, force: true });
    });

    it('reports its address and channel URL', () => {
      assert.equal(server.address, `unix://${socket()}`);
      assert.equal(server.url, `grpc+unix://${socket()}`);
    });

    it('answers NOT_FOUND for an absent blob on Stat and Read', async () => {
      const client = createClient(BlobServiceDesc, channel.transport);
      const absent = new Uint8Array(32).fill(1);
      await assert.rejects(client.stat({ digest: absent }), (e) => e instanceof ConnectError && e.code === Code.NotFound);
      await assert.rejects(collect(client.read({ digest: absent })), (e) => e instanceof ConnectError && e.code === Code.NotFound);
      await assert.rejects(collect(readBlobFast(channel, absent)), (e) => e instanceof ConnectError && e.code === Code.NotFound);
    });

    it('answers INVALID_ARGUMENT for a 2-byte digest on Stat and Read', async () => {
      const client = createClient(BlobServiceDesc, channel.transport);
      const short = Uint8Array.of(1, 2);
      const invalid = (e: unknown) =>
        e instanceof ConnectError && e.code === Code.InvalidArgument && e.metadata.get(CASTORE_ERROR_CODE_TRAILER) === 'INVALID_DIGEST';
      await assert.rejects(client.stat({ digest: short }), invalid);
      await assert.rejects(collect(client.read({ digest: short })), invalid);
      await assert.rejects(collect(readBlobFast(channel, short)), invalid);
    });

    it('Stat answers an empty chunk list for a stored blob', async () => {
      await blobs.inner.put(BLOB_B);
      const response = await createClient(BlobServiceDesc, channel.transport).stat({ digest: BLOB_B_DIGEST.bytes, sendChunks: true });
      assert.deepEqual(response.chunks, []);
    });

    it('answers DATA_LOSS when the stored bytes are corrupt, and the client reports INTEGRITY_MISMATCH', async () => {
      const bytes = new TextEncoder().encode(`corrupt me ${fastBlobPath}`);
      const { digest } = await blobs.inner.put(bytes);
      blobs.inner.corruptForTesting(digest, new TextEncoder().encode('something else entirely'));
      const client = createClient(BlobServiceDesc, channel.transport);
      await assert.rejects(collect(client.read({ digest: digest.bytes })), (e) => e instanceof ConnectError && e.code === Code.DataLoss);
      await assert.rejects(collect(readBlobFast(channel, digest.bytes)), (e) => e instanceof ConnectError && e.code === Code.DataLoss);
      const service = new GrpcBlobService(channel, { keepChannelOpen: true });
      const stream = await service.read(digest);
      assert.ok(stream);
      await assert.rejects(collect(stream), (e) => isCastoreError(e, 'INTEGRITY_MISMATCH'));
    });

    it('sends Read responses in messages of at most 1 MiB (under every peer’s 4 MiB limit)', async () => {
      const data = new Uint8Array(5 << 20).fill(7);
      const { digest } = await blobs.inner.put(data);
      const sizes = (await collect(createClient(BlobServiceDesc, channel.transport).read({ digest: digest.bytes }))).map(
        (m) => m.data.byteLength,
      );
      assert.equal(
        sizes.reduce((a, b) => a + b, 0),
        data.byteLength,
      );
      assert.ok(Math.max(...sizes) <= 1 << 20, `largest message ${Math.max(...sizes)}`);
    });

    for (const cut of ['RST_STREAM(CANCEL)', 'a dropped connection'] as const) {
      it(`a blob Put cut off midway by ${cut} stores nothing`, async () => {
        const data = new Uint8Array(3 << 20).fill(fastBlobPath ? 3 : 4);
        const firstPart = data.subarray(0, 1 << 20);
        const started = blobs.outcomes.length;
        const session = http2.connect('http://localhost', { createConnection: () => net.connect(socket()) });
        session.on('error', () => {});
        const cancel = new AbortController();
        const stream = session.request(grpcHeaders(BLOB_PUT_PATH), { signal: cancel.signal });
        stream.on('error', () => {});
        stream.write(blobChunkFrameHead(firstPart.byteLength));
        await new Promise<void>((resolve) => stream.write(firstPart, () => resolve()));
        const outcome = waitForOutcome(blobs.outcomes, started + 1);
        if (cut === 'RST_STREAM(CANCEL)') cancel.abort();
        else session.destroy();
        assert.equal(await outcome, 'failed');
        assert.equal(await blobs.has(B3Digest.of(firstPart)), false);
        assert.equal(await blobs.has(B3Digest.of(data)), false);
        session.destroy();
      });
    }

    it('a directory Put cut off midway stores nothing', async () => {
      const started = directories.outcomes.length;
      const session = http2.connect('http://localhost', { createConnection: () => net.connect(socket()) });
      session.on('error', () => {});
      const cancel = new AbortController();
      const stream = session.request(grpcHeaders('/snix.castore.v1.DirectoryService/Put'), { signal: cancel.signal });
      stream.on('error', () => {});
      await new Promise<void>((resolve) =>
        stream.write(frameMessage(toBinary(DirectorySchema, directoryToMessage(DIRECTORY_A))), () => resolve()),
      );
      const outcome = waitForOutcome(directories.outcomes, started + 1);
      cancel.abort();
      assert.equal(await outcome, 'failed');
      assert.equal(await directories.get(DIRECTORY_A.digest), undefined);
      session.destroy();
    });

    it('Directory Get: INVALID_ARGUMENT without by_what or with a short digest, NOT_FOUND for one absent directory, empty closure for an absent root', async () => {
      const client = createClient(DirectoryServiceDesc, channel.transport);
      const isCode = (code: Code) => (e: unknown) => e instanceof ConnectError && e.code === code;
      await assert.rejects(collect(client.get({})), isCode(Code.InvalidArgument));
      await assert.rejects(collect(client.get({ byWhat: { case: 'digest', value: Uint8Array.of(1, 2) } })), isCode(Code.InvalidArgument));
      const absent = new Uint8Array(32).fill(9);
      await assert.rejects(collect(client.get({ byWhat: { case: 'digest', value: absent } })), isCode(Code.NotFound));
      assert.deepEqual(await collect(client.get({ byWhat: { case: 'digest', value: absent }, recursive: true })), []);
    });

    it('Directory Put: INVALID_ARGUMENT (INVALID_DIRECTORY) for an unsorted message, a dangling closure and an empty stream', async () => {
      const client = createClient(DirectoryServiceDesc, channel.transport);
      const invalid = (e: unknown) =>
        e instanceof ConnectError && e.code === Code.InvalidArgument && e.metadata.get(CASTORE_ERROR_CODE_TRAILER) === 'INVALID_DIRECTORY';
      const unsorted = create(DirectorySchema, {
        symlinks: [
          { name: new TextEncoder().encode('b'), target: new TextEncoder().encode('/x') },
          { name: new TextEncoder().encode('a'), target: new TextEncoder().encode('/x') },
        ],
      });
      await assert.rejects(client.put(stream([unsorted])), invalid);
      await assert.rejects(client.put(stream([directoryToMessage(DIRECTORY_B)])), invalid);
      await assert.rejects(client.put(stream([])), invalid);
      assert.equal(await directories.get(DIRECTORY_B_DIGEST), undefined);
    });

    it('Directory Put stores a closure and Get returns it root first', async () => {
      const client = createClient(DirectoryServiceDesc, channel.transport);
      const response = await client.put(stream([directoryToMessage(DIRECTORY_A), directoryToMessage(DIRECTORY_B)]));
      assert.deepEqual(response.rootDigest, DIRECTORY_B_DIGEST.bytes);
      const closure = await collect(client.get({ byWhat: { case: 'digest', value: DIRECTORY_B_DIGEST.bytes }, recursive: true }));
      assert.equal(closure.length, 2);
    });
  });
}

describe('startCastoreServer', () => {
  it('listens on TCP port 0, reports the bound port, and close() stops it', async () => {
    const server = await startCastoreServer({
      listen: '127.0.0.1:0',
      blobService: new MemoryBlobService(),
      directoryService: new MemoryDirectoryService(),
    });
    const port = Number(server.address.split(':')[1]);
    assert.ok(port > 0);
    assert.equal(server.url, `grpc+http://127.0.0.1:${port}`);
    await server.close();
    await assert.rejects(
      new Promise((resolve, reject) => net.connect(port, '127.0.0.1').once('connect', resolve).once('error', reject)),
      (e) => (e as NodeJS.ErrnoException).code === 'ECONNREFUSED',
    );
  });

  it('replaces a stale socket file, refuses a live one, and removes its socket on close', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-grpc-sock-'));
    const socket = path.join(dir, 's.sock');
    try {
      const stale = net.createServer().listen(socket);
      await new Promise((resolve) => stale.once('listening', resolve));
      // Closing a node server unlinks its socket; a crashed one would not, so recreate the file.
      await new Promise((resolve) => stale.close(resolve));
      await fs.writeFile(socket, '');
      const options = { listen: `unix://${socket}`, blobService: new MemoryBlobService(), directoryService: new MemoryDirectoryService() };
      const server = await startCastoreServer(options);
      await assert.rejects(startCastoreServer(options), (e) => (e as NodeJS.ErrnoException).code === 'EADDRINUSE');
      await server.close();
      await assert.rejects(fs.stat(socket), (e) => (e as NodeJS.ErrnoException).code === 'ENOENT');
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('serves routes added through extraRoutes on the same listener', async () => {
    let called = false;
    const server = await startCastoreServer({
      listen: '127.0.0.1:0',
      blobService: new MemoryBlobService(),
      directoryService: new MemoryDirectoryService(),
      extraRoutes(router) {
        // A second implementation of Stat stands in for another service (e.g. the build service).
        router.rpc(BlobServiceDesc.method.stat, async () => {
          called = true;
          return {};
        });
      },
    });
    const channel = new GrpcChannel(server.url);
    try {
      await createClient(BlobServiceDesc, channel.transport).stat({ digest: BLOB_B_DIGEST.bytes });
      assert.equal(called, true);
    } finally {
      await channel.close();
      await server.close();
    }
  });
});

/** A store that gives up after the first chunk of every upload. */
class FullBlobService extends MemoryBlobService {
  override async put(source: ByteSource): Promise<BlobPutResult> {
    await toChunks(source).next();
    throw new CastoreError('BACKEND_FAILURE', 'disk full');
  }
}

describe('a server that fails an upload midway', () => {
  for (const [fastBlobPath, client] of [
    [true, 'fast'],
    [true, 'connect'],
    [false, 'fast'],
    [false, 'connect'],
  ] as const) {
    it(`reports its error to a ${client} client still uploading (${fastBlobPath ? 'fast' : 'connect'} server path)`, async () => {
      const server = await startCastoreServer({
        listen: '127.0.0.1:0',
        blobService: new FullBlobService(),
        directoryService: new MemoryDirectoryService(),
        fastBlobPath,
      });
      const service = new GrpcBlobService(new GrpcChannel(server.url), { fastBlobPath: client === 'fast' });
      try {
        async function* endless() {
          const piece = new Uint8Array(1 << 20);
          for (let i = 0; i < 256; i++) yield piece;
        }
        await assert.rejects(service.put(endless()), (e) => isCastoreError(e, 'BACKEND_FAILURE') && /disk full/.test((e as Error).message));
      } finally {
        await service.close();
        await server.close();
      }
    });
  }
});
