import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fromHex, toHex } from '../common/encoding.js';
import { B3Digest } from './b3-digest.js';
import { Directory, type DirectoryEntry } from './directory.js';
import { isCastoreError } from './errors.js';
import { directoryNode, fileNode, symlinkNode } from './node.js';
import { parsePathComponent } from './path-component.js';
import { encodeDirectoryWithProtobufEs } from './proto-convert.js';

interface FixtureEntry {
  directory?: string;
  ref?: string;
  file?: string;
  blob?: string;
  size?: number;
  executable?: boolean;
  symlink?: string;
  target?: string;
}
interface Fixtures {
  blobs: { name: string; contents_hex?: string; contents_utf8?: string; blake3: string; text_form?: string }[];
  directories: { name: string; entries: FixtureEntry[]; size: number; blake3: string; encoding_hex?: string }[];
}

const fixtures = JSON.parse(readFileSync(new URL('../../test/fixtures/castore/fixtures.json', import.meta.url), 'utf8')) as Fixtures;

describe('castore fixtures', () => {
  const blobDigests = new Map<string, B3Digest>();
  for (const blob of fixtures.blobs) {
    it(`blob ${blob.name} hashes to its reference digest`, () => {
      let bytes: Uint8Array;
      if (blob.contents_hex !== undefined) bytes = fromHex(blob.contents_hex);
      else if (blob.contents_utf8 !== undefined) bytes = new TextEncoder().encode(blob.contents_utf8);
      else bytes = Uint8Array.from({ length: 255 * 4096 }, (_, i) => i % 255);
      const digest = B3Digest.of(bytes);
      assert.equal(digest.toHex(), blob.blake3);
      if (blob.text_form) {
        assert.equal(digest.toString(), blob.text_form);
        assert.equal(B3Digest.parse(blob.text_form).toHex(), blob.blake3);
      }
    });
    blobDigests.set(blob.name, B3Digest.fromHex(blob.blake3));
  }

  const directories = new Map<string, Directory>();
  for (const fixture of fixtures.directories) {
    it(`directory ${fixture.name} has the reference size, encoding and digest`, () => {
      const entries: DirectoryEntry[] = fixture.entries.map((e) => {
        if (e.directory !== undefined) {
          const child = directories.get(e.ref as string) as Directory;
          return { name: parsePathComponent(e.directory), node: directoryNode(child.digest, child.size) };
        }
        if (e.file !== undefined) {
          return {
            name: parsePathComponent(e.file),
            node: fileNode(blobDigests.get(e.blob as string) as B3Digest, e.size ?? 0, e.executable ?? false),
          };
        }
        return { name: parsePathComponent(e.symlink as string), node: symlinkNode(e.target as string) };
      });
      const directory = Directory.fromEntries(entries);
      directories.set(fixture.name, directory);
      assert.equal(directory.size, fixture.size);
      if (fixture.encoding_hex !== undefined) assert.equal(toHex(directory.encode()), fixture.encoding_hex);
      assert.equal(toHex(encodeDirectoryWithProtobufEs(directory)), toHex(directory.encode()));
      assert.equal(directory.digest.toHex(), fixture.blake3);
    });
  }
});

describe('Directory', () => {
  const digest = B3Digest.fromBytes(new Uint8Array(32));
  it('rejects a name used twice across lists', () => {
    assert.throws(
      () =>
        Directory.fromEntries([
          { name: parsePathComponent('a'), node: directoryNode(digest, 0) },
          { name: parsePathComponent('a'), node: symlinkNode('x') },
        ]),
      (e) => isCastoreError(e, 'INVALID_DIRECTORY') && (e as Error).message === '"a" is a duplicate name',
    );
  });
  it('sorts entries of every kind by name bytes and looks them up', () => {
    const dir = Directory.fromEntries(
      ['b', 'a', 'z', 'f', 'c', 'g', 't', 'o', 'e'].map((n, i) => ({
        name: parsePathComponent(n),
        node: i < 3 ? directoryNode(digest, 1) : i < 6 ? fileNode(digest, 1, true) : symlinkNode('a'),
      })),
    );
    assert.deepEqual(
      dir.entries.map((e) => Buffer.from(e.name).toString()),
      ['a', 'b', 'c', 'e', 'f', 'g', 'o', 't', 'z'],
    );
    assert.equal(dir.size, 9 + 3);
    assert.equal(dir.get('g')?.type, 'file');
    assert.equal(dir.get('nope'), undefined);
  });
  it('accepts non-UTF-8 names', () => {
    const dir = Directory.fromEntries([{ name: parsePathComponent(Uint8Array.of(0xff, 0xfe)), node: symlinkNode('x') }]);
    assert.equal(dir.entries.length, 1);
  });
});

describe('parsePathComponent', () => {
  for (const bad of ['', '.', '..', 'a/b', '/', 'foo\0', 'X'.repeat(256)]) {
    it(`rejects ${JSON.stringify(bad.slice(0, 12))}`, () => {
      assert.throws(
        () => parsePathComponent(bad),
        (e) => isCastoreError(e, 'INVALID_NAME'),
      );
    });
  }
  it('accepts 255 bytes', () => {
    assert.equal(parsePathComponent('X'.repeat(255)).byteLength, 255);
  });
});

describe('B3Digest', () => {
  it('rejects wrong lengths naming the length', () => {
    assert.throws(
      () => B3Digest.fromBytes(Uint8Array.of(0, 0x42)),
      (e) => isCastoreError(e, 'INVALID_DIGEST') && /length 2/.test((e as Error).message),
    );
  });
  it('rejects text without the blake3- prefix or with bad base64', () => {
    for (const bad of ['XKeBWty0hOmhNsEe/mnB1TAXbVSbXRjQOOtSgLSzRww=', 'blake3-!!!', 'blake3-AAAA']) {
      assert.throws(
        () => B3Digest.parse(bad),
        (e) => isCastoreError(e, 'INVALID_DIGEST'),
      );
    }
  });
});
