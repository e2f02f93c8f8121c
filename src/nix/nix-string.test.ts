import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isUtf8NixString, nixStringFromBytes, nixStringToBytes, nixStringToDisplay } from './nix-string.js';

describe('byte-preserving Nix strings', () => {
  it('decodes ASCII and UTF-8 as text', () => {
    assert.equal(nixStringFromBytes(Buffer.from('hello')), 'hello');
    assert.equal(nixStringFromBytes(Buffer.from('räksmörgås 🌮 \ufeff')), 'räksmörgås 🌮 \ufeff');
    assert.ok(isUtf8NixString('räksmörgås 🌮'));
  });

  it('escapes invalid bytes and restores them exactly (the cp1252 fixture value)', () => {
    const bytes = Uint8Array.of(0xc5, 0xc4, 0xd6);
    const text = nixStringFromBytes(bytes);
    assert.equal(text, '\udcc5\udcc4\udcd6');
    assert.deepEqual(nixStringToBytes(text), bytes);
    assert.equal(nixStringToDisplay(text), '\ufffd\ufffd\ufffd');
    assert.equal(isUtf8NixString(text), false);
  });

  it('round-trips every byte sequence: all pairs, edge sequences and random bytes', () => {
    const cases: number[][] = [
      [0xed, 0xa0, 0x80], // an encoded surrogate is invalid UTF-8
      [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
      [0xc0, 0x80], // overlong NUL
      [0xe2, 0x82], // truncated sequence
      [0xf0, 0x9f, 0x8c, 0xae, 0xff, 0x41],
      [0xef, 0xbb, 0xbf, 0x41], // BOM kept
    ];
    for (let a = 0; a < 256; a++) for (let b = 0x70; b < 0xc8; b++) cases.push([a, b]);
    let seed = 42;
    for (let n = 0; n < 300; n++) {
      const length = n % 40;
      cases.push(Array.from({ length }, () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24));
    }
    for (const c of cases) {
      const bytes = Uint8Array.from(c);
      assert.deepEqual(nixStringToBytes(nixStringFromBytes(bytes)), bytes, Buffer.from(bytes).toString('hex'));
    }
  });

  it('keeps surrogate pairs whose low half lies in the escape range', () => {
    const text = '\ud83c\udc80'; // U+1F080
    assert.ok(isUtf8NixString(text));
    assert.equal(nixStringToDisplay(text), text);
    assert.deepEqual(nixStringToBytes(text), Uint8Array.from(Buffer.from(text)));
  });

  it('rejects lone surrogates that are no escape', () => {
    assert.throws(() => nixStringToBytes('a\ud800b'), TypeError);
    assert.throws(() => nixStringToBytes('\udc10'), TypeError);
  });
});
