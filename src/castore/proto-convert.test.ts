import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromHex } from '../common/encoding.js';
import { isCastoreError } from './errors.js';
import { fileNode } from './node.js';
import { decodeDirectory, entryFromJson, entryToJson } from './proto-convert.js';
import { DIRECTORY_COMPLICATED, DIRECTORY_COMPLICATED_DIGEST, HELLOWORLD_BLOB_DIGEST } from './testing/fixtures.js';

const enc = (s: string) => new TextEncoder().encode(s);
/** Hand-encodes a Directory message with the given (field, entry-body) pairs. */
function message(parts: [number, Uint8Array][]): Uint8Array {
  const out: number[] = [];
  for (const [field, body] of parts) out.push((field << 3) | 2, body.length, ...body);
  return Uint8Array.from(out);
}
function named(name: string, digestLength = 32): Uint8Array {
  const n = enc(name);
  return Uint8Array.from([0x0a, n.length, ...n, 0x12, digestLength, ...new Uint8Array(digestLength)]);
}
function symlink(name: string, target: string): Uint8Array {
  const n = enc(name);
  const t = enc(target);
  return Uint8Array.from([0x0a, n.length, ...n, 0x12, t.length, ...t]);
}

describe('decodeDirectory', () => {
  it('round-trips the canonical encoding', () => {
    assert.equal(decodeDirectory(DIRECTORY_COMPLICATED.encode()).digest.toHex(), DIRECTORY_COMPLICATED_DIGEST.toHex());
  });
  it('drops unknown fields before hashing', () => {
    const withUnknown = Uint8Array.from([...DIRECTORY_COMPLICATED.encode(), 0x22, 0x01, 0x00]);
    assert.equal(decodeDirectory(withUnknown).digest.toHex(), DIRECTORY_COMPLICATED_DIGEST.toHex());
  });
  it('rejects unsorted entries naming the entry', () => {
    assert.throws(
      () =>
        decodeDirectory(
          message([
            [2, named('b')],
            [2, named('a')],
          ]),
        ),
      (e) => isCastoreError(e, 'INVALID_DIRECTORY') && /"a" is not sorted/.test((e as Error).message),
    );
  });
  it('rejects duplicates within and across lists', () => {
    assert.throws(
      () =>
        decodeDirectory(
          message([
            [2, named('a')],
            [2, named('a')],
          ]),
        ),
      (e) => isCastoreError(e, 'INVALID_DIRECTORY'),
    );
    assert.throws(
      () =>
        decodeDirectory(
          message([
            [1, named('a')],
            [3, symlink('a', 'x')],
          ]),
        ),
      (e) => isCastoreError(e, 'INVALID_DIRECTORY'),
    );
  });
  it('accepts lists that are sorted only within themselves', () => {
    assert.equal(
      decodeDirectory(
        message([
          [1, named('b')],
          [1, named('c')],
          [3, symlink('a', 'x')],
        ]),
      ).entries.length,
      3,
    );
  });
  it('rejects a wrong digest length naming the length', () => {
    assert.throws(
      () => decodeDirectory(message([[2, named('a', 2)]])),
      (e) => isCastoreError(e, 'INVALID_DIGEST') && /length 2/.test((e as Error).message),
    );
  });
  it('rejects invalid names and symlink targets', () => {
    assert.throws(
      () => decodeDirectory(message([[2, named('..')]])),
      (e) => isCastoreError(e, 'INVALID_NAME'),
    );
    assert.throws(
      () => decodeDirectory(message([[3, Uint8Array.from([0x0a, 1, 0x61])]])),
      (e) => isCastoreError(e, 'INVALID_NODE'),
    );
  });
  it('rejects malformed bytes', () => {
    assert.throws(
      () => decodeDirectory(fromHex('0aff')),
      (e) => isCastoreError(e, 'INVALID_DIRECTORY'),
    );
  });
});

describe('Entry JSON', () => {
  it('round-trips a file entry in proto3 JSON', () => {
    const json = entryToJson(enc('hello'), fileNode(HELLOWORLD_BLOB_DIGEST, 12, true));
    assert.deepEqual(JSON.parse(json), {
      file: { name: 'aGVsbG8=', digest: 'XKeBWty0hOmhNsEe/mnB1TAXbVSbXRjQOOtSgLSzRww=', size: '12', executable: true },
    });
    const back = entryFromJson(json);
    assert.equal(back.node.type, 'file');
  });
  it('requires an empty name for anonymous entries', () => {
    const json = entryToJson(enc('hello'), fileNode(HELLOWORLD_BLOB_DIGEST, 12));
    assert.throws(
      () => entryFromJson(json, { anonymous: true }),
      (e) => isCastoreError(e, 'INVALID_NAME'),
    );
  });
  it('rejects an entry with nothing set', () => {
    assert.throws(
      () => entryFromJson('{}'),
      (e) => isCastoreError(e, 'INVALID_NODE'),
    );
  });
});
