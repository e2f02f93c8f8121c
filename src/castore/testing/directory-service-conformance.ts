/**
 * The behaviour suite every DirectoryService backend runs. Closure cases
 * follow the Snix order-validator vectors (fixtures A–D).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { collect } from '../../common/async-iterable.js';
import { B3Digest } from '../b3-digest.js';
import { Directory } from '../directory.js';
import type { DirectoryService } from '../directory-service/directory-service.js';
import { isCastoreError } from '../errors.js';
import { directoryNode, fileNode } from '../node.js';
import { parsePathComponent } from '../path-component.js';
import type { ServiceHarness } from './blob-service-conformance.js';
import {
  DIRECTORY_A,
  DIRECTORY_A_DIGEST,
  DIRECTORY_B,
  DIRECTORY_B_DIGEST,
  DIRECTORY_C,
  DIRECTORY_C_DIGEST,
  DIRECTORY_COMPLICATED,
  DIRECTORY_COMPLICATED_DIGEST,
  DIRECTORY_D,
  DIRECTORY_D_DIGEST,
  DIRECTORY_WITH_KEEP,
  EMPTY_BLOB_DIGEST,
} from './fixtures.js';

/** A fresh directory nobody else stored, so absence checks stay meaningful on shared stores. */
function uniqueDirectory(tag: string): Directory {
  return Directory.fromEntries([{ name: parsePathComponent(`${tag}-${Math.random()}`), node: fileNode(EMPTY_BLOB_DIGEST, 0) }]);
}

function isInvalidDirectory(error: unknown): boolean {
  return isCastoreError(error, 'INVALID_DIRECTORY');
}

export function describeDirectoryServiceConformance(label: string, harness: ServiceHarness<DirectoryService>): void {
  const skip = harness.skipReason?.();
  describe(`${label} DirectoryService conformance`, { skip: skip ?? false }, () => {
    let service: DirectoryService;
    before(async () => {
      service = await harness.create();
    });
    after(async () => {
      if (!service) return;
      if (harness.destroy) await harness.destroy(service);
      else await service.close();
    });
    const digests = async (root: B3Digest) => (await collect(service.getRecursive(root))).map((d) => d.digest.toHex());

    it('get returns undefined and getRecursive yields nothing for an unknown digest', async () => {
      const unknown = B3Digest.fromBytes(new Uint8Array(32).fill(7));
      assert.equal(await service.get(unknown), undefined);
      assert.deepEqual(await collect(service.getRecursive(unknown)), []);
    });

    it('stores a single leaf and returns it with its reference digest', async () => {
      const root = await service.putMany([DIRECTORY_A]);
      assert.equal(root.toHex(), DIRECTORY_A_DIGEST.toHex());
      const got = await service.get(DIRECTORY_A_DIGEST);
      assert.ok(got);
      assert.equal(got.digest.toHex(), DIRECTORY_A_DIGEST.toHex());
    });

    it('stores DIRECTORY_COMPLICATED with its child and yields the closure root first', async () => {
      const root = await service.putMany([DIRECTORY_WITH_KEEP, DIRECTORY_COMPLICATED]);
      assert.equal(root.toHex(), DIRECTORY_COMPLICATED_DIGEST.toHex());
      assert.deepEqual(await digests(DIRECTORY_COMPLICATED_DIGEST), [
        DIRECTORY_COMPLICATED_DIGEST.toHex(),
        DIRECTORY_WITH_KEEP.digest.toHex(),
      ]);
    });

    it('accepts A, A, C (a duplicate is ignored) and C deduplicates its shared child', async () => {
      const root = await service.putMany([DIRECTORY_A, DIRECTORY_A, DIRECTORY_C]);
      assert.equal(root.toHex(), DIRECTORY_C_DIGEST.toHex());
      assert.deepEqual(await digests(DIRECTORY_C_DIGEST), [DIRECTORY_C_DIGEST.toHex(), DIRECTORY_A_DIGEST.toHex()]);
    });

    it('accepts A, B and D: breadth-first, each once', async () => {
      await service.putMany([DIRECTORY_A, DIRECTORY_B]);
      const root = await service.putMany(
        (async function* () {
          yield DIRECTORY_A;
          yield DIRECTORY_B;
          yield DIRECTORY_D;
        })(),
      );
      assert.equal(root.toHex(), DIRECTORY_D_DIGEST.toHex());
      assert.deepEqual(await digests(DIRECTORY_D_DIGEST), [
        DIRECTORY_D_DIGEST.toHex(),
        DIRECTORY_A_DIGEST.toHex(),
        DIRECTORY_B_DIGEST.toHex(),
      ]);
    });

    it('rejects a closure with a directory not connected to the root and stores none of it', async () => {
      const stray = uniqueDirectory('stray');
      const parent = Directory.fromEntries([
        { name: parsePathComponent('empty'), node: directoryNode(DIRECTORY_A_DIGEST, 0) },
        { name: parsePathComponent(`p-${Math.random()}`), node: fileNode(EMPTY_BLOB_DIGEST, 0) },
      ]);
      await assert.rejects(service.putMany([DIRECTORY_A, stray, parent]), isInvalidDirectory);
      assert.equal(await service.get(stray.digest), undefined);
      assert.equal(await service.get(parent.digest), undefined);
    });

    it('rejects a dangling reference and stores nothing', async () => {
      const missing = uniqueDirectory('missing');
      const parent = Directory.fromEntries([{ name: parsePathComponent('child'), node: directoryNode(missing.digest, missing.size) }]);
      await assert.rejects(
        service.putMany([parent]),
        (e) => isInvalidDirectory(e) && String((e as Error).message).includes(missing.digest.toString()),
      );
      assert.equal(await service.get(parent.digest), undefined);
    });

    it('rejects a child reference with the wrong size and stores nothing', async () => {
      const child = uniqueDirectory('child');
      const parent = Directory.fromEntries([{ name: parsePathComponent('foo'), node: directoryNode(child.digest, child.size + 42) }]);
      await assert.rejects(service.putMany([child, parent]), (e) => isInvalidDirectory(e) && /wrong size/.test((e as Error).message));
      assert.equal(await service.get(child.digest), undefined);
      assert.equal(await service.get(parent.digest), undefined);
    });

    it('rejects an empty closure', async () => {
      await assert.rejects(service.putMany([]), isInvalidDirectory);
    });

    it('accepts a parent whose child is already stored', async () => {
      const child = uniqueDirectory('stored-child');
      await service.putMany([child]);
      const parent = Directory.fromEntries([{ name: parsePathComponent('c'), node: directoryNode(child.digest, child.size) }]);
      const root = await service.putMany([parent]);
      assert.equal(root.toHex(), parent.digest.toHex());
      assert.deepEqual(await digests(parent.digest), [parent.digest.toHex(), child.digest.toHex()]);
    });

    it('an aborted signal rejects with signal.reason', async () => {
      const controller = new AbortController();
      const reason = new Error('stop now');
      controller.abort(reason);
      await assert.rejects(service.get(DIRECTORY_A_DIGEST, { signal: controller.signal }), (e) => e === reason);
      await assert.rejects(service.putMany([DIRECTORY_A], { signal: controller.signal }), (e) => e === reason);
      await assert.rejects(collect(service.getRecursive(DIRECTORY_A_DIGEST, { signal: controller.signal })), (e) => e === reason);
    });

    it('a putMany aborted midway stores nothing', async () => {
      const controller = new AbortController();
      const reason = new Error('cut off');
      const child = uniqueDirectory('aborted');
      async function* source() {
        yield child;
        controller.abort(reason);
        yield Directory.fromEntries([{ name: parsePathComponent('x'), node: directoryNode(child.digest, child.size) }]);
      }
      await assert.rejects(service.putMany(source(), { signal: controller.signal }), (e) => e === reason);
      assert.equal(await service.get(child.digest), undefined);
    });

    it('100 parallel putMany calls all succeed', async () => {
      const dirs = Array.from({ length: 100 }, (_, i) => uniqueDirectory(`parallel-${i}`));
      const roots = await Promise.all(dirs.map((d) => service.putMany([d])));
      for (let i = 0; i < dirs.length; i++) assert.equal(roots[i]?.toHex(), dirs[i]?.digest.toHex());
      for (const d of dirs) assert.ok(await service.get(d.digest));
    });
  });
}
