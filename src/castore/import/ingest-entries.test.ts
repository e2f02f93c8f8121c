import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { B3Digest } from '../b3-digest.js';
import { MemoryBlobService } from '../blob-service/memory.js';
import type { Directory } from '../directory.js';
import { MemoryDirectoryService } from '../directory-service/memory.js';
import { isCastoreError } from '../errors.js';
import { directoryNode, fileNode, nodesEqual, symlinkNode } from '../node.js';
import {
  DIRECTORY_A_DIGEST,
  DIRECTORY_COMPLICATED,
  DIRECTORY_COMPLICATED_DIGEST,
  DIRECTORY_WITH_KEEP,
  DIRECTORY_WITH_KEEP_DIGEST,
  EMPTY_BLOB_DIGEST,
  HELLOWORLD_BLOB,
  HELLOWORLD_BLOB_DIGEST,
} from '../testing/fixtures.js';
import { type IngestionEntry, ingestEntries } from './ingest-entries.js';

const DUMMY_DIGEST = B3Digest.fromBytes(new Uint8Array(32));
const path = (text: string) => text.split('/').map((part) => Buffer.from(part));
const file = (p: string, digest = EMPTY_BLOB_DIGEST, size = 0, executable = false): IngestionEntry => ({
  type: 'file',
  path: path(p),
  digest,
  size,
  executable,
});
const dir = (p: string): IngestionEntry => ({ type: 'directory', path: path(p) });
const link = (p: string, target: string): IngestionEntry => ({ type: 'symlink', path: path(p), target: Buffer.from(target) });

/** A directory service that records every putMany call. */
class RecordingDirectoryService extends MemoryDirectoryService {
  calls: Directory[][] = [];
  override async putMany(directories: AsyncIterable<Directory> | Iterable<Directory>) {
    const list: Directory[] = [];
    for await (const directory of directories) list.push(directory);
    this.calls.push(list);
    return super.putMany(list);
  }
}

async function ingest(entries: IngestionEntry[], directoryService = new RecordingDirectoryService()) {
  return ingestEntries(entries, { directoryService, blobService: new MemoryBlobService() });
}

async function rejectsWith(entries: IngestionEntry[], code: string, pattern: RegExp) {
  const directoryService = new RecordingDirectoryService();
  await assert.rejects(ingest(entries, directoryService), (error: unknown) => {
    assert.ok(isCastoreError(error), String(error));
    assert.equal(error.code, code);
    assert.match(error.message, pattern);
    return true;
  });
  assert.deepEqual(directoryService.calls, [], 'no directory may be stored');
}

describe('ingestEntries', () => {
  it('ingestEntries returns a single file root', async () => {
    assert.deepEqual(await ingest([file('foo', DUMMY_DIGEST, 42, true)]), fileNode(DUMMY_DIGEST, 42, true));
  });

  it('ingestEntries returns a single symlink root', async () => {
    assert.ok(nodesEqual(await ingest([link('foo', 'blub')]), symlinkNode('blub')));
  });

  it('ingestEntries returns an empty directory root', async () => {
    assert.deepEqual(await ingest([dir('foo')]), directoryNode(DIRECTORY_A_DIGEST, 0));
  });

  it('ingestEntries builds DIRECTORY_WITH_KEEP', async () => {
    const node = await ingest([file('foo/.keep'), dir('foo')]);
    assert.deepEqual(node, directoryNode(DIRECTORY_WITH_KEEP_DIGEST, DIRECTORY_WITH_KEEP.size));
  });

  it('ingestEntries builds DIRECTORY_COMPLICATED and stores the closure leaves first in one putMany', async () => {
    const directoryService = new RecordingDirectoryService();
    const node = await ingest(
      [file('blub/.keep'), file('blub/keep/.keep'), dir('blub/keep'), link('blub/aa', '/nix/store/somewhereelse'), dir('blub')],
      directoryService,
    );
    assert.deepEqual(node, directoryNode(DIRECTORY_COMPLICATED_DIGEST, 4));
    assert.equal(DIRECTORY_COMPLICATED.size, 4);
    assert.equal(directoryService.calls.length, 1);
    assert.deepEqual(
      directoryService.calls[0]?.map((d) => d.digest.toHex()),
      [DIRECTORY_WITH_KEEP_DIGEST.toHex(), DIRECTORY_COMPLICATED_DIGEST.toHex()],
    );
    assert.ok(await directoryService.get(DIRECTORY_COMPLICATED_DIGEST));
  });

  it('ingestEntries puts file entries given by contents', async () => {
    const blobService = new MemoryBlobService();
    const node = await ingestEntries(
      [{ type: 'file', path: path('r/hello'), contents: HELLOWORLD_BLOB, size: 12, executable: true }, dir('r')],
      { blobService, directoryService: new MemoryDirectoryService() },
    );
    assert.equal(node.type, 'directory');
    assert.equal(await blobService.has(HELLOWORLD_BLOB_DIGEST), true);
  });

  it('ingestEntries rejects contents whose length differs from the declared size', async () => {
    await rejectsWith(
      [{ type: 'file', path: path('r'), contents: HELLOWORLD_BLOB, size: 3, executable: false }],
      'INVALID_NODE',
      /"r": expected 3 bytes, read 12/,
    );
  });

  it('ingestEntries rejects an empty stream', async () => {
    await rejectsWith([], 'INVALID_DIRECTORY', /ended before the root/);
  });

  it('ingestEntries rejects a stream that ends before the root', async () => {
    await rejectsWith([file('blub/.keep')], 'INVALID_DIRECTORY', /ended before the root/);
  });

  it('ingestEntries rejects a parent before its child', async () => {
    await rejectsWith([dir('blub'), file('blub/.keep')], 'INVALID_DIRECTORY', /after the root/);
    await rejectsWith([dir('r/a'), file('r/a/x'), dir('r')], 'INVALID_DIRECTORY', /"r\/a\/x" comes after its parent/);
  });

  it('ingestEntries rejects an empty root name and invalid components', async () => {
    await rejectsWith([file('')], 'INVALID_NAME', /empty/);
    await rejectsWith([file('r/../x'), dir('r')], 'INVALID_NAME', /".."/);
    await rejectsWith([{ type: 'directory', path: [] }], 'INVALID_DIRECTORY', /empty path/);
  });

  it('ingestEntries rejects duplicate names naming the directory', async () => {
    await rejectsWith([file('r/a'), link('r/a', 'x'), dir('r')], 'INVALID_DIRECTORY', /"r".*"a" is a duplicate name/);
    await rejectsWith([dir('r/a'), dir('r/a'), dir('r')], 'INVALID_DIRECTORY', /appears twice/);
  });

  it('ingestEntries rejects entries outside the root or without a directory entry', async () => {
    await rejectsWith([file('other/x'), dir('r')], 'INVALID_DIRECTORY', /inside "other" have no directory entry/);
    await rejectsWith([file('r/sub/x'), dir('r')], 'INVALID_DIRECTORY', /inside "r\/sub"/);
  });

  it('ingestEntries rejects an invalid symlink target naming the path', async () => {
    await rejectsWith([link('r/l', ''), dir('r')], 'INVALID_NODE', /"r\/l": invalid symlink target/);
  });

  it('ingestEntries rejects with the abort reason', async () => {
    const controller = new AbortController();
    const reason = new Error('stop');
    async function* entries(): AsyncGenerator<IngestionEntry> {
      yield file('r/a');
      controller.abort(reason);
      yield dir('r');
    }
    await assert.rejects(
      ingestEntries(entries(), { directoryService: new MemoryDirectoryService(), signal: controller.signal }),
      (e) => e === reason,
    );
  });
});
