import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { MemoryBlobService } from '../blob-service/memory.js';
import { MemoryDirectoryService } from '../directory-service/memory.js';
import { describeBlobServiceConformance } from '../testing/index.js';
import { type GrpcBlobService, grpcBlobServiceFromUrl } from './grpc-blob-service.js';
import { type CastoreServer, startCastoreServer } from './server.js';

const servers = new WeakMap<GrpcBlobService, { server: CastoreServer; dir?: string }>();

// The blob fast path (raw HTTP/2) and the connect path must be interchangeable on both ends.
const configurations = [
  { transport: 'unix', client: 'fast', server: 'fast' },
  { transport: 'tcp', client: 'fast', server: 'fast' },
  { transport: 'unix', client: 'connect', server: 'connect' },
  { transport: 'tcp', client: 'fast', server: 'connect' },
  { transport: 'unix', client: 'connect', server: 'fast' },
] as const;

for (const { transport, client, server: serverPath } of configurations) {
  describeBlobServiceConformance(`GrpcBlobService (${transport}, ${client} client, ${serverPath} server, memory behind it)`, {
    async create() {
      const dir = transport === 'unix' ? await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-grpc-')) : undefined;
      const server = await startCastoreServer({
        listen: dir ? `unix://${path.join(dir, 'castore.sock')}` : '127.0.0.1:0',
        blobService: new MemoryBlobService(),
        directoryService: new MemoryDirectoryService(),
        fastBlobPath: serverPath === 'fast',
      });
      const service = await grpcBlobServiceFromUrl(server.url, { fastBlobPath: client === 'fast' });
      servers.set(service, { server, dir });
      return service;
    },
    async destroy(service) {
      await service.close();
      const entry = servers.get(service as GrpcBlobService);
      await entry?.server.close();
      if (entry?.dir) await fs.rm(entry.dir, { recursive: true, force: true });
    },
  });
}
