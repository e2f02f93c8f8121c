import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { importPath, MemoryBlobService, MemoryDirectoryService, type Node, parsePathComponent } from '../../castore/index.js';
import type { BuildEvent } from '../build-events.js';
import type { BuildRequest } from '../build-request.js';
import { ociContainers, ociSkipReason, sandboxConformance } from '../testing/index.js';
import { OciBuildService } from './oci-build-service.js';

for (const [runtime, buildUidBase] of [
  ['runc', 39_000],
  ['crun', 39_100],
] as const) {
  sandboxConformance(`oci(${runtime})`, {
    create: (options) => new OciBuildService({ ...options, runtime }),
    listContainers: (dir) => ociContainers(runtime, dir),
    ...(ociSkipReason(runtime) ? { skip: ociSkipReason(runtime) } : {}),
  });

  describe(`oci(${runtime}): the root file system kept per build user`, { skip: ociSkipReason(runtime) ?? false }, () => {
    const blobService = new MemoryBlobService();
    const directoryService = new MemoryDirectoryService();
    let sandboxDir: string;
    let tools: Node;
    let service: OciBuildService;
    before(async () => {
      sandboxDir = await fs.mkdtemp('/var/tmp/kiln-oci-rootfs-');
      await fs.mkdir(join(sandboxDir, 'tools'));
      await fs.copyFile('/bin/busybox', join(sandboxDir, 'tools', 'busybox'));
      await fs.chmod(join(sandboxDir, 'tools', 'busybox'), 0o755);
      tools = (await importPath(join(sandboxDir, 'tools'), { blobService, directoryService })).node;
      // A uid range of its own, so both builds get the same build user (the first of the range).
      service = new OciBuildService({ blobService, directoryService, sandboxDir, concurrency: 1, runtime, buildUidBase });
    });
    after(async () => {
      await service.close();
      await fs.rm(sandboxDir, { recursive: true, force: true });
    });

    const request = (inputName: string, scratchPaths: string[], provideBinSh: boolean): BuildRequest => ({
      inputs: [{ name: parsePathComponent(inputName), node: tools }],
      commandArgs: [
        `/inputs/${inputName}/busybox`,
        'sh',
        '-c',
        `BB=/inputs/${inputName}/busybox; { $BB ls -a /; $BB ls -a /inputs; } > $out`,
      ],
      workingDir: 'build',
      scratchPaths,
      inputsDir: 'inputs',
      outputs: ['build/out'],
      environmentVars: [{ key: 'out', value: new TextEncoder().encode('/build/out') }],
      constraints: { system: 'x86_64-linux', minMemory: 0, availableRoPaths: [], networkAccess: false, provideBinSh },
      additionalFiles: [],
      refscanNeedles: [],
    });
    const listing = async (req: BuildRequest) => {
      let last: BuildEvent | undefined;
      for await (const event of service.build(req)) last = event;
      assert.equal(last?.type, 'finished', JSON.stringify(last));
      const node = last?.type === 'finished' ? last.response.outputs[0]?.node : undefined;
      assert.ok(node?.type === 'file');
      const chunks: Uint8Array[] = [];
      for await (const chunk of (await blobService.read(node.digest)) ?? []) chunks.push(chunk);
      return Buffer.concat(chunks).toString().split('\n').filter(Boolean);
    };
    const kept = () => fs.readdir(join(sandboxDir, 'rootfs', String(buildUidBase)));

    it('keeps only the standard mount points between builds, and a build sees none of an earlier one', async () => {
      const first = await listing(request('first-input', ['build', 'scratch-one'], true));
      assert.ok(first.includes('scratch-one') && first.includes('first-input') && first.includes('bin'), first.join(' '));
      assert.deepEqual((await kept()).sort(), ['bin', 'dev', 'etc', 'proc', 'tmp']);
      const second = await listing(request('second-input', ['build'], false));
      assert.deepEqual(second, ['.', '..', 'build', 'dev', 'etc', 'inputs', 'proc', 'tmp', '.', '..', 'second-input']);
      assert.deepEqual((await kept()).sort(), ['dev', 'etc', 'proc', 'tmp']);
    });
  });
}
