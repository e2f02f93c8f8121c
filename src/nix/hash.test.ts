import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toHex } from '../common/encoding.js';
import { contentAddress, formatContentAddress, formatMethodAlgo, parseContentAddress, parseMethodAlgo } from './content-address.js';
import { isNixFormatError } from './errors.js';
import {
  createNixHasher,
  formatNixHash,
  type HashAlgorithm,
  hashBytes,
  hashDigestLength,
  nixHash,
  nixHashEquals,
  parseHashAlgorithm,
  parseNixHash,
} from './hash.js';

// The hash of "hello" in every form, as printed by Nix 2.8 (nix-hash --flat, nix hash file).
const HELLO: [HashAlgorithm, string, string, string][] = [
  ['md5', '5d41402abc4b2a76b9719d911017c592', '4jqlbi14cxf6wpcajbphm40hax', 'XUFAKrxLKna5cZ2REBfFkg=='],
  ['sha1', 'aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d', '9m1skbnr5i43n3yypvda5s65vhfwdx5a', 'qvTGHdzF6KLavt4PO0gs2a6pQ00='],
  [
    'sha256',
    '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824',
    '094qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic',
    'LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=',
  ],
  [
    'sha512',
    '9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca72323c3d99ba5c11d7c7acc6e14b8c5da0c4663475c2e5c3adef46f73bcdec043',
    '11w1pmwfdpz9pisbhp5qiv38q6dmidq2ipcqykw3p0sb6yrqcij79rwcwcjbxyzwbdal349qbxrncbk7pmd6snljrfpiwv2pljd4wcv',
    'm3HSJL1i83hdltRq0+o9czGb+8KJDKra4t/3JRlnPKcjI8PZm6XBHXx6zG4UuMXaDEZjR1wuXDre9G9zvN7AQw==',
  ],
];

describe('NixHash', () => {
  for (const [algo, hex, b32, b64] of HELLO) {
    it(`${algo}: hashes, formats and parses every form`, () => {
      const hash = hashBytes(algo, 'hello');
      assert.equal(hash.digest.byteLength, hashDigestLength(algo));
      assert.equal(formatNixHash(hash, 'base16'), `${algo}:${hex}`);
      assert.equal(formatNixHash(hash, 'base16', { prefix: false }), hex);
      assert.equal(formatNixHash(hash, 'nixbase32'), `${algo}:${b32}`);
      assert.equal(formatNixHash(hash, 'nixbase32', { prefix: false }), b32);
      assert.equal(formatNixHash(hash, 'base64'), `${algo}:${b64}`);
      assert.equal(formatNixHash(hash, 'sri'), `${algo}-${b64}`);
      const forms = [
        `${algo}:${hex}`,
        `${algo}:${hex.toUpperCase()}`,
        `${algo}:${b32}`,
        `${algo}:${b64}`,
        `${algo}:${b64.replace(/=+$/, '')}`,
        `${algo}-${b64}`,
        `${algo}-${b64.replace(/=+$/, '')}`,
      ];
      for (const form of forms) assert.ok(nixHashEquals(parseNixHash(form), hash), form);
      for (const bare of [hex, b32, b64]) {
        assert.ok(nixHashEquals(parseNixHash(bare, algo), hash), bare);
        assert.ok(nixHashEquals(parseNixHash(`${algo}:${bare}`, algo), hash), bare);
      }
    });
  }

  it('hashes incrementally', () => {
    const hasher = createNixHasher('sha256');
    hasher.update(new TextEncoder().encode('hel'));
    hasher.update(new TextEncoder().encode('lo'));
    assert.equal(toHex(hasher.digest().digest), HELLO[2][1]);
  });

  const bad: [string, HashAlgorithm | undefined][] = [
    ['sha256:2cf24dba', undefined], // wrong length
    ['2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824', undefined], // no algorithm
    ['sha1024:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824', undefined], // unknown algorithm
    ['sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b98zz', undefined], // bad hex
    ['sha256:094qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwie', undefined], // bad nixbase32
    ['sha256-2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824', undefined], // SRI must be base64
    ['sha256:LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCR=', undefined], // non-zero trailing bits
    ['sha1:aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d', 'sha256'], // algorithm disagrees
    ['IAMNOTVALIDNIXBASE32', 'sha256'],
  ];
  for (const [text, algo] of bad) {
    it(`rejects ${JSON.stringify(text)} with INVALID_HASH`, () => {
      assert.throws(
        () => parseNixHash(text, algo),
        (e) => isNixFormatError(e, 'INVALID_HASH'),
      );
    });
  }

  it('checks algorithms and digest lengths', () => {
    assert.equal(parseHashAlgorithm('sha512'), 'sha512');
    assert.throws(
      () => parseHashAlgorithm('sha1024'),
      (e) => isNixFormatError(e, 'INVALID_HASH'),
    );
    assert.throws(
      () => parseHashAlgorithm('__proto__'),
      (e) => isNixFormatError(e, 'INVALID_HASH'),
    );
    assert.throws(
      () => nixHash('sha1', new Uint8Array(32)),
      (e) => isNixFormatError(e, 'INVALID_HASH'),
    );
  });
});

describe('content addresses', () => {
  it('parses and formats method+algorithm', () => {
    assert.deepEqual(parseMethodAlgo('r:sha256'), { method: 'nar', algo: 'sha256' });
    assert.deepEqual(parseMethodAlgo('sha1'), { method: 'flat', algo: 'sha1' });
    assert.deepEqual(parseMethodAlgo('text:sha256'), { method: 'text', algo: 'sha256' });
    assert.equal(formatMethodAlgo('nar', 'sha1'), 'r:sha1');
    assert.equal(formatMethodAlgo('text', 'sha256'), 'text:sha256');
    for (const bad of ['r:sha1024', 'text:sha1', 'x:sha256', '']) {
      assert.throws(
        () => parseMethodAlgo(bad),
        (e) => isNixFormatError(e, 'INVALID_HASH'),
        bad,
      );
    }
  });

  it('round-trips narinfo CA strings', () => {
    const hash = hashBytes('sha256', 'hello');
    for (const method of ['flat', 'nar', 'text'] as const) {
      const ca = contentAddress(method, hash);
      const text = formatContentAddress(ca);
      assert.equal(text, `${method === 'text' ? 'text' : method === 'nar' ? 'fixed:r' : 'fixed'}:sha256:${HELLO[2][2]}`);
      const parsed = parseContentAddress(text);
      assert.equal(parsed.method, method);
      assert.ok(nixHashEquals(parsed.hash, hash));
    }
    assert.throws(
      () => parseContentAddress('text:sha1:9m1skbnr5i43n3yypvda5s65vhfwdx5a'),
      (e) => isNixFormatError(e, 'INVALID_HASH'),
    );
    assert.throws(
      () => parseContentAddress('fixed:9m1skbnr5i43n3yypvda5s65vhfwdx5a'),
      (e) => isNixFormatError(e, 'INVALID_HASH'),
    );
  });
});
