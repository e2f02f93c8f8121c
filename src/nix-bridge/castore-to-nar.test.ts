import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { importPath, MemoryBlobService, MemoryDirectoryService } from '../castore/index.js';
import { concatBytes } from '../common/async-iterable.js';
import { formatNixHash, hashBytes } from '../nix/index.js';
import { narDigestOfNode, narOfNode } from './castore-to-nar.js';
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
});
