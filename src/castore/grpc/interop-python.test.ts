/**
 * Interoperability with a second gRPC implementation: the Python grpcio
 * client (gRPC C-core) talks to our server over a Unix socket and TCP, with
 * message classes generated from proto/ at test time. Skips, printing why,
 * when python3 with grpcio and protobuf, or protoc, is missing.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { concatBytes } from '../../common/async-iterable.js';
import { B3Digest } from '../b3-digest.js';
import { MemoryBlobService } from '../blob-service/memory.js';
import { Directory } from '../directory.js';
import { MemoryDirectoryService } from '../directory-service/memory.js';
import { isCastoreError } from '../errors.js';
import { directoryNode, fileNode } from '../node.js';
import { parsePathComponent } from '../path-component.js';
import { findPythonGrpcTools } from '../testing/interop-tools.js';
import { grpcBlobServiceFromUrl } from './grpc-blob-service.js';
import { type CastoreServer, startCastoreServer } from './server.js';

const run = promisify(execFile);
const PROTO_ROOT = path.resolve(import.meta.dirname, '../../../proto');
const BLOB_SIZE = 6 << 20; // more than the 4 MiB a grpcio client accepts per message by default

const CLIENT = String.raw`
import json, sys
sys.path.insert(0, sys.argv[1])
import grpc
from snix.castore.v1 import castore_pb2 as c, rpc_blobstore_pb2 as b, rpc_directory_pb2 as d

target, size = sys.argv[2], int(sys.argv[3])
data = (bytes(range(251)) * (size // 251 + 1))[:size]
channel = grpc.insecure_channel(target)
def method(kind, path, request, response):
    return getattr(channel, kind)(path, request_serializer=request.SerializeToString, response_deserializer=response.FromString)
stat = method('unary_unary', '/snix.castore.v1.BlobService/Stat', b.StatBlobRequest, b.StatBlobResponse)
read = method('unary_stream', '/snix.castore.v1.BlobService/Read', b.ReadBlobRequest, b.BlobChunk)
put = method('stream_unary', '/snix.castore.v1.BlobService/Put', b.BlobChunk, b.PutBlobResponse)
dget = method('unary_stream', '/snix.castore.v1.DirectoryService/Get', d.GetDirectoryRequest, c.Directory)
dput = method('stream_unary', '/snix.castore.v1.DirectoryService/Put', c.Directory, d.PutDirectoryResponse)

def status(call):
    try:
        call()
        return 'OK'
    except grpc.RpcError as error:
        return error.code().name

out = {}
digest = put(b.BlobChunk(data=data[i:i + 100000]) for i in range(0, size, 100000)).digest
out['put_digest'] = digest.hex()
out['stat'] = status(lambda: stat(b.StatBlobRequest(digest=digest)))
chunks = [chunk.data for chunk in read(b.ReadBlobRequest(digest=digest))]
out['read_equal'] = b''.join(chunks) == data
out['read_largest_message'] = max(len(chunk) for chunk in chunks)
out['stat_absent'] = status(lambda: stat(b.StatBlobRequest(digest=bytes(32))))
out['stat_short'] = status(lambda: stat(b.StatBlobRequest(digest=b'\x01\x02')))
out['read_absent'] = status(lambda: list(read(b.ReadBlobRequest(digest=bytes(32)))))

def failing_upload():
    yield b.BlobChunk(data=b'cancelled upload ' * 5000)
    raise RuntimeError('source broke')
out['put_cancelled'] = status(lambda: put(failing_upload()))

child = c.Directory(files=[c.FileEntry(name=b'blob', digest=digest, size=size, executable=True)])
child_digest = dput(iter([child])).root_digest
parent = c.Directory(directories=[c.DirectoryEntry(name=b'sub', digest=child_digest, size=1)],
                     symlinks=[c.SymlinkEntry(name=b'link', target=b'sub/blob')])
parent_digest = dput(iter([child, parent])).root_digest
out['child_digest'] = child_digest.hex()
out['parent_digest'] = parent_digest.hex()
closure = list(dget(d.GetDirectoryRequest(digest=parent_digest, recursive=True)))
out['closure_equal'] = closure == [parent, child]
out['get_one_equal'] = list(dget(d.GetDirectoryRequest(digest=child_digest))) == [child]
out['get_absent'] = status(lambda: list(dget(d.GetDirectoryRequest(digest=bytes(32)))))
out['get_absent_recursive'] = len(list(dget(d.GetDirectoryRequest(digest=bytes(32), recursive=True))))
unsorted = c.Directory(symlinks=[c.SymlinkEntry(name=b'b', target=b'x'), c.SymlinkEntry(name=b'a', target=b'x')])
out['put_unsorted'] = status(lambda: dput(iter([unsorted])))
print(json.dumps(out))
`;

// A Python BlobService server for our clients: it holds one blob whose digest it is told
// (Python has no BLAKE3) and streams it in 50,000-byte messages.
const SERVER = `
import sys
sys.path.insert(0, sys.argv[1])
from concurrent import futures
import grpc
from snix.castore.v1 import rpc_blobstore_pb2 as b

address, size, digest = sys.argv[2], int(sys.argv[3]), bytes.fromhex(sys.argv[4])
data = (bytes(range(251)) * (size // 251 + 1))[:size]
uploads = []

def check(request, context):
    if len(request.digest) != 32:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, 'invalid digest length')
    if request.digest != digest:
        context.abort(grpc.StatusCode.NOT_FOUND, 'blob not found')

def stat(request, context):
    check(request, context)
    return b.StatBlobResponse()

def read(request, context):
    check(request, context)
    for i in range(0, size, 50000):
        yield b.BlobChunk(data=data[i:i + 50000])

def put(requests, context):
    received = b''.join(r.data for r in requests)
    uploads.append(len(received))
    return b.PutBlobResponse(digest=digest if received == data else bytes(32))

def handler(function, kind, request, response):
    return getattr(grpc, kind + '_rpc_method_handler')(function, request_deserializer=request.FromString, response_serializer=response.SerializeToString)

server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler('snix.castore.v1.BlobService', {
    'Stat': handler(stat, 'unary_unary', b.StatBlobRequest, b.StatBlobResponse),
    'Read': handler(read, 'unary_stream', b.ReadBlobRequest, b.BlobChunk),
    'Put': handler(put, 'stream_unary', b.BlobChunk, b.PutBlobResponse),
}),))
port = server.add_insecure_port(address)
server.start()
print('ready', port, flush=True)
server.wait_for_termination()
`;

const tools = await findPythonGrpcTools();
if (typeof tools === 'string') console.log(`# skipping the Python grpcio interop test: ${tools}`);

describe('interop with the Python grpcio client (gRPC C-core)', { skip: typeof tools === 'string' ? tools : false }, () => {
  let dir: string;
  const blobs = new MemoryBlobService();
  const servers: CastoreServer[] = [];
  before(async () => {
    if (typeof tools === 'string') return;
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-grpc-python-'));
    const protos = (await fs.readdir(path.join(PROTO_ROOT, 'snix/castore/v1'))).filter((f) => f.endsWith('.proto'));
    const [command, ...args] = tools.protoc as [string, ...string[]];
    await run(command, [
      ...args,
      `--python_out=${dir}`,
      `-I${PROTO_ROOT}`,
      ...protos.map((f) => path.join(PROTO_ROOT, 'snix/castore/v1', f)),
    ]);
    await fs.writeFile(path.join(dir, 'client.py'), CLIENT);
    await fs.writeFile(path.join(dir, 'server.py'), SERVER);
  });
  after(async () => {
    for (const server of servers) await server.close();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  const data = new Uint8Array(BLOB_SIZE);
  for (let i = 0; i < data.length; i++) data[i] = i % 251;
  const blobDigest = B3Digest.of(data);
  const child = Directory.fromEntries([{ name: parsePathComponent('blob'), node: fileNode(blobDigest, BLOB_SIZE, true) }]);
  const parent = Directory.fromEntries([
    { name: parsePathComponent('sub'), node: directoryNode(child.digest, child.size) },
    { name: parsePathComponent('link'), node: { type: 'symlink', target: new TextEncoder().encode('sub/blob') } },
  ]);

  for (const [transport, fastBlobPath] of [
    ['unix', true],
    ['tcp', true],
    ['unix', false],
  ] as const) {
    const blobPath = fastBlobPath ? 'fast' : 'connect';
    it(`uploads, stats and reads a blob and a directory closure over ${transport} (blob ${blobPath} path), with the expected statuses`, async () => {
      if (typeof tools === 'string') return;
      const socket = path.join(dir, `${transport}-${blobPath}.sock`);
      const server = await startCastoreServer({
        listen: transport === 'unix' ? `unix://${socket}` : '127.0.0.1:0',
        blobService: blobs,
        directoryService: new MemoryDirectoryService(),
        fastBlobPath,
      });
      servers.push(server);
      const target = transport === 'unix' ? `unix://${socket}` : server.address;
      const { stdout } = await run(tools.python, [path.join(dir, 'client.py'), dir, target, String(BLOB_SIZE)], { maxBuffer: 1 << 20 });
      const out = JSON.parse(stdout) as Record<string, unknown>;
      assert.deepEqual(out, {
        put_digest: blobDigest.toHex(),
        stat: 'OK',
        read_equal: true,
        read_largest_message: 1 << 20,
        stat_absent: 'NOT_FOUND',
        stat_short: 'INVALID_ARGUMENT',
        read_absent: 'NOT_FOUND',
        put_cancelled: 'UNKNOWN',
        child_digest: child.digest.toHex(),
        parent_digest: parent.digest.toHex(),
        closure_equal: true,
        get_one_equal: true,
        get_absent: 'NOT_FOUND',
        get_absent_recursive: 0,
        put_unsorted: 'INVALID_ARGUMENT',
      });
      const cancelled = new TextEncoder().encode('cancelled upload '.repeat(5000));
      assert.equal(await blobs.has(B3Digest.of(cancelled)), false);
    });
  }
});

describe('GrpcBlobService against the Python grpcio server (gRPC C-core)', { skip: typeof tools === 'string' ? tools : false }, () => {
  let dir: string;
  before(async () => {
    if (typeof tools === 'string') return;
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kiln-grpc-pyserver-'));
    const [command, ...args] = tools.protoc as [string, ...string[]];
    await run(command, [...args, `--python_out=${dir}`, `-I${PROTO_ROOT}`, path.join(PROTO_ROOT, 'snix/castore/v1/rpc_blobstore.proto')]);
    await fs.writeFile(path.join(dir, 'server.py'), SERVER);
  });
  after(async () => {
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  const data = new Uint8Array(BLOB_SIZE);
  for (let i = 0; i < data.length; i++) data[i] = i % 251;
  const digest = B3Digest.of(data);

  for (const [transport, fastBlobPath] of [
    ['unix', true],
    ['tcp', true],
    ['unix', false],
  ] as const) {
    it(`has, read (verified, from an offset, cancelled early) and put work over ${transport} (${fastBlobPath ? 'fast' : 'connect'} client)`, async () => {
      if (typeof tools === 'string') return;
      const address = transport === 'unix' ? `unix://${path.join(dir, `py-${fastBlobPath}.sock`)}` : '127.0.0.1:0';
      const child = spawn(tools.python, [path.join(dir, 'server.py'), dir, address, String(BLOB_SIZE), digest.toHex()], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      try {
        const port = await new Promise<string>((resolve, reject) => {
          let output = ''; // an unbuffered python may write "ready" and the port separately
          child.stdout.on('data', (chunk: Buffer) => {
            output += chunk.toString();
            const match = /ready (\d+)\n/.exec(output);
            if (match) resolve(match[1] as string);
          });
          child.once('exit', (code) => reject(new Error(`python server exited with ${code}`)));
        });
        const url = transport === 'unix' ? `grpc+${address}` : `grpc+http://127.0.0.1:${port}`;
        const service = await grpcBlobServiceFromUrl(`${url}?wait-connect=1`, { fastBlobPath });
        try {
          assert.equal(await service.has(digest), true);
          assert.equal(await service.has(B3Digest.fromBytes(new Uint8Array(32))), false);
          assert.equal(await service.read(B3Digest.fromBytes(new Uint8Array(32))), undefined);
          const stream = await service.read(digest);
          assert.ok(stream);
          assert.deepEqual(await concatBytes(stream), data);
          const tail = await service.read(digest, { offset: 1_000_001 });
          assert.ok(tail);
          assert.deepEqual(await concatBytes(tail), data.subarray(1_000_001));
          for (let i = 0; i < 5; i++) {
            for await (const chunk of (await service.read(digest)) ?? []) {
              assert.ok(chunk.byteLength > 0);
              break;
            }
          }
          const result = await service.put(data, { expectedDigest: digest });
          assert.equal(result.size, BLOB_SIZE);
          assert.ok(result.digest.equals(digest));
          // The server answers all-zero for bytes it does not hold: a mismatch the client must catch.
          await assert.rejects(service.put(data.subarray(1), { expectedDigest: B3Digest.of(data.subarray(1)) }), (e) =>
            isCastoreError(e, 'INTEGRITY_MISMATCH'),
          );
        } finally {
          await service.close();
        }
      } finally {
        // SIGKILL: grpcio's shutdown can hang on SIGTERM, which would keep this test process alive.
        const exited = new Promise((resolve) => (child.exitCode === null ? child.once('exit', resolve) : resolve(undefined)));
        child.kill('SIGKILL');
        await exited;
      }
    });
  }
});
