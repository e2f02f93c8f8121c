import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { MemoryBlobService } from '../blob-service/memory.js';
import { MemoryDirectoryService } from '../directory-service/memory.js';
import { describeBlobServiceConformance } from '../testing/index.js';
import { GrpcBlobService, grpcBlobServiceFromUrl } from './grpc-blob-service.js';
import { type CastoreServer, startCastoreServer } from './server.js';

const servers = new WeakMap<GrpcBlobService, { server: CastoreServer; dir?: string }>();

for (const transport of ['unix', 'tcp'] as const) {
  describeBlobServiceConformance(`GrpcBlobService (${transport}, memory behind the server)`, {
    async create() {
      const dir = transport === 'unix' ? await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-grpc-')) : undefined;
      const server = await startCastoreServer({
        listen: dir ? `unix://${path.join(dir, 'castore.sock')}` : '127.0.0.1:0',
        blobService: new MemoryBlobService(),
        directoryService: new MemoryDirectoryService(),
      });
      const service = await grpcBlobServiceFromUrl(server.url);
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
