import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { concatBytes } from '../../common/async-iterable.js';
import { B3Digest } from '../b3-digest.js';
import { isCastoreError } from '../errors.js';
import { BLOB_B, BLOB_B_DIGEST, describeBlobServiceConformance } from '../testing/index.js';
import { FsBlobService } from './fs.js';

const roots: string[] = [];
async function freshRoot(): Promise<string> {
  const root = await fs.mkdtemp(join(tmpdir(), 'kiln-fs-blob-'));
  roots.push(root);
  return root;
}
after(async () => {
  for (const root of roots) await fs.rm(root, { recursive: true, force: true });
});

describeBlobServiceConformance('FsBlobService (batch sync)', { create: async () => FsBlobService.open(await freshRoot()) });
describeBlobServiceConformance('FsBlobService (fsync always)', { create: async () => FsBlobService.open(await freshRoot(), { fsync: 'always' }) });

describe('FsBlobService on disk', () => {
  it('a blob corrupted on disk fails reads with INTEGRITY_MISMATCH naming the digest', async () => {
    const service = await FsBlobService.open(await freshRoot());
    await service.put(BLOB_B);
    const path = service.blobPath(BLOB_B_DIGEST);
    await fs.chmod(path, 0o644);
    const handle = await fs.open(path, 'r+');
    await handle.write(Uint8Array.of(0xff), 0, 1, 500_000);
    await handle.close();
    const stream = await service.read(BLOB_B_DIGEST);
    assert.ok(stream);
    await assert.rejects(concatBytes(stream), (e) => isCastoreError(e, 'INTEGRITY_MISMATCH') && (e as Error).message.includes(BLOB_B_DIGEST.toString()));
    await service.close();
  });

  it('a writer killed mid-write leaves no visible blob and its temp file is swept', async () => {
    const root = await freshRoot();
    await FsBlobService.open(root);
    const script = `
      import { FsBlobService } from ${JSON.stringify(new URL('./fs.ts', import.meta.url).pathname)};
      const service = await FsBlobService.open(${JSON.stringify(root)});
      async function* forever() { for (;;) { yield new Uint8Array(1 << 16).fill(7); await new Promise((r) => setTimeout(r, 1)); } }
      process.stdout.write('writing\\n');
      await service.put(forever());`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    await new Promise((r) => setTimeout(r, 300));
    const tmpBefore = await fs.readdir(join(root, 'tmp'));
    assert.equal(tmpBefore.length, 1, 'the writer has a temp file in progress');
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const reopened = await FsBlobService.open(root);
    assert.deepEqual(await fs.readdir(join(root, 'tmp')), [], 'the dead writer temp file was swept');
    const digests: B3Digest[] = [];
    for await (const d of reopened.list()) digests.push(d);
    assert.deepEqual(digests, [], 'no blob became visible');
  });

  it('stores blobs as read-only files that localBlobPath exposes', async () => {
    const service = await FsBlobService.open(await freshRoot());
    const { digest } = await service.put(new TextEncoder().encode('local path'));
    const path = await service.localBlobPath(digest);
    assert.ok(path);
    assert.equal((await fs.stat(path)).mode & 0o777, 0o444);
    assert.equal(await service.localBlobPath(B3Digest.fromBytes(new Uint8Array(32))), undefined);
  });
});
