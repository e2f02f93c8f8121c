import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { collect } from '../../common/async-iterable.js';
import type { B3Digest } from '../b3-digest.js';
import { MemoryBlobService } from '../blob-service/memory.js';
import { Directory } from '../directory.js';
import type { DirectoryService } from '../directory-service/directory-service.js';
import { MemoryDirectoryService } from '../directory-service/memory.js';
import { isCastoreError } from '../errors.js';
import { directoryNode } from '../node.js';
import { parsePathComponent } from '../path-component.js';
import {
  DIRECTORY_A,
  DIRECTORY_A_DIGEST,
  DIRECTORY_B,
  DIRECTORY_B_DIGEST,
  DIRECTORY_C,
  DIRECTORY_C_DIGEST,
  describeDirectoryServiceConformance,
} from '../testing/index.js';
import { type GrpcDirectoryService, grpcDirectoryServiceFromUrl } from './grpc-directory-service.js';
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

/** A backend that answers whatever a test scripts, to check what the client accepts. */
class ScriptedDirectoryService implements DirectoryService {
  closure: Directory[] = [];
  single: Directory | undefined;
  async get() {
    return this.single;
  }
  async *getRecursive() {
    yield* this.closure;
  }
  async putMany(): Promise<B3Digest> {
    throw new Error('not scripted');
  }
  async close() {}
}

describe('GrpcDirectoryService validates what the server sends', () => {
  const scripted = new ScriptedDirectoryService();
  let server: CastoreServer;
  let client: GrpcDirectoryService;
  before(async () => {
    server = await startCastoreServer({ listen: '127.0.0.1:0', blobService: new MemoryBlobService(), directoryService: scripted });
    client = await grpcDirectoryServiceFromUrl(server.url);
  });
  after(async () => {
    await client.close();
    await server.close();
  });

  // Snix's download-order vectors (fixtures A–D; BROKEN points at A with a wrong size).
  const BROKEN = Directory.fromEntries([{ name: parsePathComponent('foo'), node: directoryNode(DIRECTORY_A_DIGEST, 42) }]);
  const cases: [string, B3Digest, Directory[], ((e: unknown) => boolean) | undefined][] = [
    ['root A: A', DIRECTORY_A_DIGEST, [DIRECTORY_A], undefined],
    ['root B: B, A', DIRECTORY_B_DIGEST, [DIRECTORY_B, DIRECTORY_A], undefined],
    ['root C: C, A', DIRECTORY_C_DIGEST, [DIRECTORY_C, DIRECTORY_A], undefined],
    [
      'root C: C, B',
      DIRECTORY_C_DIGEST,
      [DIRECTORY_C, DIRECTORY_B],
      (e) => isCastoreError(e, 'BACKEND_FAILURE') && /unexpected directory/.test((e as Error).message),
    ],
    ['root B: A', DIRECTORY_B_DIGEST, [DIRECTORY_A], (e) => isCastoreError(e, 'BACKEND_FAILURE')],
    [
      'root BROKEN: BROKEN, A',
      BROKEN.digest,
      [BROKEN, DIRECTORY_A],
      (e) => isCastoreError(e, 'INVALID_DIRECTORY') && /wrong size/.test((e as Error).message),
    ],
    ['root B: B (A missing at the end)', DIRECTORY_B_DIGEST, [DIRECTORY_B], (e) => isCastoreError(e, 'NOT_FOUND')],
  ];
  for (const [name, root, closure, rejects] of cases) {
    it(`getRecursive ${rejects ? 'rejects' : 'accepts'} ${name}`, async () => {
      scripted.closure = closure;
      if (rejects) await assert.rejects(collect(client.getRecursive(root)), rejects);
      else
        assert.deepEqual(
          (await collect(client.getRecursive(root))).map((d) => d.digest.toHex()),
          closure.map((d) => d.digest.toHex()),
        );
    });
  }

  it('get rejects a directory whose digest is not the one requested', async () => {
    scripted.single = DIRECTORY_B;
    await assert.rejects(client.get(DIRECTORY_C_DIGEST), (e) => isCastoreError(e, 'INTEGRITY_MISMATCH'));
    assert.equal((await client.get(DIRECTORY_B_DIGEST))?.digest.toHex(), DIRECTORY_B_DIGEST.toHex());
  });

  it('breaking out of getRecursive cancels the call', async () => {
    scripted.closure = [DIRECTORY_B, DIRECTORY_A];
    for await (const directory of client.getRecursive(DIRECTORY_B_DIGEST)) {
      assert.equal(directory.digest.toHex(), DIRECTORY_B_DIGEST.toHex());
      break;
    }
    scripted.single = DIRECTORY_A;
    assert.ok(await client.get(DIRECTORY_A_DIGEST));
  });
});
