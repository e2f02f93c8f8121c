/**
 * Load on one `bin/kiln serve` (bubblewrap, concurrency 2): 50 clients,
 * each with its own connection and its own input, run 10 builds each at
 * once. Every build must complete with exactly its expected output; the
 * server's resident memory is sampled throughout and must stay bounded, and
 * once the clients are gone it holds no more file descriptors than before.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GrpcBuildService } from '../../src/build/grpc/index.js';
import type { BuildRequest } from '../../src/build/index.js';
import { bwrapSkipReason, shellBuildRequest } from '../../src/build/testing/index.js';
import { B3Digest, importPath, MemoryBlobService, MemoryDirectoryService, parsePathComponent } from '../../src/castore/index.js';
import { concatBytes } from '../../src/common/async-iterable.js';
import { sandboxDir } from './build-cli-kit.js';
import { eventually, fdCount, rssOf, type ServerProcess, startServer } from './serve-kit.js';

const skip = bwrapSkipReason();
if (skip) console.log(`# skipping the remote load test: ${skip}`);

const CLIENTS = 50;
const BUILDS_PER_CLIENT = 10;
/** What the server's RSS may reach under this load. */
const RSS_LIMIT_BYTES = 400 * 2 ** 20;
const encoder = new TextEncoder();

function request(input: BuildRequest['inputs'][number]['node'], build: number): BuildRequest {
  return shellBuildRequest(`cat /nix/store/in/data > $out; echo build ${build} >> $out`, {
    inputs: [{ name: parsePathComponent('in'), node: input }],
  });
}

describe('50 concurrent clients × 10 builds against one server with concurrency 2', { skip: skip ?? false }, () => {
  let work: string;
  let server: ServerProcess;
  const sandbox = sandboxDir('load');
  before(async () => {
    work = await fs.mkdtemp('/var/tmp/kiln-remote-load-');
    await fs.chmod(work, 0o711);
    server = await startServer(
      ['--listen', `unix://${join(work, 'kiln.sock')}`, '--store', join(work, 'store'), '--builder', `bwrap://${sandbox}?concurrency=2`],
      { KILN_HOME: work },
    );
  });
  after(async () => {
    await server?.stop('SIGKILL');
    await fs.rm(work, { recursive: true, force: true });
    await fs.rm(sandbox, { recursive: true, force: true });
  });

  it('completes every build correctly with bounded server memory and no file descriptor leak', async () => {
    const pid = server.child.pid as number;
    const url = `grpc+${server.address}`;
    const clients = await Promise.all(
      Array.from({ length: CLIENTS }, async (_, c) => {
        const store = { blobService: new MemoryBlobService(), directoryService: new MemoryDirectoryService() };
        const tree = join(work, `input-${c}`);
        await fs.mkdir(tree);
        await fs.writeFile(join(tree, 'data'), `client ${c}\n`);
        const { node } = await importPath(tree, store);
        return { c, node, service: new GrpcBuildService({ url, ...store }) };
      }),
    );
    // One build first, so the baseline counts what a server that has built holds.
    const warm = clients[0] as (typeof clients)[number];
    for await (const _ of warm.service.build(request(warm.node, -1)));
    await warm.service.close();
    warm.service = new GrpcBuildService({ url, blobService: new MemoryBlobService(), directoryService: new MemoryDirectoryService() });
    await new Promise((resolve) => setTimeout(resolve, 500)); // the warm-up connection closes
    const fdsBefore = await fdCount(pid);
    const rssBefore = await rssOf(pid);

    let peakRss = rssBefore;
    const sampler = setInterval(() => {
      rssOf(pid).then(
        (rss) => {
          peakRss = Math.max(peakRss, rss);
        },
        () => {},
      );
    }, 100);
    let peakFds = fdsBefore;
    const fdSampler = setInterval(() => {
      fdCount(pid).then(
        (n) => {
          peakFds = Math.max(peakFds, n);
        },
        () => {},
      );
    }, 250);
    const started = performance.now();
    const failures: string[] = [];
    let built = 0;
    try {
      await Promise.all(
        clients.map(async ({ c, node, service }) => {
          const { blobService } = await service.remoteCastore();
          for (let b = 0; b < BUILDS_PER_CLIENT; b++) {
            const expected = encoder.encode(`client ${c}\nbuild ${b}\n`);
            let outcome: string | undefined;
            for await (const event of service.build(request(node, b))) {
              if (event.type === 'failed') outcome = `client ${c} build ${b}: ${event.reason}: ${event.message}`;
              if (event.type !== 'finished') continue;
              const out = event.response.outputs[0]?.node;
              if (out?.type !== 'file' || !out.digest.equals(B3Digest.of(expected)) || out.size !== expected.byteLength)
                outcome = `client ${c} build ${b}: unexpected output ${JSON.stringify(out)}`;
              else if (b === BUILDS_PER_CLIENT - 1) {
                const stored = await blobService.read(out.digest);
                if (!stored || Buffer.compare(Buffer.from(await concatBytes(stored)), Buffer.from(expected)) !== 0)
                  outcome = `client ${c}: the stored output differs`;
              }
              if (!outcome) built++;
            }
            if (outcome) failures.push(outcome);
          }
        }),
      );
    } finally {
      clearInterval(sampler);
      clearInterval(fdSampler);
      await Promise.all(clients.map(({ service }) => service.close()));
    }
    const seconds = (performance.now() - started) / 1000;
    assert.deepEqual(failures, []);
    assert.equal(built, CLIENTS * BUILDS_PER_CLIENT);

    const settled = await eventually(async () => (await fdCount(pid)) <= fdsBefore, 10_000, 200);
    const fdsAfter = await fdCount(pid);
    const rssAfter = await rssOf(pid);
    console.log(
      `${built} builds in ${seconds.toFixed(1)} s (${(built / seconds).toFixed(1)}/s); server RSS ${(rssBefore / 2 ** 20).toFixed(0)} MiB before, peak ${(peakRss / 2 ** 20).toFixed(0)} MiB, ${(rssAfter / 2 ** 20).toFixed(0)} MiB after; fds ${fdsBefore} before, peak ${peakFds}, ${fdsAfter} after`,
    );
    assert.ok(settled, `file descriptors: ${fdsBefore} before, ${fdsAfter} after the clients left`);
    assert.ok(peakRss < RSS_LIMIT_BYTES, `server peak RSS ${peakRss} bytes`);
    const dirs = (await fs.readdir(sandbox)).filter((n) => n.startsWith('build-'));
    assert.deepEqual(dirs, []);
  });
});
