import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { concatBytes } from '../../common/async-iterable.js';
import { B3Digest } from '../b3-digest.js';
import { isCastoreError } from '../errors.js';
import { BLOB_B, BLOB_B_DIGEST, describeBlobServiceConformance, EMPTY_BLOB_DIGEST, HELLOWORLD_BLOB_DIGEST } from '../testing/index.js';
import { hasLocalFileIngest } from './blob-service.js';
import { FsBlobService } from './fs.js';
import { PUT_FILE_BUFFER_SIZE } from './fs-put-file.js';

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
describeBlobServiceConformance('FsBlobService (fsync always)', {
  create: async () => FsBlobService.open(await freshRoot(), { fsync: 'always' }),
});

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
    await assert.rejects(
      concatBytes(stream),
      (e) => isCastoreError(e, 'INTEGRITY_MISMATCH') && (e as Error).message.includes(BLOB_B_DIGEST.toString()),
    );
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
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
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

  it('a process killed while its put workers write leaves no visible blob and its temp files are swept', async () => {
    const root = await freshRoot();
    await FsBlobService.open(root);
    const big = join(root, 'big');
    await fs.writeFile(big, '');
    await fs.truncate(big, 8 * 2 ** 30); // sparse: reads fast, and takes seconds to copy
    const script = `
      import { FsBlobService } from ${JSON.stringify(new URL('./fs.ts', import.meta.url).pathname)};
      const service = await FsBlobService.open(${JSON.stringify(root)}, { putFileThreads: 1, putFileInlineFirst: 0 });
      await service.putFile(${JSON.stringify(join(root, 'tmp'))}).catch(() => {}); // fails (a directory), but starts the worker
      await new Promise((resolve) => setTimeout(resolve, 1000));
      process.stdout.write('writing\\n');
      await service.putFile(${JSON.stringify(big)});`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    let temps: string[] = [];
    while (temps.length === 0) temps = await fs.readdir(join(root, 'tmp'));
    assert.match(temps[0]!, new RegExp(`^${child.pid}-.*-w0-`), 'the worker writes the temp file');
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    await FsBlobService.open(root);
    assert.deepEqual(await storeContents(root), { blobs: [], tmp: [] });
  });

  it('early writeback runs in the background between puts and sync points', async () => {
    const root = await freshRoot();
    const service = await FsBlobService.open(root, { earlyWritebackBytes: 1 });
    const blobs = Array.from({ length: 40 }, (_, i) => Buffer.alloc(1000 + i, i));
    await Promise.all(blobs.slice(0, 20).map((bytes) => service.put(bytes)));
    await service.sync();
    for (const [i, bytes] of blobs.slice(20).entries()) {
      await fs.writeFile(join(root, `f${i}`), bytes);
      await service.putFile(join(root, `f${i}`));
    }
    await service.close();
    const reopened = await FsBlobService.open(root);
    assert.equal((await storeContents(root)).blobs.length, 40);
    for (const bytes of blobs) assert.ok((await storedBytes(reopened, B3Digest.of(bytes))).equals(bytes));
  });

  it('putFile with fsync always stores and syncs each blob', async () => {
    const root = await freshRoot();
    const service = await FsBlobService.open(root, { fsync: 'always' });
    await fs.writeFile(join(root, 'f'), BLOB_B);
    assert.ok((await service.putFile(join(root, 'f'))).digest.equals(BLOB_B_DIGEST));
    assert.ok((await storedBytes(service, BLOB_B_DIGEST)).equals(BLOB_B));
    await service.close();
  });

  it('stores blobs as read-only files that localBlobPath exposes', async () => {
    const service = await FsBlobService.open(await freshRoot());
    const { digest } = await service.put(new TextEncoder().encode('local path'));
    const path = await service.localBlobPath(digest);
    assert.ok(path);
    assert.equal((await fs.stat(path)).mode & 0o777, 0o444);
    assert.equal(await service.localBlobPath(B3Digest.fromBytes(new Uint8Array(32))), undefined);
  });

  it('presenceCheck lists a shard asked about often, and still sees blobs stored after the listing', async () => {
    const service = await FsBlobService.open(await freshRoot());
    const first = await service.put(new TextEncoder().encode('first'));
    const shard = first.digest.toHex().slice(0, 2);
    /** Bytes whose digest lands in the same shard as `first`. */
    const sameShard = (label: string) => {
      for (let i = 0; ; i++) {
        const bytes = new TextEncoder().encode(`${label} ${i}`);
        const digest = B3Digest.of(bytes);
        if (digest.toHex().startsWith(shard)) return { bytes, digest };
      }
    };
    const later = sameShard('later');
    const missing = sameShard('missing');
    const isStored = service.presenceCheck();
    for (let i = 0; i < 8; i++) assert.equal(isStored(first.digest), true);
    assert.equal(isStored(later.digest), false);
    await service.put(later.bytes);
    assert.equal(isStored(later.digest), true, 'a blob stored after the listing');
    assert.equal(isStored(missing.digest), false);
    await fs.rm(service.blobPath(first.digest), { force: true });
    assert.equal(isStored(first.digest), true, 'answered from the listing, not the filesystem');
    assert.equal(service.presenceCheck()(first.digest), false, 'a new check looks again');
    await fs.rm(join(service.root, 'blobs', shard), { recursive: true });
    const afterDamage = service.presenceCheck();
    for (let i = 0; i < 8; i++) assert.equal(afterDamage(later.digest), false, 'a missing shard directory holds no blob');
  });
});

/** Every name under `root`'s blobs/ and tmp/: what a failed or finished put may leave visible. */
async function storeContents(root: string): Promise<{ blobs: string[]; tmp: string[] }> {
  const blobs: string[] = [];
  for (const shard of await fs.readdir(join(root, 'blobs')))
    for (const name of await fs.readdir(join(root, 'blobs', shard))) blobs.push(name);
  return { blobs: blobs.sort(), tmp: await fs.readdir(join(root, 'tmp')) };
}

async function storedBytes(service: FsBlobService, digest: B3Digest): Promise<Buffer> {
  const stream = await service.read(digest);
  assert.ok(stream, `${digest} is stored`);
  return Buffer.from(await concatBytes(stream));
}

for (const threads of [undefined, 0]) {
  describe(`FsBlobService.putFile (${threads === 0 ? 'inline' : 'worker threads'})`, () => {
    const open = async () => {
      const root = await freshRoot();
      return { root, service: await FsBlobService.open(root, { putFileThreads: threads, putFileInlineFirst: 0 }) };
    };

    it('is advertised as LocalFileIngest and stores a file under the digest of its bytes, read-only', async () => {
      const { root, service } = await open();
      assert.ok(hasLocalFileIngest(service));
      const path = join(root, 'hello');
      await fs.writeFile(path, 'Hello World!');
      const result = await service.putFile(path, { sizeHint: 12 });
      assert.ok(result.digest.equals(HELLOWORLD_BLOB_DIGEST));
      assert.equal(result.size, 12);
      assert.equal((await storedBytes(service, result.digest)).toString(), 'Hello World!');
      assert.equal((await fs.stat(service.blobPath(result.digest))).mode & 0o777, 0o444);
      await service.close();
    });

    it('stores empty, buffer-sized and larger-than-buffer files, with or without a size hint', async () => {
      const { root, service } = await open();
      const cases = [
        { name: 'empty', bytes: Buffer.alloc(0) },
        { name: 'b', bytes: Buffer.from(BLOB_B) },
        { name: 'exact', bytes: Buffer.alloc(PUT_FILE_BUFFER_SIZE - 1, 3) },
        { name: 'full', bytes: Buffer.alloc(PUT_FILE_BUFFER_SIZE, 4) },
        { name: 'large', bytes: Buffer.alloc(3 * PUT_FILE_BUFFER_SIZE + 17, 5) },
      ];
      for (const { name, bytes } of cases) {
        await fs.writeFile(join(root, name), bytes);
        for (const sizeHint of [bytes.byteLength, undefined]) {
          const result = await service.putFile(join(root, name), { sizeHint });
          assert.ok(result.digest.equals(B3Digest.of(bytes)), name);
          assert.equal(result.size, bytes.byteLength, name);
          assert.ok((await storedBytes(service, result.digest)).equals(bytes), name);
        }
      }
      assert.ok(cases.some(({ bytes }) => B3Digest.of(bytes).equals(EMPTY_BLOB_DIGEST)));
      assert.deepEqual((await storeContents(root)).tmp, [], 'no temp file left');
      await service.close();
    });

    it('stores the same contents once, whether put by path twice, concurrently or as a buffer first', async () => {
      const { root, service } = await open();
      await fs.writeFile(join(root, 'one'), BLOB_B);
      await fs.writeFile(join(root, 'two'), BLOB_B);
      await service.put(BLOB_B);
      const results = await Promise.all([
        service.putFile(join(root, 'one')),
        service.putFile(join(root, 'two')),
        service.putFile(join(root, 'one')),
      ]);
      for (const result of results) assert.ok(result.digest.equals(BLOB_B_DIGEST));
      assert.deepEqual(await storeContents(root), { blobs: [BLOB_B_DIGEST.toHex()], tmp: [] });
      await service.close();
    });

    it('stores what it read when the size hint is stale (the file grew or shrank after the stat)', async () => {
      const { root, service } = await open();
      const path = join(root, 'changed');
      await fs.writeFile(path, 'grown contents');
      const grown = await service.putFile(path, { sizeHint: 5 });
      assert.equal(grown.size, 14);
      assert.ok(grown.digest.equals(B3Digest.of(Buffer.from('grown contents'))));
      const big = Buffer.alloc(2 * PUT_FILE_BUFFER_SIZE, 9);
      await fs.writeFile(path, big);
      const outgrown = await service.putFile(path, { sizeHint: 100 });
      assert.equal(outgrown.size, big.byteLength);
      assert.ok(outgrown.digest.equals(B3Digest.of(big)));
      await fs.writeFile(path, 'short');
      const shrunk = await service.putFile(path, { sizeHint: 1000 });
      assert.equal(shrunk.size, 5);
      assert.ok(shrunk.digest.equals(B3Digest.of(Buffer.from('short'))));
      await service.close();
    });

    it('stores a consistent prefix of a file that is appended to while it is read', async () => {
      const { root, service } = await open();
      const path = join(root, 'appended');
      const chunk = Buffer.alloc(64 * 1024);
      for (let i = 0; i < chunk.byteLength; i++) chunk[i] = (i * 31) % 251;
      await fs.writeFile(path, chunk);
      const handle = await fs.open(path, 'a');
      let appending = true;
      const appender = (async () => {
        while (appending) await handle.write(chunk);
      })();
      const results = [];
      for (let i = 0; i < 20; i++) results.push(await service.putFile(path, { sizeHint: chunk.byteLength }));
      appending = false;
      await appender;
      await handle.close();
      const final = await fs.readFile(path);
      for (const result of results) {
        const prefix = final.subarray(0, result.size);
        assert.ok(result.digest.equals(B3Digest.of(prefix)), 'the digest is that of the bytes stored');
        assert.ok((await storedBytes(service, result.digest)).equals(prefix));
      }
      assert.deepEqual((await storeContents(root)).tmp, []);
      await service.close();
    });

    it('rejects a missing file or a symlink with the filesystem error and stores nothing', async () => {
      const { root, service } = await open();
      await assert.rejects(service.putFile(join(root, 'missing')), (e: NodeJS.ErrnoException) => {
        return e.code === 'ENOENT' && e.syscall === 'open' && e.path === join(root, 'missing');
      });
      await fs.writeFile(join(root, 'target'), 'target');
      await fs.symlink('target', join(root, 'link'));
      await assert.rejects(service.putFile(Buffer.from(join(root, 'link'))), (e: NodeJS.ErrnoException) => e.code === 'ELOOP');
      assert.deepEqual(await storeContents(root), { blobs: [], tmp: [] });
      await service.close();
    });

    it('leaves nothing visible when the blob cannot be renamed into place', async () => {
      const { root, service } = await open();
      const small = Buffer.from('cannot land');
      const large = Buffer.alloc(PUT_FILE_BUFFER_SIZE + 1, 7);
      for (const [name, bytes] of [
        ['small', small],
        ['large', large],
      ] as const) {
        await fs.writeFile(join(root, name), bytes);
        const shard = join(root, 'blobs', B3Digest.of(bytes).toHex().slice(0, 2));
        await fs.rm(shard, { recursive: true, force: true });
        await fs.writeFile(shard, 'not a directory');
        await assert.rejects(service.putFile(join(root, name)), (e: NodeJS.ErrnoException) => e.code === 'ENOTDIR', name);
        await fs.rm(shard);
        await fs.mkdir(shard);
      }
      assert.deepEqual(await storeContents(root), { blobs: [], tmp: [] });
      await service.close();
    });

    it('rejects with the abort reason, and after close', async () => {
      const { root, service } = await open();
      await fs.writeFile(join(root, 'f'), 'f');
      const reason = new Error('stop');
      await assert.rejects(service.putFile(join(root, 'f'), { signal: AbortSignal.abort(reason) }), (e) => e === reason);
      await service.close();
      await assert.rejects(service.putFile(join(root, 'f')), (e) => isCastoreError(e, 'BACKEND_FAILURE'));
    });

    it('close waits for puts in flight; the blobs are complete', async () => {
      const { root, service } = await open();
      const files = Array.from({ length: 300 }, (_, i) => ({ path: join(root, `f${i}`), bytes: Buffer.alloc(1000 + i, i % 256) }));
      for (const { path, bytes } of files) await fs.writeFile(path, bytes);
      const puts = files.map(({ path, bytes }) => service.putFile(path, { sizeHint: bytes.byteLength }));
      await service.close();
      const results = await Promise.all(puts);
      const reopened = await FsBlobService.open(root);
      for (const [i, result] of results.entries()) {
        assert.ok(result.digest.equals(B3Digest.of(files[i]!.bytes)));
        assert.ok((await storedBytes(reopened, result.digest)).equals(files[i]!.bytes));
      }
      assert.deepEqual((await storeContents(root)).tmp, []);
    });
  });
}
