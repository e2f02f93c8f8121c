import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { collect } from '../../common/async-iterable.js';
import { B3Digest } from '../b3-digest.js';
import type { PutFileOptions } from '../blob-service/blob-service.js';
import { MemoryBlobService } from '../blob-service/memory.js';
import { isCastoreError } from '../errors.js';
import { ReferenceScanner } from '../refscan.js';
import { HELLOWORLD_BLOB_DIGEST } from '../testing/fixtures.js';
import { type FileDigestCache, type FileIdentity, fileIdentityKey } from './file-digest-cache.js';
import type { IngestionEntry } from './ingest-entries.js';
import {
  type ImportProgress,
  RACY_CLEAN_MARGIN_MS,
  SLOW_SYNC_IO_MS,
  SMALL_FILE_MAX_SIZE,
  SYNC_IO_MIN_SAMPLES,
  SyncIoGovernor,
  walkFilesystem,
} from './walk-filesystem.js';

const show = (entry: IngestionEntry) => entry.path.map((c) => Buffer.from(c).toString('latin1')).join('/');

class MapDigestCache implements FileDigestCache {
  readonly map = new Map<string, Uint8Array>();
  lookup(identity: FileIdentity) {
    return this.map.get(fileIdentityKey(identity));
  }
  record(identity: FileIdentity, digest: Uint8Array) {
    this.map.set(fileIdentityKey(identity), digest);
  }
}

/** Counts puts so tests can tell whether files were read again. */
class CountingBlobService extends MemoryBlobService {
  puts = 0;
  override put(...args: Parameters<MemoryBlobService['put']>) {
    this.puts++;
    return super.put(...args);
  }
}

/** Stores files by path (`LocalFileIngest`), counting how many arrive that way. */
class ByPathBlobService extends CountingBlobService {
  byPath = 0;
  async putFile(path: string | Buffer, options: PutFileOptions = {}) {
    this.byPath++;
    return super.put(await fs.readFile(path), options);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('walkFilesystem', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fs.mkdtemp(join(tmpdir(), 'kiln-walk-'));
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  for (const io of ['auto', 'async'] as const) {
    it(`walkFilesystem (io ${io}) yields children before parents and the root last`, async () => {
      const root = join(dir, 'root');
      await fs.mkdir(join(root, 'a/b'), { recursive: true });
      await fs.mkdir(join(root, 'empty'));
      await fs.writeFile(join(root, 'a/b/deep'), 'deep');
      await fs.writeFile(join(root, 'a/f'), 'f');
      await fs.writeFile(join(root, 'top'), 'Hello World!');
      await fs.symlink('a/f', join(root, 'link'));
      const entries = await collect(walkFilesystem(root, { blobService: new MemoryBlobService(), io }));
      const paths = entries.map(show);
      assert.deepEqual(
        new Set(paths),
        new Set(['root', 'root/a', 'root/a/b', 'root/a/b/deep', 'root/a/f', 'root/top', 'root/link', 'root/empty']),
      );
      assert.equal(paths.at(-1), 'root');
      for (const [index, path] of paths.entries()) {
        const parent = path.split('/').slice(0, -1).join('/');
        if (parent) assert.ok(paths.indexOf(parent) > index, `${path} before ${parent}`);
      }
      const top = entries.find((e) => show(e) === 'root/top');
      assert.ok(top && top.type === 'file' && 'digest' in top);
      assert.ok(top.digest.equals(HELLOWORLD_BLOB_DIGEST));
      assert.equal(top.size, 12);
      const link = entries.find((e) => show(e) === 'root/link');
      assert.ok(link && link.type === 'symlink');
      assert.equal(Buffer.from(link.target).toString(), 'a/f');
    });
  }

  it('walkFilesystem does not follow a symlink at the root', async () => {
    await fs.mkdir(join(dir, 'target'));
    await fs.symlink(join(dir, 'target'), join(dir, 'link'));
    const entries = await collect(walkFilesystem(join(dir, 'link'), { blobService: new MemoryBlobService() }));
    assert.equal(entries.length, 1);
    assert.equal(entries[0]?.type, 'symlink');
    assert.equal(show(entries[0] as IngestionEntry), 'link');
  });

  it('walkFilesystem takes only the owner-execute bit as executable', async () => {
    const root = join(dir, 'modes');
    await fs.mkdir(root);
    const modes = { owner: 0o744, group: 0o654, other: 0o645, none: 0o644, only: 0o100 };
    for (const [name, mode] of Object.entries(modes)) {
      await fs.writeFile(join(root, name), name);
      await fs.chmod(join(root, name), mode);
    }
    const entries = await collect(walkFilesystem(root, { blobService: new MemoryBlobService() }));
    const executable = Object.fromEntries(entries.flatMap((e) => (e.type === 'file' ? [[show(e).split('/')[1], e.executable]] : [])));
    assert.deepEqual(executable, { owner: true, group: false, other: false, none: false, only: true });
  });

  it('walkFilesystem keeps non-UTF-8 names as raw bytes', async () => {
    const root = Buffer.from(join(dir, 'raw'));
    const name = Buffer.from([0x66, 0xff, 0xfe, 0x80]);
    await fs.mkdir(root);
    await fs.writeFile(Buffer.concat([root, Buffer.from('/'), name]), 'x');
    const entries = await collect(walkFilesystem(root, { blobService: new MemoryBlobService() }));
    assert.deepEqual(
      entries.map((e) => e.path.map((c) => Buffer.from(c))),
      [[Buffer.from('raw'), name], [Buffer.from('raw')]],
    );
  });

  it('walkFilesystem rejects a fifo, naming its path', async () => {
    const root = join(dir, 'withfifo');
    await fs.mkdir(root);
    await fs.writeFile(join(root, 'ok'), 'ok');
    execFileSync('mkfifo', [join(root, 'pipe')]);
    await assert.rejects(collect(walkFilesystem(root, { blobService: new MemoryBlobService() })), (error: unknown) => {
      assert.ok(isCastoreError(error, 'INVALID_NODE'), String(error));
      assert.match(error.message, /unsupported file type \(fifo\) at .*withfifo\/pipe/);
      return true;
    });
  });

  it('walkFilesystem rejects a socket, also as the root', async () => {
    const path = join(dir, 'sock');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(path, resolve));
    try {
      await assert.rejects(
        collect(walkFilesystem(path, { blobService: new MemoryBlobService() })),
        /unsupported file type \(socket\) at .*sock/,
      );
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('walkFilesystem streams files larger than the small-file limit', async () => {
    const root = join(dir, 'large');
    await fs.mkdir(root);
    const data = Buffer.alloc(SMALL_FILE_MAX_SIZE * 2 + 12345, 7);
    data.write('needle-in-the-middle', SMALL_FILE_MAX_SIZE - 5);
    await fs.writeFile(join(root, 'big'), data);
    const scanner = new ReferenceScanner([Buffer.from('needle-in-the-middle')]);
    const progress: ImportProgress[] = [];
    const entries = await collect(
      walkFilesystem(root, { blobService: new MemoryBlobService(), scanner, onProgress: (p) => progress.push(p) }),
    );
    const big = entries[0];
    assert.ok(big?.type === 'file' && 'digest' in big);
    assert.ok(big.digest.equals(B3Digest.of(data)));
    assert.equal(big.size, data.length);
    assert.deepEqual(scanner.matches(), [true]);
    assert.deepEqual(progress.at(-1), { files: 1, bytes: data.length, cachedFiles: 0 });
    assert.ok(progress.length > 2, 'progress reported while streaming');
  });

  it('walkFilesystem skips unchanged files known to the digest cache and re-reads changed ones', async () => {
    const root = join(dir, 'cached');
    await fs.mkdir(root);
    for (let i = 0; i < 20; i++) await fs.writeFile(join(root, `f${i}`), `file ${i}`);
    await sleep(RACY_CLEAN_MARGIN_MS + 50);
    const cache = new MapDigestCache();
    const blobService = new CountingBlobService();
    const first = await collect(walkFilesystem(root, { blobService, fileDigestCache: cache }));
    assert.equal(blobService.puts, 20);
    assert.equal(cache.map.size, 20);

    await fs.writeFile(join(root, 'f3'), 'FILE 3'); // same size, new contents
    let last: ImportProgress | undefined;
    const second = await collect(walkFilesystem(root, { blobService, fileDigestCache: cache, onProgress: (p) => (last = p) }));
    assert.equal(blobService.puts, 21, 'only the changed file is read again');
    assert.equal(last?.cachedFiles, 19);
    const digestOf = (entries: IngestionEntry[], name: string) => {
      const entry = entries.find((e) => show(e) === `cached/${name}`);
      assert.ok(entry?.type === 'file' && 'digest' in entry);
      return entry.digest;
    };
    assert.ok(digestOf(second, 'f3').equals(B3Digest.of(Buffer.from('FILE 3'))));
    assert.ok(digestOf(second, 'f4').equals(digestOf(first, 'f4')));
    assert.equal(cache.map.size, 20, 'the fresh write is too recent to be recorded');
  });

  it('walkFilesystem ignores a cache hit whose blob the service no longer has', async () => {
    const root = join(dir, 'gone');
    await fs.mkdir(root);
    await fs.writeFile(join(root, 'f'), 'contents');
    await sleep(RACY_CLEAN_MARGIN_MS + 50);
    const cache = new MapDigestCache();
    await collect(walkFilesystem(root, { blobService: new MemoryBlobService(), fileDigestCache: cache }));
    assert.equal(cache.map.size, 1);
    const fresh = new CountingBlobService();
    await collect(walkFilesystem(root, { blobService: fresh, fileDigestCache: cache }));
    assert.equal(fresh.puts, 1);
    assert.equal(await fresh.has(B3Digest.of(Buffer.from('contents'))), true);
  });

  it('walkFilesystem still scans files skipped thanks to the cache', async () => {
    const root = join(dir, 'scan');
    await fs.mkdir(root);
    await fs.writeFile(join(root, 'f'), 'refers to /nix/store/33l4p0pn0mybmqzaxfkpppyh7vx1c74p-hello');
    await sleep(RACY_CLEAN_MARGIN_MS + 50);
    const cache = new MapDigestCache();
    const blobService = new CountingBlobService();
    await collect(walkFilesystem(root, { blobService, fileDigestCache: cache }));
    const scanner = new ReferenceScanner([Buffer.from('33l4p0pn0mybmqzaxfkpppyh7vx1c74p'), Buffer.from('absent')]);
    await collect(walkFilesystem(root, { blobService, fileDigestCache: cache, scanner }));
    assert.equal(blobService.puts, 1, 'not stored again');
    assert.deepEqual(scanner.matches(), [true, false]);
  });

  it('walkFilesystem hands small files by path to a LocalFileIngest service, unless a scanner needs their bytes', async () => {
    const root = join(dir, 'bypath');
    await fs.mkdir(root);
    await fs.writeFile(join(root, 'small'), 'Hello World!');
    await fs.writeFile(join(root, 'large'), Buffer.alloc(SMALL_FILE_MAX_SIZE + 1, 1));
    const blobService = new ByPathBlobService();
    const entries = await collect(walkFilesystem(root, { blobService }));
    assert.equal(blobService.byPath, 1, 'the small file went by path');
    assert.equal(blobService.puts, 2, 'the large one was streamed (putFile puts what it read, here)');
    const small = entries.find((e) => show(e) === 'bypath/small');
    assert.ok(small?.type === 'file' && 'digest' in small && small.digest.equals(HELLOWORLD_BLOB_DIGEST));
    const scanning = new ByPathBlobService();
    await collect(walkFilesystem(root, { blobService: scanning, scanner: new ReferenceScanner([Buffer.from('x')]) }));
    assert.equal(scanning.byPath, 0);
  });

  it('walkFilesystem rejects with the abort reason', async () => {
    const root = join(dir, 'abort');
    await fs.mkdir(root);
    for (let i = 0; i < 50; i++) await fs.writeFile(join(root, `f${i}`), `${i}`);
    const controller = new AbortController();
    const reason = new Error('stop');
    let seen = 0;
    const walk = walkFilesystem(root, {
      blobService: new MemoryBlobService(),
      signal: controller.signal,
      concurrency: 2,
      onProgress: () => {
        if (++seen === 5) controller.abort(reason);
      },
    });
    await assert.rejects(collect(walk), (error) => error === reason);
  });

  it('SyncIoGovernor stays synchronous while calls are fast and turns asynchronous when many are slow', () => {
    const fast = new SyncIoGovernor();
    for (let i = 0; i < 200; i++) fast.time(() => i);
    assert.equal(fast.sync, true);
    const slow = new SyncIoGovernor();
    const busy = () => {
      const until = performance.now() + SLOW_SYNC_IO_MS * 2;
      while (performance.now() < until) {}
    };
    for (let i = 0; i < SYNC_IO_MIN_SAMPLES - 1; i++) slow.time(busy);
    assert.equal(slow.sync, true, 'no decision before enough samples');
    slow.time(busy);
    assert.equal(slow.sync, false);
    assert.equal(new SyncIoGovernor('async').sync, false);
  });
});
