import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { open } from 'lmdb';
import { collect } from '../../common/async-iterable.js';
import { isCastoreError } from '../errors.js';
import { openFsCastore } from '../fs-store.js';
import {
  DIRECTORY_COMPLICATED,
  DIRECTORY_COMPLICATED_DIGEST,
  DIRECTORY_WITH_KEEP,
  describeDirectoryServiceConformance,
} from '../testing/index.js';

const roots: string[] = [];
async function freshRoot(): Promise<string> {
  const root = await fs.mkdtemp(join(tmpdir(), 'kiln-fs-dir-'));
  roots.push(root);
  return root;
}
after(async () => {
  for (const root of roots) await fs.rm(root, { recursive: true, force: true });
});

describeDirectoryServiceConformance('FsDirectoryService', {
  create: async () => (await openFsCastore(await freshRoot())).directoryService,
});

describe('FsDirectoryService on disk', () => {
  it('keeps directories across reopening', async () => {
    const root = await freshRoot();
    const first = await openFsCastore(root);
    await first.directoryService.putMany([DIRECTORY_WITH_KEEP, DIRECTORY_COMPLICATED]);
    await first.close();
    const second = await openFsCastore(root);
    const closure = await collect(second.directoryService.getRecursive(DIRECTORY_COMPLICATED_DIGEST));
    assert.equal(closure.length, 2);
    await second.close();
  });

  it('a stored directory whose bytes changed fails reads with INTEGRITY_MISMATCH naming the digest', async () => {
    const root = await freshRoot();
    const store = await openFsCastore(root);
    await store.directoryService.putMany([DIRECTORY_WITH_KEEP, DIRECTORY_COMPLICATED]);
    await store.close();
    const env = open({ path: join(root, 'index.mdb'), compression: false });
    const db = env.openDB<Buffer, Buffer>({ name: 'directories', keyEncoding: 'binary', encoding: 'binary' });
    await db.put(Buffer.from(DIRECTORY_COMPLICATED_DIGEST.bytes), Buffer.from(DIRECTORY_WITH_KEEP.encode()));
    await env.close();
    const reopened = await openFsCastore(root);
    await assert.rejects(
      reopened.directoryService.get(DIRECTORY_COMPLICATED_DIGEST),
      (e) => isCastoreError(e, 'INTEGRITY_MISMATCH') && (e as Error).message.includes(DIRECTORY_COMPLICATED_DIGEST.toString()),
    );
    await reopened.close();
  });
});
