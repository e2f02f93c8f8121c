import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { isCastoreError } from './errors.js';
import { castoreFromUrl, defaultStoreUrl, kilnHome } from './from-url.js';
import { HELLOWORLD_BLOB, HELLOWORLD_BLOB_DIGEST } from './testing/fixtures.js';

const roots: string[] = [];
after(async () => {
  for (const root of roots) await fs.rm(root, { recursive: true, force: true });
});

describe('castoreFromUrl', () => {
  for (const url of [
    'memory://foo',
    'memory:///',
    'memory:///foo',
    'memory://?x=1',
    'http://foo.example/test',
    'file://host.example/x',
    'file:///',
    'nope+grpc://x',
    '',
  ]) {
    it(`rejects ${JSON.stringify(url)} with INVALID_URL naming it`, async () => {
      await assert.rejects(castoreFromUrl(url), (e) => isCastoreError(e, 'INVALID_URL') && (e as Error).message.includes(url));
    });
  }

  it('opens memory:// with working services', async () => {
    const store = await castoreFromUrl('memory://');
    const { digest } = await store.blobService.put(HELLOWORLD_BLOB);
    assert.ok(digest.equals(HELLOWORLD_BLOB_DIGEST));
    assert.equal(store.verify, undefined);
    await store.close();
  });

  it('opens the same disk store through a path and a file:// URL', async () => {
    const root = await fs.mkdtemp(join(tmpdir(), 'kiln-url-'));
    roots.push(root);
    const byPath = await castoreFromUrl(root);
    await byPath.blobService.put(HELLOWORLD_BLOB);
    assert.ok(byPath.fileDigestCache);
    await byPath.close();
    const byUrl = await castoreFromUrl(`file://${root}`);
    assert.equal(await byUrl.blobService.has(HELLOWORLD_BLOB_DIGEST), true);
    const report = await byUrl.verify?.();
    assert.deepEqual(report?.problems, []);
    assert.equal(report?.blobs, 1);
    await byUrl.close();
  });
});

describe('kilnHome', () => {
  it('prefers KILN_HOME and defaults to ~/.local/share/kiln', () => {
    assert.equal(kilnHome({ KILN_HOME: '/srv/kiln' }), '/srv/kiln');
    assert.equal(kilnHome({ HOME: '/home/u' }), '/home/u/.local/share/kiln');
    assert.equal(defaultStoreUrl({ KILN_HOME: '/srv/kiln' }), '/srv/kiln/store');
  });
});
