/**
 * A Kiln client against a Kiln server, over a unix socket and over TCP with
 * TLS, running the sandbox conformance suite of the local backends: the
 * server builds with bwrap on a store of its own, so every input really
 * travels, and outputs are read back from the server's store.
 */
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBlobService, MemoryDirectoryService } from '../../castore/index.js';
import { selfSignedCertificate } from '../../castore/testing/index.js';
import type { AbortOptions } from '../../common/abort.js';
import type { BuildEvent } from '../build-events.js';
import type { BuildRequest } from '../build-request.js';
import type { BuildService } from '../build-service.js';
import { BwrapBuildService } from '../bwrap/bwrap-build-service.js';
import { bwrapSkipReason, sandboxConformance } from '../testing/index.js';
import { startKilnServer } from './build-grpc-server.js';
import { GrpcBuildService } from './grpc-build-service.js';

/** A client whose server (with its own store and a bwrap builder) starts on first use and stops on close. */
class ClientAndServer implements BuildService {
  readonly name = 'grpc(bwrap)';
  readonly #ready: Promise<{ client: GrpcBuildService; close(): Promise<void> }>;

  constructor(start: () => Promise<{ client: GrpcBuildService; close(): Promise<void> }>) {
    this.#ready = start();
    this.#ready.catch(() => {});
  }

  async *build(request: BuildRequest, options?: AbortOptions): AsyncGenerator<BuildEvent> {
    yield* (await this.#ready).client.build(request, options);
  }

  async remoteBlobService() {
    return (await (await this.#ready).client.remoteCastore()).blobService;
  }

  async close(): Promise<void> {
    const { client, close } = await this.#ready;
    await client.close();
    await close();
  }
}

for (const transport of ['unix', 'tls'] as const) {
  sandboxConformance(`grpc over ${transport === 'unix' ? 'a unix socket' : 'TCP with TLS'} to bwrap`, {
    create: (options) =>
      new ClientAndServer(async () => {
        const dir = await fs.mkdtemp(join(tmpdir(), 'kiln-grpc-build-'));
        const serverStore = { blobService: new MemoryBlobService(), directoryService: new MemoryDirectoryService() };
        const builder = new BwrapBuildService({ ...options, ...serverStore });
        const certificate = transport === 'tls' ? await selfSignedCertificate(dir) : undefined;
        const tls = certificate ? { cert: certificate.cert, key: certificate.key } : undefined;
        const server = await startKilnServer({
          listen: transport === 'unix' ? `unix://${join(dir, 'kiln.sock')}` : '127.0.0.1:0',
          ...serverStore,
          builder,
          journalDir: join(dir, 'journals'),
          token: 'conformance-token',
          ...(tls ? { tls } : {}),
        });
        const url = transport === 'unix' ? server.url : server.url.replace('127.0.0.1', 'localhost');
        const client = new GrpcBuildService({
          url,
          blobService: options.blobService,
          directoryService: options.directoryService,
          token: 'conformance-token',
          ...(tls ? { ca: tls.cert } : {}),
        });
        return {
          client,
          async close() {
            await server.close();
            await builder.close();
            await fs.rm(dir, { recursive: true, force: true });
          },
        };
      }),
    outputBlobService: (service) => (service as ClientAndServer).remoteBlobService(),
    settleMs: 2000,
    ...(bwrapSkipReason() ? { skip: bwrapSkipReason() } : {}),
  });
}
