import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { MemoryBlobService } from '../blob-service/memory.js';
import { MemoryDirectoryService } from '../directory-service/memory.js';
import { describeDirectoryServiceConformance } from '../testing/index.js';
import { GrpcDirectoryService, grpcDirectoryServiceFromUrl } from './grpc-directory-service.js';
import { type CastoreServer, startCastoreServer } from './server.js';

const servers = new WeakMap<GrpcDirectoryService, { server: CastoreServer; dir?: string }>();

for (const transport of ['unix', 'tcp'] as const) {
  describeDirectoryServiceConformance(`GrpcDirectoryService (${transport}, memory behind the server)`, {
    async create() {
      const dir = transport === 'unix' ? await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-grpc-')) : undefined;
      const server = await startCastoreServer({
        listen: dir ? `unix://${path.join(dir, 'castore.sock')}` : '127.0.0.1:0',
        blobService: new MemoryBlobService(),
        directoryService: new MemoryDirectoryService(),
      });
      const service = await grpcDirectoryServiceFromUrl(server.url);
      servers.set(service, { server, dir });
      return service;
    },
    async destroy(service) {
      await service.close();
      const entry = servers.get(service as GrpcDirectoryService);
      await entry?.server.close();
      if (entry?.dir) await fs.rm(entry.dir, { recursive: true, force: true });
    },
  });
}
