import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromHex, toHex } from '../common/encoding.js';
import { contentAddress } from './content-address.js';
import { isNixFormatError } from './errors.js';
import { hashBytes, nixHash, parseNixHash } from './hash.js';
import {
  compareStorePaths,
  compressHash,
  DEFAULT_STORE_DIR,
  makeFixedOutputStorePath,
  makeOutputStorePath,
  makeTextStorePath,
  outputPathName,
  parseAbsoluteStorePath,
  parseStorePathBaseName,
  StorePath,
  splitAbsoluteStorePath,
  validateStorePathName,
} from './store-path.js';

const invalidStorePath = (e: unknown) => isNixFormatError(e, 'INVALID_STORE_PATH');

describe('store paths: parsing', () => {
  it('parses the happy path (snix store_path tests)', () => {
    const path = parseStorePathBaseName('00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60_p20170221182432');
    assert.equal(toHex(path.digest), '8a12321522fd91efbd60ebb2481af88580f61600');
    assert.equal(path.name, 'net-tools-1.60_p20170221182432');
    assert.equal(path.hashPart, '00bgd045z0d4icpbc2yyz4gx48ak44la');
    assert.equal(path.toAbsolute(), '/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60_p20170221182432');
    assert.equal(String(path), path.baseName);
    assert.equal(JSON.stringify(path), JSON.stringify(path.baseName));
  });

  it('parses the dummy path', () => {
    const path = parseStorePathBaseName('00000000000000000000000000000000-dummy');
    assert.deepEqual(path.digest, new Uint8Array(20));
    assert.ok(path.equals(StorePath.fromParts(new Uint8Array(20), 'dummy')));
  });

  it('parses absolute paths in a given store directory, and splits sub-paths', () => {
    const abs = '/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox';
    assert.equal(parseAbsoluteStorePath(abs).name, 'busybox');
    assert.equal(
      StorePath.parseAbsolute('/gnu/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox', '/gnu/store').toAbsolute('/gnu/store'),
      '/gnu/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox',
    );
    const { storePath, subPath } = splitAbsoluteStorePath(`${abs}/bin/busybox`);
    assert.equal(storePath.baseName, '71fc7s32zl20dc955bhghy5dvalm7ndz-busybox');
    assert.equal(subPath, '/bin/busybox');
    assert.throws(() => parseAbsoluteStorePath(`${abs}/bin/busybox`), invalidStorePath);
    assert.throws(() => parseAbsoluteStorePath(abs, '/gnu/store'), invalidStorePath);
    assert.throws(() => parseAbsoluteStorePath(abs, '/nix/store/'), invalidStorePath);
    assert.throws(() => parseAbsoluteStorePath(abs, 'nix/store'), invalidStorePath);
  });

  const badBaseNames: [string, string][] = [
    ['00bgd045z0d4icpbc2yyz4gx48ak44la', 'too short, no name'],
    ['00bgd045z0d4icpbc2yyz4gx48ak44la-', 'empty name'],
    ['00bgd045z0d4icpbc2yyz4gx48ak44le-net-tools', 'e is not nixbase32'],
    ['00bgd045z0d4icpbc2yyz4gx48ak44LA-net-tools', 'upper case hash part'],
    ['00bgd045z0d4icpbc2yyz4gx48ak44l-foo-bar', 'hash part of 31 characters'],
    ['00bgd045z0d4icpbc2yyz4gx48ak44la_net-tools', 'no dash after the hash part'],
    ['00bgd045z0d4icpbc2yyz4gx48ak44la-net tools', 'space in the name'],
    ['00bgd045z0d4icpbc2yyz4gx48ak44la-net/tools', 'slash in the name'],
    ['00bgd045z0d4icpbc2yyz4gx48ak44la-caf\u00e9', 'non-ASCII name'],
    [`00bgd045z0d4icpbc2yyz4gx48ak44la-${'a'.repeat(212)}`, 'name longer than 211'],
  ];
  for (const [baseName, why] of badBaseNames) {
    it(`rejects a base name: ${why}`, () => {
      assert.throws(() => parseStorePathBaseName(baseName), invalidStorePath);
      assert.throws(() => parseAbsoluteStorePath(`/nix/store/${baseName}`), invalidStorePath);
    });
  }

  it('names the offset of a bad character in the message and details', () => {
    assert.throws(
      () => parseAbsoluteStorePath('/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44le-net-tools'),
      (e) => invalidStorePath(e) && e.details.offset === 42 && /offset 31/.test(e.message),
    );
  });

  it('accepts names at the limits', () => {
    assert.equal(validateStorePathName('a'.repeat(211)).length, 211);
    assert.equal(validateStorePathName('.keep+-_?=.A9'), '.keep+-_?=.A9');
    assert.throws(() => validateStorePathName(''), invalidStorePath);
  });
});

describe('store paths: ordering', () => {
  // snix store_path_ordering: strictly increasing.
  const ORDERED = [
    '0lk5dgi01r933abzfj9c9wlndg82yd3g-psutil-5.9.6.tar.gz.drv',
    '1xj43bva89f9qmwm37zl7r3d7m67i9ck-shorttoc-1.3-tex.drv',
    '2gb633czchi20jq1kqv70rx2yvvgins8-lifted-base-0.2.3.12.tar.gz.drv',
    '2vksym3r3zqhp15q3fpvw2mnvffv11b9-docbook-xml-4.5.zip.drv',
    '5q918awszjcz5720xvpc2czbg1sdqsf0-rust_renaming-0.1.0-lib',
    '7jw30i342sr2p1fmz5xcfnch65h4zbd9-dbus-1.14.10.tar.xz.drv',
    '96yqwqhnp3qya4rf4n0rcl0lwvrylp6k-eap8021x-222.40.1.tar.gz.drv',
    '9gjqg36a1v0axyprbya1hkaylmnffixg-virtualenv-20.24.5.tar.gz.drv',
    'a4i5mci2g9ada6ff7ks38g11dg6iqyb8-perl-5.32.1.drv',
    'a5g76ljava4h5pxlggz3aqdhs3a4fk6p-ToolchainInfo.plist.drv',
    'db46l7d6nswgz4ffp1mmd56vjf9g51v6-version.plist.drv',
    'g6f7w20sd7vwy0rc1r4bfsw4ciclrm4q-crates-io-num_cpus-1.12.0.drv',
    'iw82n1wwssb8g6772yddn8c3vafgv9np-bootstrap-stage1-sysctl-stdenv-darwin.drv',
    'lp78d1y5wxpcn32d5c4r7xgbjwiw0cgf-logo.svg.drv',
    'mf00ank13scv1f9l1zypqdpaawjhfr3s-python3.11-psutil-5.9.6.drv',
    'mpfml61ra7pz90124jx9r3av0kvkz2w1-perl5.36.0-Encode-Locale-1.05',
    'qhsvwx4h87skk7c4mx0xljgiy3z93i23-source.drv',
    'riv7d73adim8hq7i04pr8kd0jnj93nav-fdk-aac-2.0.2.tar.gz.drv',
    's64b9031wga7vmpvgk16xwxjr0z9ln65-human-signals-5.0.0.tgz-extracted',
    'w6svg3m2xdh6dhx0gl1nwa48g57d3hxh-thiserror-1.0.49',
  ].map((b) => parseAbsoluteStorePath(`/nix/store/${b}`));

  it('orders the snix list strictly increasing', () => {
    for (let i = 1; i < ORDERED.length; i++) {
      assert.ok(compareStorePaths(ORDERED[i - 1], ORDERED[i]) < 0, ORDERED[i].baseName);
      assert.ok(compareStorePaths(ORDERED[i], ORDERED[i - 1]) > 0);
    }
    const shuffled = [...ORDERED].reverse().sort(compareStorePaths);
    assert.deepEqual(
      shuffled.map((p) => p.baseName),
      ORDERED.map((p) => p.baseName),
    );
  });

  it('orders by reversed digest bytes', () => {
    for (let i = 1; i < ORDERED.length; i++) {
      const a = Buffer.from(ORDERED[i - 1].digest).reverse();
      const b = Buffer.from(ORDERED[i].digest).reverse();
      assert.ok(Buffer.compare(a, b) < 0);
    }
  });
});

describe('store paths: computation', () => {
  it('xor-folds digests', () => {
    const digest = Uint8Array.from({ length: 32 }, (_, i) => i);
    const folded = compressHash(digest);
    assert.equal(folded.length, 20);
    assert.equal(folded[0], 0 ^ 20);
    assert.equal(folded[11], 11 ^ 31);
    assert.equal(folded[12], 12);
  });

  it('makes text paths with and without references (snix vectors)', () => {
    const foo = makeTextStorePath('foo', 'bar');
    assert.equal(foo.toAbsolute(), '/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo');
    const baz = makeTextStorePath('baz', foo.toAbsolute(), [foo.toAbsolute()]);
    assert.equal(baz.toAbsolute(), '/nix/store/5xd714cbfnkz02h2vbsj4fm03x3f15nf-baz');
    assert.ok(makeTextStorePath('baz', foo.toAbsolute(), [foo, foo.toAbsolute()]).equals(baz));
  });

  it('makes fixed-output paths via output:out (non-sha256 NAR) and source (sha256 NAR)', () => {
    const sha1 = nixHash('sha1', fromHex('0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33'));
    assert.equal(
      makeFixedOutputStorePath('bar', contentAddress('nar', sha1)).toAbsolute(),
      '/nix/store/mp57d33657rf34lzvlbpfa1gjfv5gmpg-bar',
    );
    const sha256 = parseNixHash('1xqkzcb3909fp07qngljr4wcdnrh1gdam1m2n29i6hhrxlmkgkv1', 'sha256');
    const baz = makeFixedOutputStorePath('baz', contentAddress('nar', sha256), {
      references: ['/nix/store/dxwkwjzdaq7ka55pkk252gh32bgpmql4-foo'],
    });
    assert.equal(baz.toAbsolute(), '/nix/store/s89y431zzhmdn3k8r96rvakryddkpv2v-baz');
    const bar = nixHash('sha256', fromHex('08813cbee9903c62be4c5027726a418a300da4500b2d369d3af9286f4815ceba'));
    assert.equal(
      makeFixedOutputStorePath('bar', contentAddress('nar', bar)).toAbsolute(),
      '/nix/store/4q0pg5zpfmznxscq3avycvf9xdvx50n3-bar',
    );
  });

  it('makes text content-addressed paths like makeTextStorePath', () => {
    const ca = contentAddress('text', hashBytes('sha256', 'bar'));
    assert.equal(makeFixedOutputStorePath('foo', ca).toAbsolute(), '/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo');
    assert.throws(() => makeFixedOutputStorePath('foo', ca, { selfReference: true }), invalidStorePath);
  });

  it('refuses references on output:out paths', () => {
    const ca = contentAddress('flat', hashBytes('sha256', 'x'));
    assert.throws(
      () => makeFixedOutputStorePath('x', ca, { references: ['/nix/store/dxwkwjzdaq7ka55pkk252gh32bgpmql4-foo'] }),
      invalidStorePath,
    );
    assert.throws(() => makeFixedOutputStorePath('x', ca, { selfReference: true }), invalidStorePath);
  });

  it('honours the store directory', () => {
    const a = makeTextStorePath('foo', 'bar', [], '/gnu/store');
    assert.notEqual(a.hashPart, makeTextStorePath('foo', 'bar').hashPart);
    assert.equal(DEFAULT_STORE_DIR, '/nix/store');
  });

  it('names outputs', () => {
    assert.equal(outputPathName('hello', 'out'), 'hello');
    assert.equal(outputPathName('hello', 'dev'), 'hello-dev');
    const h = fromHex('0a5128a6e48a07f79892cb762a7c438fffc3b5c930945be08ae4cab266bfd4df');
    assert.equal(makeOutputStorePath('x', 'lib', h).name, 'x-lib');
  });
});
