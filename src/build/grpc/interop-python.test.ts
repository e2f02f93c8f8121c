/**
 * A foreign build client: Python grpcio (gRPC C-core), with message classes
 * generated from proto/ at test time, uploads a tree through
 * snix.castore.v1 and calls snix.build.v1 DoBuild on a Kiln server building
 * with bubblewrap; the response matches what Kiln's own client gets for the
 * same request. Also from Python: the statuses of a failed build, unmet
 * constraints, a missing input, a missing token, and health. Skips, saying
 * why, without python3 + grpcio + protobuf, protoc, or bwrap.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { importPath, MemoryBlobService, MemoryDirectoryService, parsePathComponent } from '../../castore/index.js';
import { findPythonGrpcTools } from '../../castore/testing/index.js';
import type { BuildRequest } from '../build-request.js';
import { BwrapBuildService } from '../bwrap/bwrap-build-service.js';
import type { BuildResponse } from '../proto-convert.js';
import { bwrapSkipReason } from '../testing/index.js';
import { type KilnServer, startKilnServer } from './build-grpc-server.js';
import { GrpcBuildService } from './grpc-build-service.js';

const run = promisify(execFile);
const PROTO_ROOT = path.resolve(import.meta.dirname, '../../../proto');
const TOKEN = 'python-interop-token';
const GREETING = 'hello from python\n';
const HELLO = '#!/bin/sh\necho hi\n';
const SCRIPT =
  'mkdir -p $out/share; cat /nix/store/tools/greeting > $out/share/greeting; cp /nix/store/tools/bin/hello $out/hello; ln -s /nix/store/tools $out/tools-link';

const CLIENT = String.raw`
import json, sys
sys.path.insert(0, sys.argv[1])
import grpc
from snix.castore.v1 import castore_pb2 as c, rpc_blobstore_pb2 as b, rpc_directory_pb2 as d
from snix.build.v1 import build_pb2 as bp, rpc_build_pb2 as rb
import importlib.util
# The generated grpc/health/v1 would clash with the grpc package: load it from its file.
spec = importlib.util.spec_from_file_location('health_pb2', sys.argv[1] + '/grpc/health/v1/health_pb2.py')
h = importlib.util.module_from_spec(spec)
spec.loader.exec_module(h)

target, token, script = sys.argv[2], sys.argv[3], sys.argv[4]
channel = grpc.insecure_channel(target)
auth = (('authorization', 'Bearer ' + token),)
def method(kind, path, request, response):
    return getattr(channel, kind)(path, request_serializer=request.SerializeToString, response_deserializer=response.FromString)
put = method('stream_unary', '/snix.castore.v1.BlobService/Put', b.BlobChunk, b.PutBlobResponse)
dput = method('stream_unary', '/snix.castore.v1.DirectoryService/Put', c.Directory, d.PutDirectoryResponse)
do_build = method('unary_unary', '/snix.build.v1.BuildService/DoBuild', bp.BuildRequest, bp.BuildResponse)
check = method('unary_unary', '/grpc.health.v1.Health/Check', h.HealthCheckRequest, h.HealthCheckResponse)

def status(call):
    try:
        call()
        return ['OK', '']
    except grpc.RpcError as error:
        return [error.code().name, error.details()]

greeting, hello = b'hello from python\n', b'#!/bin/sh\necho hi\n'
greeting_digest = put(iter([b.BlobChunk(data=greeting)]), metadata=auth).digest
hello_digest = put(iter([b.BlobChunk(data=hello)]), metadata=auth).digest
bin_dir = c.Directory(files=[c.FileEntry(name=b'hello', digest=hello_digest, size=len(hello), executable=True)])
root = c.Directory(directories=[c.DirectoryEntry(name=b'bin', digest=dput(iter([bin_dir]), metadata=auth).root_digest, size=1)],
                   files=[c.FileEntry(name=b'greeting', digest=greeting_digest, size=len(greeting))])
root_digest = dput(iter([bin_dir, root]), metadata=auth).root_digest

def request(inputs=None, system='x86_64-linux', script=script):
    return bp.BuildRequest(
        inputs=inputs if inputs is not None else [c.Entry(directory=c.DirectoryEntry(name=b'tools', digest=root_digest, size=3))],
        command_args=['/bin/sh', '-c', script],
        working_dir='build',
        scratch_paths=['build', 'nix/store'],
        inputs_dir='nix/store',
        outputs=['nix/store/out'],
        environment_vars=[bp.BuildRequest.EnvVar(key='out', value=b'/nix/store/out')],
        constraints=bp.BuildRequest.BuildConstraints(system=system, provide_bin_sh=True),
        refscan_needles=['/nix/store/tools', 'absent-needle'],
    )

out = {'input_root': root_digest.hex()}
response = do_build(request(), metadata=auth)
out['outputs'] = []
for o in response.outputs:
    kind = o.output.WhichOneof('entry')
    node = getattr(o.output, kind)
    out['outputs'].append({'kind': kind, 'digest': node.digest.hex(), 'size': node.size, 'needles': list(o.needles)})
out['failed_build'] = status(lambda: do_build(request(script='echo failing >&2; exit 3'), metadata=auth))
out['other_system'] = status(lambda: do_build(request(system='aarch64-darwin'), metadata=auth))
missing = [c.Entry(directory=c.DirectoryEntry(name=b'tools', digest=bytes([7]) * 32, size=1))]
out['missing_input'] = status(lambda: do_build(request(inputs=missing), metadata=auth))
out['no_token'] = status(lambda: do_build(request()))
out['health'] = check(h.HealthCheckRequest(service='snix.build.v1.BuildService'), metadata=auth).status
print(json.dumps(out))
`;

const tools = await findPythonGrpcTools();
const skip = typeof tools === 'string' ? tools : bwrapSkipReason();
if (skip) console.log(`# skipping the Python grpcio DoBuild interop test: ${skip}`);

describe('a Python grpcio client uploads inputs and calls snix.build.v1 DoBuild', { skip: skip ?? false }, () => {
  let dir: string;
  let server: KilnServer;
  let builder: BwrapBuildService;
  const serverStore = { blobService: new MemoryBlobService(), directoryService: new MemoryDirectoryService() };
  before(async () => {
    if (typeof tools === 'string') return;
    dir = await fs.mkdtemp('/var/tmp/kiln-build-python-');
    await fs.chmod(dir, 0o711);
    const protos = ['snix/castore/v1', 'snix/build/v1', 'grpc/health/v1'];
    const files = (
      await Promise.all(
        protos.map(async (sub) =>
          (await fs.readdir(path.join(PROTO_ROOT, sub))).filter((f) => f.endsWith('.proto')).map((f) => path.join(PROTO_ROOT, sub, f)),
        ),
      )
    ).flat();
    const [command, ...args] = tools.protoc as [string, ...string[]];
    const stubs = path.join(dir, 'stubs');
    await fs.mkdir(stubs);
    await run(command, [...args, `--python_out=${stubs}`, `-I${PROTO_ROOT}`, ...files]);
    builder = new BwrapBuildService({ ...serverStore, sandboxDir: path.join(dir, 'sandbox'), concurrency: 2 });
    server = await startKilnServer({
      listen: `unix://${path.join(dir, 'kiln.sock')}`,
      ...serverStore,
      builder,
      journalDir: path.join(dir, 'journals'),
      token: TOKEN,
    });
  });
  after(async () => {
    await server?.close();
    await builder?.close();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it("gets the same response as Kiln's own client, and the statuses Snix's contract gives", async () => {
    if (typeof tools === 'string') return;
    await fs.writeFile(path.join(dir, 'client.py'), CLIENT);
    const socket = path.join(dir, 'kiln.sock');
    const { stdout } = await run(tools.python, [path.join(dir, 'client.py'), path.join(dir, 'stubs'), `unix://${socket}`, TOKEN, SCRIPT], {
      maxBuffer: 1 << 20,
    });
    const python = JSON.parse(stdout) as {
      input_root: string;
      outputs: { kind: string; digest: string; size: string | number; needles: (string | number)[] }[];
      failed_build: [string, string];
      other_system: [string, string];
      missing_input: [string, string];
      no_token: [string, string];
      health: number;
    };

    // The same tree and request, through Kiln's client from a store of its own.
    const tree = path.join(dir, 'tools');
    await fs.mkdir(path.join(tree, 'bin'), { recursive: true });
    await fs.writeFile(path.join(tree, 'greeting'), GREETING);
    await fs.writeFile(path.join(tree, 'bin/hello'), HELLO, { mode: 0o755 });
    const clientStore = { blobService: new MemoryBlobService(), directoryService: new MemoryDirectoryService() };
    const { node } = await importPath(tree, clientStore);
    assert.equal(node.type, 'directory');
    assert.equal(node.type === 'directory' && node.digest.toHex(), python.input_root, 'Python uploaded the tree Kiln imports');
    const request: BuildRequest = {
      inputs: [{ name: parsePathComponent('tools'), node }],
      commandArgs: ['/bin/sh', '-c', SCRIPT],
      workingDir: 'build',
      scratchPaths: ['build', 'nix/store'],
      inputsDir: 'nix/store',
      outputs: ['nix/store/out'],
      environmentVars: [{ key: 'out', value: new TextEncoder().encode('/nix/store/out') }],
      constraints: { system: 'x86_64-linux', minMemory: 0, availableRoPaths: [], networkAccess: false, provideBinSh: true },
      additionalFiles: [],
      refscanNeedles: ['/nix/store/tools', 'absent-needle'],
    };
    const client = new GrpcBuildService({ url: server.url, ...clientStore, token: TOKEN });
    let response: BuildResponse | undefined;
    try {
      for await (const event of client.build(request)) if (event.type === 'finished') response = event.response;
    } finally {
      await client.close();
    }
    assert.ok(response, 'Kiln built it');
    const kiln = response.outputs.map((o) => ({
      kind: o.node.type,
      digest: o.node.type === 'symlink' ? '' : o.node.digest.toHex(),
      size: o.node.type === 'symlink' ? 0 : o.node.size,
      needles: [...o.needles],
    }));
    assert.deepEqual(
      python.outputs.map((o) => ({ ...o, size: Number(o.size), needles: o.needles.map(Number) })),
      kiln,
      'the same outputs, digests and needles',
    );
    assert.deepEqual(kiln[0]?.needles, [0], 'the output refers to the input through its symlink');

    assert.equal(python.failed_build[0], 'INTERNAL');
    assert.match(python.failed_build[1], /build failed \(exit-code\): the build exited with status 3/);
    assert.equal(python.other_system[0], 'FAILED_PRECONDITION');
    assert.match(python.other_system[1], /constraints\.system/);
    assert.equal(python.missing_input[0], 'FAILED_PRECONDITION');
    assert.ok(python.missing_input[1].includes(`blake3-${Buffer.alloc(32, 7).toString('base64')}`), python.missing_input[1]);
    assert.equal(python.no_token[0], 'UNAUTHENTICATED');
    assert.equal(python.health, 1, 'SERVING');
  });
});
