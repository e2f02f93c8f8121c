import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { B3Digest, importPath, MemoryBlobService, MemoryDirectoryService, openFsCastore } from '../castore/index.js';
import { concatBytes } from '../common/async-iterable.js';
import { formatNixHash, hashBytes } from '../nix/index.js';
import { NAR_OFF_THREAD_BYTES, narDigestOfNode, narOfNode } from './castore-to-nar.js';
import { narToCastore } from './nar-to-castore.js';

const FIXTURES = '/work/shared/vectors/snix-fixtures';
const castore = () => ({ blobService: new MemoryBlobService(), directoryService: new MemoryDirectoryService() });

describe('castore ⇄ NAR', () => {
  for (const name of ['helloworld.nar', 'symlink.nar', 'complicated.nar']) {
    it(`${name}: NAR → castore → NAR is byte-identical`, async () => {
      const nar = readFileSync(join(FIXTURES, name));
      const store = castore();
      const { node, narHash, narSize } = await narToCastore(nar, store);
      assert.equal(narSize, nar.length);
      assert.deepEqual(narHash, hashBytes('sha256', nar));
      const again = await concatBytes(narOfNode(node, store));
      assert.deepEqual(Buffer.from(again), nar);
    });
  }

  it('hashes and scans the NAR in one pass: names count, as in Nix', async () => {
    const nar = readFileSync(join(FIXTURES, 'complicated.nar'));
    const store = castore();
    const { node } = await narToCastore(nar, store);
    const needles = ['.keep', 'keep', 'absent', 'aa'];
    const digest = await narDigestOfNode(node, store, { needles: needles.map((n) => Buffer.from(n)) });
    assert.deepEqual(digest.narHash, hashBytes('sha256', nar));
    assert.equal(digest.narSize, nar.length);
    assert.deepEqual(
      digest.found,
      needles.map((n) => nar.includes(n)),
    );
    assert.ok(digest.found[0], '.keep is only a file name in that tree');
  });

  it('a missing blob fails with NOT_FOUND naming it', async () => {
    const store = castore();
    const { node } = await narToCastore(readFileSync(join(FIXTURES, 'helloworld.nar')), store);
    await assert.rejects(narDigestOfNode(node, castore()), { code: 'NOT_FOUND' });
  });

  it('a tree imported from disk has the NAR `nix-store --dump` writes', {
    skip: spawnSync('nix-store', ['--version']).status !== 0 && 'nix-store is not installed',
  }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kiln-nar-'));
    try {
      const root = join(dir, 'tree');
      await mkdir(join(root, 'sub', 'deeper'), { recursive: true });
      await writeFile(join(root, 'a'), 'alpha\n');
      await writeFile(join(root, 'exec'), '#!/bin/sh\n');
      await chmod(join(root, 'exec'), 0o755);
      await writeFile(join(root, 'sub', 'deeper', 'big'), Buffer.alloc(200_000, 7));
      await writeFile(join(root, 'sub', 'empty'), '');
      await symlink('../a', join(root, 'sub', 'link'));
      await writeFile(join(root, Buffer.from([0x66, 0xe9]).toString('latin1')), 'non-UTF-8 name');
      const store = castore();
      const { node } = await importPath(root, store);
      const ours = Buffer.from(await concatBytes(narOfNode(node, store)));
      const nix = spawnSync('nix-store', ['--dump', root], { maxBuffer: 16 * 1024 * 1024 });
      assert.equal(nix.status, 0, String(nix.stderr));
      assert.equal(formatNixHash(hashBytes('sha256', ours), 'nixbase32'), formatNixHash(hashBytes('sha256', nix.stdout), 'nixbase32'));
      assert.deepEqual(ours, nix.stdout);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  describe('from the disk store (files read into one reused buffer; large NARs hashed off-thread)', () => {
    /** A tree above the off-thread threshold with a needle straddling the first 1 MiB read boundary of a large file (and nowhere else). */
    async function makeTree(root: string, needle: Buffer): Promise<void> {
      await mkdir(join(root, 'many'), { recursive: true });
      const large = randomBytes(3 * 2 ** 20 + 100);
      needle.copy(large, 2 ** 20 - 3);
      await writeFile(join(root, 'large'), large);
      for (let i = 0; i < 40; i++) await writeFile(join(root, 'many', `f${i}`), randomBytes(20_000 + i * 997));
      await writeFile(join(root, 'many', 'tail'), Buffer.concat([randomBytes(70_000), needle.subarray(0, 4)]));
      await symlink('large', join(root, 'link'));
    }

    it('yields the same NAR hash, size, extra hash and needles as hashing the whole NAR', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'kiln-nar-fs-'));
      const store = await openFsCastore(join(dir, 'store'));
      try {
        const needle = Buffer.from('kiln-needle-across-reads');
        await makeTree(join(dir, 'tree'), needle);
        const { node } = await importPath(join(dir, 'tree'), store);
        const nar = Buffer.from(await concatBytes(narOfNode(node, store)));
        assert.ok(nar.length > NAR_OFF_THREAD_BYTES, 'the NAR is hashed off-thread');
        const needles = [needle, Buffer.from('absent-needle'), needle.subarray(0, 4)];
        const digest = await narDigestOfNode(node, store, { needles, extraAlgo: 'sha512' });
        assert.deepEqual(digest.narHash, hashBytes('sha256', nar));
        assert.deepEqual(digest.extraHash, hashBytes('sha512', nar));
        assert.equal(digest.narSize, nar.length);
        assert.deepEqual(digest.found, [true, false, true]);
        // A NAR under the threshold is hashed on this thread, with the same result.
        const many = (await store.directoryService.get((node as { digest: B3Digest }).digest))?.entries.find(
          (e) => Buffer.from(e.name).toString() === 'many',
        );
        assert.ok(many);
        const small = await narDigestOfNode(many.node, store);
        assert.deepEqual(small.narHash, hashBytes('sha256', await concatBytes(narOfNode(many.node, store))));
      } finally {
        await store.close();
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('a blob corrupted on disk fails with INTEGRITY_MISMATCH naming it', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'kiln-nar-fs-'));
      const store = await openFsCastore(join(dir, 'store'));
      try {
        await makeTree(join(dir, 'tree'), Buffer.from('needle'));
        const { node } = await importPath(join(dir, 'tree'), store);
        const large = B3Digest.of(readFileSync(join(dir, 'tree', 'large')));
        const path = await store.blobService.localBlobPath(large);
        assert.ok(path);
        const bytes = readFileSync(path);
        bytes[2 ** 20 + 5] ^= 1;
        await chmod(path, 0o644);
        await writeFile(path, bytes);
        await assert.rejects(narDigestOfNode(node, store), (error: Error & { code?: string }) => {
          assert.equal(error.code, 'INTEGRITY_MISMATCH');
          assert.match(error.message, new RegExp(large.toString().replace(/[+/]/g, '\\$&')));
          return true;
        });
      } finally {
        await store.close();
        await rm(dir, { recursive: true, force: true });
      }
    });
  });
});
