import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FILE_DIGEST_WRITE_BATCH, openFsCastore } from './fs-store.js';
import type { FileIdentity } from './import/file-digest-cache.js';

const roots: string[] = [];
after(async () => {
  for (const root of roots) await fs.rm(root, { recursive: true, force: true });
});

const identity = (ino: number): FileIdentity => ({ dev: 1n, ino: BigInt(ino), size: 10n, mtimeNs: 5n, ctimeNs: 6n });
const digestOf = (ino: number) => Buffer.alloc(32, ino % 256);

describe('openFsCastore file-digest cache', () => {
  it('answers from records not yet written, and keeps all of them across close and reopen', async () => {
    const root = await fs.mkdtemp(join(tmpdir(), 'kiln-fs-store-'));
    roots.push(root);
    const count = FILE_DIGEST_WRITE_BATCH + 100;
    const store = await openFsCastore(root);
    for (let ino = 0; ino < count; ino++) store.fileDigestCache.record(identity(ino), digestOf(ino));
    assert.deepEqual(store.fileDigestCache.lookup(identity(count - 1)), new Uint8Array(digestOf(count - 1)));
    assert.equal(store.fileDigestCache.lookup(identity(count)), undefined);
    await store.close();
    const reopened = await openFsCastore(root);
    for (const ino of [0, FILE_DIGEST_WRITE_BATCH - 1, count - 1]) {
      assert.deepEqual(reopened.fileDigestCache.lookup(identity(ino)), new Uint8Array(digestOf(ino)));
    }
    await reopened.close();
  });
});
