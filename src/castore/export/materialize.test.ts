import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { B3Digest } from '../b3-digest.js';
import { FsBlobService } from '../blob-service/fs.js';
import { MemoryBlobService } from '../blob-service/memory.js';
import { MemoryDirectoryService } from '../directory-service/memory.js';
import { isCastoreError } from '../errors.js';
import { importPath } from '../import/import-path.js';
import { fileNode, nodesEqual, symlinkNode } from '../node.js';
import { HELLOWORLD_BLOB, HELLOWORLD_BLOB_DIGEST } from '../testing/fixtures.js';
import { materialize } from './materialize.js';

const mode = async (path: string | Buffer) => (await fs.lstat(path)).mode & 0o777;

describe('materialize', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fs.mkdtemp(join(tmpdir(), 'kiln-materialize-'));
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  /** A tree with nesting, an executable, symlinks, an empty dir and a non-UTF-8 name. */
  async function sampleTree(root: string) {
    await fs.mkdir(join(root, 'bin'), { recursive: true });
    await fs.mkdir(join(root, 'share/empty'), { recursive: true });
    await fs.writeFile(join(root, 'bin/tool'), '#!/bin/sh\necho hi\n');
    await fs.chmod(join(root, 'bin/tool'), 0o755);
    await fs.writeFile(join(root, 'share/readme'), 'Hello World!');
    await fs.writeFile(join(root, 'share/same'), 'Hello World!');
    await fs.writeFile(join(root, 'share/big'), Buffer.alloc(3 << 20, 0x61));
    await fs.symlink('../bin/tool', join(root, 'share/link'));
    await fs.symlink('/nix/store/somewhereelse', join(root, 'abs'));
    await fs.writeFile(Buffer.from([...Buffer.from(`${root}/`), 0x66, 0xff, 0xfe]), 'raw name');
  }

  async function checkTree(out: string) {
    assert.equal(await mode(out), 0o755);
    assert.equal(await mode(join(out, 'bin')), 0o755);
    assert.equal(await mode(join(out, 'bin/tool')), 0o555);
    assert.equal(await mode(join(out, 'share/readme')), 0o444);
    assert.equal(await fs.readFile(join(out, 'share/readme'), 'utf8'), 'Hello World!');
    assert.equal(await fs.readlink(join(out, 'share/link')), '../bin/tool');
    assert.equal(await fs.readlink(join(out, 'abs')), '/nix/store/somewhereelse');
    assert.deepEqual(await fs.readdir(join(out, 'share/empty')), []);
    const raw = Buffer.from([...Buffer.from(`${out}/`), 0x66, 0xff, 0xfe]);
    assert.equal(await fs.readFile(raw, 'utf8'), 'raw name');
  }

  for (const io of ['auto', 'async'] as const) {
    it(`materialize (io ${io}) round-trips a tree: re-importing gives the same root, modes and symlinks preserved`, async () => {
      const source = join(dir, 'source');
      await sampleTree(source);
      const blobService = new MemoryBlobService();
      const directoryService = new MemoryDirectoryService();
      const imported = await importPath(source, { blobService, directoryService });
      const out = join(dir, 'out');
      const stats = await materialize(imported.node, out, { blobService, directoryService, io });
      assert.deepEqual(stats, { files: 5, hardlinked: 0, cloned: 0, streamed: 5 });
      await checkTree(out);
      const again = await importPath(out, { blobService, directoryService });
      assert.ok(nodesEqual(again.node, imported.node));
    });
  }

  it('materialize sets the documented modes whatever the umask', async () => {
    const source = join(dir, 'source');
    await sampleTree(source);
    const blobService = new MemoryBlobService();
    const directoryService = new MemoryDirectoryService();
    const { node } = await importPath(source, { blobService, directoryService });
    const previous = process.umask(0o277);
    try {
      await materialize(node, join(dir, 'out'), { blobService, directoryService });
    } finally {
      process.umask(previous);
    }
    await checkTree(join(dir, 'out'));
    assert.equal(await mode(join(dir, 'out/share/empty')), 0o755);
    assert.equal(await mode(join(dir, 'out/share/big')), 0o444);
  });

  it('materialize writes a single file or symlink root', async () => {
    const blobService = new MemoryBlobService();
    await blobService.put(HELLOWORLD_BLOB);
    const directoryService = new MemoryDirectoryService();
    await materialize(fileNode(HELLOWORLD_BLOB_DIGEST, 12, true), join(dir, 'f'), { blobService, directoryService });
    assert.equal(await fs.readFile(join(dir, 'f'), 'utf8'), 'Hello World!');
    assert.equal(await mode(join(dir, 'f')), 0o555);
    await materialize(symlinkNode('/nix/store/x'), join(dir, 'l'), { blobService, directoryService });
    assert.equal(await fs.readlink(join(dir, 'l')), '/nix/store/x');
  });

  it('materialize refuses an existing destination', async () => {
    await fs.mkdir(join(dir, 'taken'));
    const blobService = new MemoryBlobService();
    await blobService.put(HELLOWORLD_BLOB);
    await assert.rejects(
      materialize(fileNode(HELLOWORLD_BLOB_DIGEST, 12), join(dir, 'taken'), {
        blobService,
        directoryService: new MemoryDirectoryService(),
      }),
      { code: 'EEXIST' },
    );
    assert.deepEqual(await fs.readdir(join(dir, 'taken')), []);
  });

  async function assertNothingLeft(out: string) {
    await assert.rejects(fs.lstat(out), { code: 'ENOENT' });
    assert.deepEqual(
      (await fs.readdir(dir)).filter((name) => name.startsWith('.kiln')),
      [],
      'no temporary sibling left',
    );
  }

  it('materialize fails on a corrupt blob with INTEGRITY_MISMATCH naming it and leaves nothing at dest', async () => {
    const source = join(dir, 'source');
    await sampleTree(source);
    const blobService = new MemoryBlobService();
    const directoryService = new MemoryDirectoryService();
    const { node } = await importPath(source, { blobService, directoryService });
    blobService.corruptForTesting(HELLOWORLD_BLOB_DIGEST, Buffer.from('Hello World?'));
    const out = join(dir, 'out');
    await assert.rejects(materialize(node, out, { blobService, directoryService }), (error: unknown) => {
      assert.ok(isCastoreError(error, 'INTEGRITY_MISMATCH'), String(error));
      assert.ok(error.message.includes(HELLOWORLD_BLOB_DIGEST.toString()), error.message);
      return true;
    });
    await assertNothingLeft(out);
  });

  it('materialize fails on a blob of the wrong length', async () => {
    const blobService = new MemoryBlobService();
    await blobService.put(HELLOWORLD_BLOB);
    const out = join(dir, 'out');
    await assert.rejects(
      materialize(fileNode(HELLOWORLD_BLOB_DIGEST, 11), out, { blobService, directoryService: new MemoryDirectoryService() }),
      (error: unknown) => isCastoreError(error, 'INTEGRITY_MISMATCH') && /more than 11 bytes/.test(error.message),
    );
    await assertNothingLeft(out);
  });

  it('materialize fails with NOT_FOUND for a missing blob or directory', async () => {
    const source = join(dir, 'source');
    await sampleTree(source);
    const directoryService = new MemoryDirectoryService();
    const { node } = await importPath(source, { blobService: new MemoryBlobService(), directoryService });
    const out = join(dir, 'out');
    await assert.rejects(materialize(node, out, { blobService: new MemoryBlobService(), directoryService }), (error: unknown) =>
      isCastoreError(error, 'NOT_FOUND'),
    );
    await assertNothingLeft(out);
    await assert.rejects(
      materialize(node, out, { blobService: new MemoryBlobService(), directoryService: new MemoryDirectoryService() }),
      (error: unknown) => isCastoreError(error, 'NOT_FOUND') && /directory .* not found/.test(error.message),
    );
    await assertNothingLeft(out);
  });

  it('materialize rejects with the abort reason and leaves nothing at dest', async () => {
    const source = join(dir, 'source');
    await fs.mkdir(source);
    for (let i = 0; i < 40; i++) await fs.writeFile(join(source, `f${i}`), `contents ${i}`);
    const blobService = new MemoryBlobService();
    const directoryService = new MemoryDirectoryService();
    const { node } = await importPath(source, { blobService, directoryService });
    const controller = new AbortController();
    const reason = new Error('stop');
    let reads = 0;
    const reading = {
      read: (digest: B3Digest, options?: Parameters<MemoryBlobService['read']>[1]) => {
        if (++reads === 10) controller.abort(reason);
        return blobService.read(digest, options);
      },
    };
    const out = join(dir, 'out');
    await assert.rejects(
      materialize(node, out, { blobService: reading, directoryService, signal: controller.signal, concurrency: 2 }),
      (error) => error === reason,
    );
    await assertNothingLeft(out);
  });

  describe('with local blob files (FsBlobService)', () => {
    it('materialize hardlinks non-executable files and copies executables, with the documented modes', async () => {
      const source = join(dir, 'source');
      await sampleTree(source);
      const blobService = await FsBlobService.open(join(dir, 'store'));
      const directoryService = new MemoryDirectoryService();
      const { node } = await importPath(source, { blobService, directoryService });
      const out = join(dir, 'out');
      const stats = await materialize(node, out, { blobService, directoryService });
      assert.deepEqual(stats, { files: 5, hardlinked: 4, cloned: 1, streamed: 0 });
      await checkTree(out);
      const storeFile = blobService.blobPath(HELLOWORLD_BLOB_DIGEST);
      assert.equal((await fs.stat(join(out, 'share/readme'))).ino, (await fs.stat(storeFile)).ino);
      assert.notEqual((await fs.stat(join(out, 'bin/tool'))).ino, (await fs.stat(join(source, 'bin/tool'))).ino);
      const again = await importPath(out, { blobService, directoryService });
      assert.ok(nodesEqual(again.node, node));
      await blobService.close();
    });

    it('materialize with link copy streams every file', async () => {
      const source = join(dir, 'source');
      await sampleTree(source);
      const blobService = await FsBlobService.open(join(dir, 'store'));
      const directoryService = new MemoryDirectoryService();
      const { node } = await importPath(source, { blobService, directoryService });
      const stats = await materialize(node, join(dir, 'out'), { blobService, directoryService, link: 'copy' });
      assert.deepEqual(stats, { files: 5, hardlinked: 0, cloned: 0, streamed: 5 });
      await checkTree(join(dir, 'out'));
      await blobService.close();
    });

    it('materialize checks local blob files by size, and by hash with verify full', async () => {
      const source = join(dir, 'source');
      await sampleTree(source);
      const blobService = await FsBlobService.open(join(dir, 'store'));
      const directoryService = new MemoryDirectoryService();
      const { node } = await importPath(source, { blobService, directoryService });
      const storeFile = blobService.blobPath(HELLOWORLD_BLOB_DIGEST);
      await fs.chmod(storeFile, 0o644);
      await fs.writeFile(storeFile, 'Hello World?'); // same size, other bytes
      await fs.chmod(storeFile, 0o444);

      const full = join(dir, 'full');
      await assert.rejects(materialize(node, full, { blobService, directoryService, verify: 'full' }), (error: unknown) => {
        assert.ok(isCastoreError(error, 'INTEGRITY_MISMATCH'), String(error));
        assert.ok(error.message.includes(HELLOWORLD_BLOB_DIGEST.toString()));
        return true;
      });
      await assertNothingLeft(full);

      await fs.chmod(storeFile, 0o644);
      await fs.writeFile(storeFile, 'Hello');
      await fs.chmod(storeFile, 0o444);
      const sized = join(dir, 'sized');
      await assert.rejects(materialize(node, sized, { blobService, directoryService }), (error: unknown) =>
        isCastoreError(error, 'INTEGRITY_MISMATCH'),
      );
      await assertNothingLeft(sized);
      await blobService.close();
    });
  });
});
