import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromHex, toHex } from '../common/encoding.js';
import { isNixFormatError } from './errors.js';
import { decodeNixbase32, encodeNixbase32, isNixbase32, nixbase32DecodedLength, nixbase32EncodedLength } from './nixbase32.js';

// Vectors from snix nix-compat nixbase32.rs (reference §6.1).
const VECTORS: [string, string][] = [
  ['', ''],
  ['0z', '1f'],
  ['00bgd045z0d4icpbc2yyz4gx48ak44la', '8a12321522fd91efbd60ebb2481af88580f61600'],
  ['0c5b8vw40dy178xlpddw65q9gf1h2186jcc3p4swinwggbllv8mk', 'b3a24de97a8fdbc835b9833169501030b8977031bcb54b3b3ac13740f846ab30'],
];

describe('nixbase32', () => {
  for (const [encoded, hex] of VECTORS) {
    it(`encodes and decodes ${JSON.stringify(encoded)}`, () => {
      assert.equal(encodeNixbase32(fromHex(hex)), encoded);
      assert.equal(toHex(decodeNixbase32(encoded)), hex);
    });
  }

  it('computes encoded and decoded lengths', () => {
    assert.equal(nixbase32EncodedLength(0), 0);
    assert.equal(nixbase32EncodedLength(20), 32);
    assert.equal(nixbase32EncodedLength(32), 52);
    assert.deepEqual([0, 1, 2, 3, 4, 5, 32].map(nixbase32DecodedLength), [0, 0, 1, 1, 2, 3, 20]);
  });

  for (const bad of ['zz', 'c0', '0', '0zz', '0e', '0u', '0Z', '0\u00e9']) {
    it(`rejects ${JSON.stringify(bad)} with INVALID_NIXBASE32`, () => {
      assert.throws(
        () => decodeNixbase32(bad),
        (e) => isNixFormatError(e, 'INVALID_NIXBASE32'),
      );
      assert.equal(isNixbase32(bad), false);
    });
  }

  it('names the offset of an invalid character', () => {
    assert.throws(
      () => decodeNixbase32('00bgd045z0d4icpbc2yyz4gx48ak44le'),
      (e) => isNixFormatError(e, 'INVALID_NIXBASE32') && e.details.offset === 31 && /offset 31/.test(e.message),
    );
  });

  it('round-trips every length up to 70 bytes', () => {
    for (let n = 0; n <= 70; n++) {
      const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 167 + n * 31) & 0xff);
      const text = encodeNixbase32(bytes);
      assert.equal(text.length, nixbase32EncodedLength(n));
      assert.deepEqual(decodeNixbase32(text), bytes);
    }
  });
});
