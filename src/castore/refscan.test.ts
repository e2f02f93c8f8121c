import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { INDEXOF_MAX_NEEDLES, ReferencePattern, ReferenceScanner } from './refscan.js';

// The nixpkgs.hello derivation from Snix's refscan tests (reference §3.4).
const HELLO_DRV = Buffer.from(
  'Derive([("out","/nix/store/33l4p0pn0mybmqzaxfkpppyh7vx1c74p-hello-2.12.1","","")],[("/nix/store/6z1jfnqqgyqr221zgbpm30v91yfj3r45-bash-5.1-p16.drv",["out"]),("/nix/store/ap9g09fxbicj836zm88d56dn3ff4clxl-stdenv-linux.drv",["out"]),("/nix/store/pf80kikyxr63wrw56k00i1kw6ba76qik-hello-2.12.1.tar.gz.drv",["out"])],["/nix/store/9krlzvny65gdc8s7kpb6lkx8cd02c25b-default-builder.sh"],"x86_64-linux","/nix/store/4xw8n979xpivdc46a9ndcvyhwgif00hz-bash-5.1-p16/bin/bash",["-e","/nix/store/9krlzvny65gdc8s7kpb6lkx8cd02c25b-default-builder.sh"],[("buildInputs",""),("builder","/nix/store/4xw8n979xpivdc46a9ndcvyhwgif00hz-bash-5.1-p16/bin/bash"),("cmakeFlags",""),("configureFlags",""),("depsBuildBuild",""),("depsBuildBuildPropagated",""),("depsBuildTarget",""),("depsBuildTargetPropagated",""),("depsHostHost",""),("depsHostHostPropagated",""),("depsTargetTarget",""),("depsTargetTargetPropagated",""),("doCheck","1"),("doInstallCheck",""),("mesonFlags",""),("name","hello-2.12.1"),("nativeBuildInputs",""),("out","/nix/store/33l4p0pn0mybmqzaxfkpppyh7vx1c74p-hello-2.12.1"),("outputs","out"),("patches",""),("pname","hello"),("propagatedBuildInputs",""),("propagatedNativeBuildInputs",""),("src","/nix/store/pa10z4ngm0g83kx9mssrqzz30s84vq7k-hello-2.12.1.tar.gz"),("stdenv","/nix/store/cp65c8nk29qq5cl1wyy5qyw103cwmax7-stdenv-linux"),("strictDeps",""),("system","x86_64-linux"),("version","2.12.1")])',
);

const bytes = (text: string) => Buffer.from(text);

const PATH_NEEDLES = [
  '/nix/store/33l4p0pn0mybmqzaxfkpppyh7vx1c74p-hello-2.12.1',
  '/nix/store/pf80kikyxr63wrw56k00i1kw6ba76qik-hello-2.12.1.tar.gz.drv',
  '/nix/store/cp65c8nk29qq5cl1wyy5qyw103cwmax7-stdenv-linux',
  '/nix/store/fn7zvafq26f0c8b17brs7s95s10ibfzs-emacs-28.2.drv',
].map(bytes);
const HASH_NEEDLES = [
  '33l4p0pn0mybmqzaxfkpppyh7vx1c74p',
  'pf80kikyxr63wrw56k00i1kw6ba76qik',
  'cp65c8nk29qq5cl1wyy5qyw103cwmax7',
  'fn7zvafq26f0c8b17brs7s95s10ibfzs',
].map(bytes);

function* split(data: Uint8Array, size: number): Generator<Uint8Array> {
  for (let offset = 0; offset < data.byteLength; offset += size) yield data.subarray(offset, offset + size);
}

/** Deterministic pseudo-random numbers (xorshift32). */
function rng(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 2 ** 32;
  };
}

describe('ReferenceScanner', () => {
  it('ReferenceScanner finds the single bash path in HELLO_DRV', () => {
    const scanner = new ReferenceScanner([bytes('/nix/store/4xw8n979xpivdc46a9ndcvyhwgif00hz-bash-5.1-p16')]);
    scanner.scan(HELLO_DRV);
    assert.deepEqual(scanner.matches(), [true]);
  });

  it('ReferenceScanner finds the three store paths of HELLO_DRV and not emacs', () => {
    const scanner = new ReferenceScanner(PATH_NEEDLES);
    scanner.scan(HELLO_DRV);
    assert.deepEqual(scanner.matches(), [true, true, true, false]);
    assert.deepEqual(scanner.foundNeedles(), PATH_NEEDLES.slice(0, 3));
  });

  for (const chunkSize of [1, 2, 31, 8096]) {
    it(`ReferenceScanner streaming in ${chunkSize}-byte chunks finds the hash needles and passes bytes through`, async () => {
      const scanner = new ReferenceScanner(HASH_NEEDLES);
      const out: Uint8Array[] = [];
      for await (const chunk of scanner.scanStream(split(HELLO_DRV, chunkSize))) out.push(Uint8Array.from(chunk));
      assert.deepEqual(scanner.matches(), [true, true, true, false]);
      assert.deepEqual(Buffer.concat(out), HELLO_DRV);
    });
  }

  it('ReferenceScanner without needles matches nothing and passes bytes through', async () => {
    const scanner = new ReferenceScanner([]);
    const out: Uint8Array[] = [];
    for await (const chunk of scanner.scanStream(split(HELLO_DRV, 100))) out.push(chunk);
    assert.deepEqual(scanner.matches(), []);
    assert.equal(scanner.complete, true);
    assert.deepEqual(Buffer.concat(out), HELLO_DRV);
  });

  it('ReferenceScanner reports overlapping occurrences of different needles', () => {
    // Non-overlapping matching (Snix) would report only one of each pair.
    const needles = ['abcab', 'cabxy', 'bcabx', 'xyz1'].map(bytes);
    const scanner = new ReferenceScanner(needles);
    scanner.scan(bytes('--abcabxyz1--'));
    assert.deepEqual(scanner.matches(), [true, true, true, true]);
  });

  it('ReferenceScanner scans haystacks shorter than the longest needle', () => {
    const scanner = new ReferenceScanner([bytes('a-much-longer-needle-than-the-haystack'), bytes('tgt')]);
    scanner.scan(bytes('/tgt'));
    assert.deepEqual(scanner.matches(), [false, true]);
  });

  it('ReferenceScanner finds a needle split across many chunks of a stream', () => {
    const needle = bytes('/nix/store/4xw8n979xpivdc46a9ndcvyhwgif00hz-bash-5.1-p16');
    const scanner = new ReferenceScanner([needle, bytes('other-needle-never-present')]);
    const stream = scanner.createStream();
    stream.update(bytes('xxxxxxxx/nix/st'));
    stream.update(bytes('ore/4xw8n979'));
    stream.update(new Uint8Array(0));
    stream.update(bytes('xpivdc46a9ndcvyhwgif00hz-bash-5.1-p'));
    stream.update(bytes('16yyyy'));
    assert.deepEqual(scanner.matches(), [true, false]);
  });

  it('ReferenceScanner keeps its own copy of a chunk’s end: the caller may refill its buffer (a Buffer too)', () => {
    const needle = bytes('/nix/store/4xw8n979xpivdc46a9ndcvyhwgif00hz-bash-5.1-p16');
    const scanner = new ReferenceScanner([needle]);
    const stream = scanner.createStream();
    const buffer = Buffer.alloc(64, 'x');
    buffer.write('xxxx/nix/store/4xw8n979', 64 - 23);
    stream.update(buffer);
    buffer.fill('z'); // reused for the next read
    buffer.write('xpivdc46a9ndcvyhwgif00hz-bash-5.1-p16', 0);
    stream.update(buffer);
    assert.deepEqual(scanner.matches(), [true]);
  });
  it('ReferenceScanner keeps streams apart: a needle split across two files is not found', () => {
    const scanner = new ReferenceScanner([bytes('split-needle'), bytes('another')]);
    scanner.createStream().update(bytes('aaa split-'));
    scanner.createStream().update(bytes('needle bbb'));
    assert.deepEqual(scanner.matches(), [false, false]);
  });

  it('ReferencePattern rejects an empty needle', () => {
    assert.throws(() => new ReferencePattern([bytes('ok'), new Uint8Array(0)]), RangeError);
  });

  // Property check against a naive oracle for both table layouts (few
  // needles: direct 2-byte blocks; 400 long ones: hashed 4-byte blocks) and the
  // indexOf path, with random chunking.
  for (const needleCount of [1, INDEXOF_MAX_NEEDLES + 1, 12, 400]) {
    it(`ReferenceScanner agrees with a naive search for ${needleCount} needles and random chunking`, () => {
      const random = rng(needleCount * 7919);
      const alphabet = bytes('0123456789abcdfghijklmnpqrsvwxyz/-.');
      const text = (length: number) => Uint8Array.from({ length }, () => alphabet[Math.floor(random() * alphabet.length)] as number);
      const needles = Array.from({ length: needleCount }, (_, i) => text(i % 5 === 0 && needleCount < 100 ? 4 + (i % 3) : 20 + (i % 40)));
      for (let round = 0; round < 20; round++) {
        const haystack = Buffer.from(text(3000));
        // plant some needles, some of them overlapping each other
        for (let p = 0; p < 10; p++) {
          const needle = needles[Math.floor(random() * needles.length)] as Uint8Array;
          haystack.set(needle, Math.floor(random() * (haystack.length - needle.length)));
        }
        const expected = needles.map((needle) => haystack.indexOf(needle) !== -1);
        const scanner = new ReferenceScanner(needles);
        const stream = scanner.createStream();
        for (let offset = 0; offset < haystack.length; ) {
          const size = random() < 0.3 ? 1 + Math.floor(random() * 4) : Math.floor(random() * 200);
          stream.update(haystack.subarray(offset, offset + size));
          offset += size;
        }
        assert.deepEqual(scanner.matches(), expected, `round ${round}`);
      }
    });
  }
});
