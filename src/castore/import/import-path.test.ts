import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { AbortOptions } from '../../common/abort.js';
import { type ByteSource, toChunks } from '../../common/async-iterable.js';
import { createBlake3 } from '../../common/blake3.js';
import { B3Digest } from '../b3-digest.js';
import { MemoryBlobService } from '../blob-service/memory.js';
import { MemoryDirectoryService } from '../directory-service/memory.js';
import { openFsCastore } from '../fs-store.js';
import { directoryNode, fileNode, nodesEqual, symlinkNode } from '../node.js';
import {
  DIRECTORY_COMPLICATED_DIGEST,
  DIRECTORY_WITH_KEEP_DIGEST,
  EMPTY_BLOB_DIGEST,
  HELLOWORLD_BLOB_DIGEST,
} from '../testing/fixtures.js';
import { importPath } from './import-path.js';

/** Hashes and forgets: lets a test watch the importer's own memory use. */
class HashingSinkBlobService {
  async put(source: ByteSource, options: AbortOptions = {}) {
    const hasher = createBlake3();
    let size = 0;
    for await (const chunk of toChunks(source)) {
      options.signal?.throwIfAborted();
      hasher.update(chunk);
      size += chunk.byteLength;
    }
    return { digest: B3Digest.fromBytes(hasher.digest()), size };
  }
  async has() {
    return false;
  }
}

describe('importPath', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fs.mkdtemp(join(tmpdir(), 'kiln-import-'));
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  const services = () => ({ blobService: new MemoryBlobService(), directoryService: new MemoryDirectoryService() });

  it('importPath ingests a symlink root as that symlink', async () => {
    await fs.symlink('/nix/store/somewhereelse', join(dir, 'doesntmatter'));
    const { node, name } = await importPath(join(dir, 'doesntmatter'), services());
    assert.ok(nodesEqual(node, symlinkNode('/nix/store/somewhereelse')));
    assert.equal(Buffer.from(name).toString(), 'doesntmatter');
  });

  it('importPath ingests a single file as HELLOWORLD and stores its blob', async () => {
    await fs.writeFile(join(dir, 'root'), 'Hello World!');
    const { blobService, directoryService } = services();
    const { node } = await importPath(join(dir, 'root'), { blobService, directoryService });
    assert.deepEqual(node, fileNode(HELLOWORLD_BLOB_DIGEST, 12, false));
    assert.equal(await blobService.has(HELLOWORLD_BLOB_DIGEST), true);
  });

  it('importPath ingests the complicated tree as DIRECTORY_COMPLICATED and stores its closure', async () => {
    const root = join(dir, 'blub');
    await fs.mkdir(join(root, 'keep'), { recursive: true });
    await fs.writeFile(join(root, '.keep'), '');
    await fs.writeFile(join(root, 'keep/.keep'), '');
    await fs.symlink('/nix/store/somewhereelse', join(root, 'aa'));
    const { blobService, directoryService } = services();
    const { node, name } = await importPath(root, { blobService, directoryService });
    // size 4 is the documented formula: 3 entries + 1 below keep/
    assert.deepEqual(node, directoryNode(DIRECTORY_COMPLICATED_DIGEST, 4));
    assert.equal(DIRECTORY_COMPLICATED_DIGEST.toHex().slice(0, 8), '3f951a15');
    assert.equal(Buffer.from(name).toString(), 'blub');
    assert.ok(await directoryService.get(DIRECTORY_COMPLICATED_DIGEST));
    assert.ok(await directoryService.get(DIRECTORY_WITH_KEEP_DIGEST));
    assert.equal(await blobService.has(EMPTY_BLOB_DIGEST), true);
  });

  it('importPath into the disk store: files stored by path, unchanged ones skipped on re-import', async () => {
    const root = join(dir, 'tree');
    const files = new Map<string, Buffer>();
    for (let d = 0; d < 4; d++) {
      await fs.mkdir(join(root, `d${d}`), { recursive: true });
      for (let f = 0; f < 100; f++) files.set(`d${d}/f${f}`, Buffer.alloc(100 + 37 * f, d * 100 + f));
    }
    files.set('d0/large', Buffer.alloc(3 << 20, 3));
    for (const [name, bytes] of files) await fs.writeFile(join(root, name), bytes);
    await new Promise((resolve) => setTimeout(resolve, 200)); // older than the racy-clean margin
    const store = await openFsCastore(join(dir, 'store'));
    const options = { blobService: store.blobService, directoryService: store.directoryService, fileDigestCache: store.fileDigestCache };
    const first = await importPath(root, options);
    const expected = await importPath(root, services());
    assert.ok(nodesEqual(first.node, expected.node), 'same root as through put()');
    for (const bytes of files.values()) assert.equal(await store.blobService.has(B3Digest.of(bytes)), true);
    let cachedFiles = 0;
    const second = await importPath(root, { ...options, onProgress: (p) => (cachedFiles = p.cachedFiles) });
    assert.ok(nodesEqual(second.node, first.node));
    assert.equal(cachedFiles, files.size);
    await store.close();
  });

  it('importPath reports needles found in contents and symlink targets but not in names', async () => {
    const root = join(dir, 'out');
    await fs.mkdir(join(root, 'bin'), { recursive: true });
    await fs.writeFile(join(root, 'bin/hello'), '#!/nix/store/4xw8n979xpivdc46a9ndcvyhwgif00hz-bash-5.1-p16/bin/bash\n');
    await fs.symlink('/nix/store/cp65c8nk29qq5cl1wyy5qyw103cwmax7-stdenv-linux/lib', join(root, 'lib'));
    await fs.writeFile(join(root, 'fn7zvafq26f0c8b17brs7s95s10ibfzs'), 'only the name refers');
    const needles = ['4xw8n979xpivdc46a9ndcvyhwgif00hz', 'fn7zvafq26f0c8b17brs7s95s10ibfzs', 'cp65c8nk29qq5cl1wyy5qyw103cwmax7'].map((n) =>
      Buffer.from(n),
    );
    const result = await importPath(root, { ...services(), needles });
    assert.deepEqual(result.needlesFound, [true, false, true]);
    const without = await importPath(root, services());
    assert.equal(without.needlesFound, undefined);
    assert.ok(nodesEqual(result.node, without.node));
  });

  it('importPath streams a 256 MiB file with bounded memory', async () => {
    const path = join(dir, 'sparse');
    const size = 256 * 1024 * 1024;
    const handle = await fs.open(path, 'w');
    await handle.truncate(size);
    await handle.write(Buffer.from('the end'), 0, 7, size - 7);
    await handle.close();
    const expected = createBlake3();
    const zeros = Buffer.alloc(1 << 20);
    for (let offset = 0; offset < size - (1 << 20); offset += 1 << 20) expected.update(zeros);
    const tail = Buffer.alloc(1 << 20);
    tail.write('the end', (1 << 20) - 7);
    expected.update(tail);

    (globalThis as { gc?: () => void }).gc?.();
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const { node } = await importPath(path, {
      blobService: new HashingSinkBlobService(),
      directoryService: new MemoryDirectoryService(),
      onProgress: () => {
        peak = Math.max(peak, process.memoryUsage().rss);
      },
    });
    assert.deepEqual(node, fileNode(B3Digest.fromBytes(expected.digest()), size, false));
    const growth = peak - baseline;
    if (process.env.KILN_TEST_VERBOSE) console.log(`rss growth ${(growth / 2 ** 20).toFixed(1)} MiB`);
    assert.ok(growth < 96 * 1024 * 1024, `RSS grew by ${(growth / 2 ** 20).toFixed(0)} MiB while importing 256 MiB`);
  });

  it('importPath rejects with the abort reason and stores no directory', async () => {
    const root = join(dir, 'tree');
    await fs.mkdir(root);
    for (let i = 0; i < 30; i++) await fs.writeFile(join(root, `f${i}`), `${i}`);
    const controller = new AbortController();
    const reason = new Error('stop');
    const directoryService = new MemoryDirectoryService();
    let files = 0;
    await assert.rejects(
      importPath(root, {
        blobService: new MemoryBlobService(),
        directoryService,
        concurrency: 1,
        signal: controller.signal,
        onProgress: () => {
          if (++files === 3) controller.abort(reason);
        },
      }),
      (error) => error === reason,
    );
  });
});
