import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fromHex, toHex } from '../common/encoding.js';
import { parseDerivation, writeDerivation } from './aterm.js';
import { contentAddress } from './content-address.js';
import { type Derivation, derivationNameFromPath, validateDerivation } from './derivation.js';
import { derivationFromJson, derivationsFromShowDerivationJson, derivationToJson, showDerivationJson } from './derivation-json.js';
import { computeOutputPaths, DerivationHasher, derivationPath, hashDerivationModulo } from './derivation-paths.js';
import { isNixFormatError } from './errors.js';
import { nixHash } from './hash.js';
import { nixStringToBytes } from './nix-string.js';

const SHARED = new URL('../../../shared/', import.meta.url);
const SNIX = new URL('vectors/snix-fixtures/', SHARED);
const NIX = new URL('vectors/nix/', SHARED);

interface NixVectors {
  derivations: {
    name: string;
    drvPath: string;
    drvFile: string;
    outputs: Record<string, { path: string }>;
    showDerivation: unknown;
  }[];
}
const nixVectors = JSON.parse(readFileSync(new URL('vectors.json', NIX), 'utf8')) as NixVectors;

/** Every fixture .drv by its absolute path. */
const fixtureFiles = new Map<string, URL>();
for (const file of readdirSync(SNIX)) if (/^[0-9a-z]{32}-.*\.drv$/.test(file)) fixtureFiles.set(`/nix/store/${file}`, new URL(file, SNIX));
for (const file of readdirSync(new URL('drv/', NIX))) fixtureFiles.set(`/nix/store/${file}`, new URL(`drv/${file}`, NIX));

const readBytes = (url: URL) => new Uint8Array(readFileSync(url));
const load = (drvPath: string): Derivation => {
  const url = fixtureFiles.get(drvPath);
  if (!url) throw new Error(`no fixture for ${drvPath}`);
  return parseDerivation(readBytes(url));
};
const invalidDerivation = (e: unknown) => isNixFormatError(e, 'INVALID_DERIVATION');

describe('derivations: every fixture', () => {
  for (const [drvPath, url] of fixtureFiles) {
    const name = derivationNameFromPath(drvPath);
    it(`${drvPath.slice(11)} round-trips byte-identically and yields its path and output paths`, async () => {
      const bytes = readBytes(url);
      const drv = parseDerivation(bytes);
      assert.deepEqual(writeDerivation(drv), bytes);
      assert.equal(derivationPath(drv, name).toAbsolute(), drvPath);
      const recomputed = await new DerivationHasher(load).computeOutputPaths(drv, name);
      assert.deepEqual(recomputed, drv);
      assert.deepEqual(writeDerivation(recomputed), bytes);
    });
  }

  for (const file of readdirSync(SNIX).filter((f) => f.endsWith('.drv.json'))) {
    it(`${file} equals the JSON of its derivation`, () => {
      const drvPath = `/nix/store/${file.slice(0, -5)}`;
      const drv = load(drvPath);
      const expected = JSON.parse(readFileSync(new URL(file, SNIX), 'utf8')) as Record<string, unknown>;
      if (drvPath in expected) {
        // cp1252/latin1: nix show-derivation shape, non-UTF-8 bytes printed as U+FFFD.
        assert.deepEqual(showDerivationJson(drvPath, drv), expected);
        assert.deepEqual(JSON.parse(JSON.stringify(showDerivationJson(drvPath, drv))), expected);
        return;
      }
      assert.deepEqual(JSON.parse(JSON.stringify(derivationToJson(drv))), expected);
      const fromJson = derivationFromJson(expected);
      assert.deepEqual(fromJson, drv);
      assert.deepEqual(writeDerivation(fromJson), readBytes(fixtureFiles.get(drvPath) as URL));
    });
  }

  for (const vector of nixVectors.derivations) {
    it(`nix vector ${vector.name}: path, show-derivation JSON and output paths`, async () => {
      const drv = parseDerivation(readBytes(new URL(vector.drvFile, NIX)));
      assert.equal(derivationPath(drv, vector.name).toAbsolute(), vector.drvPath);
      assert.deepEqual(JSON.parse(JSON.stringify(derivationToJson(drv))), vector.showDerivation);
      assert.deepEqual(derivationFromJson(vector.showDerivation), drv);
      const parsed = derivationsFromShowDerivationJson({ [vector.drvPath]: vector.showDerivation });
      assert.deepEqual([...parsed.keys()], [vector.drvPath]);
      const computed = await new DerivationHasher(load).computeOutputPaths(drv, vector.name);
      for (const [output, { path }] of Object.entries(vector.outputs)) {
        assert.equal(computed.outputs.get(output)?.path, path);
        assert.equal(computed.env.get(output), path);
      }
    });
  }

  it('keeps non-UTF-8 env bytes (cp1252 fixture: C5 C4 D6)', () => {
    const drv = load('/nix/store/m1vfixn8iprlf0v9abmlrz7mjw1xj8kp-cp1252.drv');
    assert.deepEqual(nixStringToBytes(drv.env.get('chars') as string), Uint8Array.of(0xc5, 0xc4, 0xd6));
  });

  it('unescapes the five escapes (nested-json and unicode fixtures)', () => {
    const nested = load('/nix/store/292w8yzv5nn7nhdpxcs8b7vby2p27s09-nested-json.drv');
    assert.equal(nested.env.get('json'), '{"hello":"moto\\n"}');
    const unicode = load('/nix/store/52a9id8hx688hvlnz4d1n25ml1jdykz0-unicode.drv');
    assert.match(unicode.env.get('letters') as string, /^räksmörgås\nrødgrød med fløde\nLübeck\n肥猪\n/);
  });
});

describe('hashDerivationModulo', () => {
  const FULL: Record<string, string> = {
    '0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv': '724f3e3634fce4cbbbd3483287b8798588e80280660b9a63fd13a1bc90485b33',
    'ss2p4wmxijn652haqyd7dckxwl4c7hxx-bar.drv': 'c79aebd0ce3269393d4a1fde2cbd1d975d879b40f0bf40a48f550edc107fd5df',
    '292w8yzv5nn7nhdpxcs8b7vby2p27s09-nested-json.drv': 'f1e47d2ffc8eb1ebb28231d7d6d3bffb7ece1efcec79a15a59d51a3272dcf5ed',
    '4wvvbi4jwn0prsdxb7vs673qa5h9gr7x-foo.drv': '250a67c0fb68da9f9297421335b7c46243d25734d6e48f17564a6e9916819556',
    '52a9id8hx688hvlnz4d1n25ml1jdykz0-unicode.drv': 'e085d9429825dca8dde92758cb06e8b278a79632489f98d219b857e4574ea6f9',
    '9lj1lkjm2ag622mh4h9rpy6j607an8g2-structured-attrs.drv': 'e0650317f3cc4cc4f1efe6d2cfcc216af303c9b736d35bbbd311114b7a28cc5b',
    'ch49594n9avinrf8ip0aslidkc4lxkqv-foo.drv': 'af030d36d63d3d7f56a71adaba26b36f5fa1f9847da5eed953ed62e18192762f',
    'h32dahq0bx5rp1krcdx3a53asj21jvhk-has-multi-out.drv': '0a5128a6e48a07f79892cb762a7c438fffc3b5c930945be08ae4cab266bfd4df',
  };
  const BLANKED: Record<string, string> = {
    '292w8yzv5nn7nhdpxcs8b7vby2p27s09-nested-json.drv': 'ff91a43046196b6372a7245654a8a43dfbfe9acd3cf80f786dbb8bf31747afcd',
    '4wvvbi4jwn0prsdxb7vs673qa5h9gr7x-foo.drv': '24c43196ac9c7b557bc525d13d16f990f730c060ae61f9133195f1c0a2ea0d9f',
    '52a9id8hx688hvlnz4d1n25ml1jdykz0-unicode.drv': '16e94a47873c43a2949655fedbaa3d85d7fa8153d48f11f468b9306a6bc3a6d5',
    '9lj1lkjm2ag622mh4h9rpy6j607an8g2-structured-attrs.drv': '79f9e56abb389172193de0ecf76c07f708652ac435e0b2e70d2e669c4b3dc4f9',
    'ch49594n9avinrf8ip0aslidkc4lxkqv-foo.drv': '7c621818730810a5396bea23e5ec0f7187d9d74456f859b9c874e9275def8236',
    'h32dahq0bx5rp1krcdx3a53asj21jvhk-has-multi-out.drv': 'a1ad4156c02a06fdd497ed4dfcab6f041fe3fd4888f6bb1bebc31728bbc9717e',
  };
  const hasher = new DerivationHasher(load);

  for (const [file, hex] of Object.entries(FULL)) {
    it(`${file}: full ${hex.slice(0, 12)}…`, async () => {
      assert.equal(toHex(await hasher.hashModulo(`/nix/store/${file}`)), hex);
    });
  }

  for (const [file, hex] of Object.entries(BLANKED)) {
    it(`${file}: blanked ${hex.slice(0, 12)}…`, async () => {
      const drv = load(`/nix/store/${file}`);
      for (const [name, output] of drv.outputs) {
        output.path = '';
        drv.env.set(name, '');
      }
      assert.equal(toHex(await hasher.hashModuloOf(drv)), hex);
    });
  }

  it('calls the lookup only for inputs of non-fixed-output derivations', () => {
    const calls: string[] = [];
    const lookup = (path: string) => {
      calls.push(path);
      return fromHex(FULL['0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv']);
    };
    hashDerivationModulo(load('/nix/store/0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv'), lookup);
    assert.deepEqual(calls, []);
    const foo = load('/nix/store/4wvvbi4jwn0prsdxb7vs673qa5h9gr7x-foo.drv');
    assert.equal(toHex(hashDerivationModulo(foo, lookup)), FULL['4wvvbi4jwn0prsdxb7vs673qa5h9gr7x-foo.drv']);
    assert.deepEqual(calls, ['/nix/store/0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv']);
    assert.throws(
      () => hashDerivationModulo(foo, () => new Uint8Array(20)),
      (e) => isNixFormatError(e, 'INVALID_HASH'),
    );
  });
});

describe('output path construction (snix output_path_construction)', () => {
  const blank = (): Derivation => ({
    outputs: new Map(),
    inputDrvs: new Map(),
    inputSrcs: new Set(),
    system: ':',
    builder: ':',
    args: [],
    env: new Map([
      ['builder', ':'],
      ['system', ':'],
    ]),
  });

  it('builds bar (fixed output, r:sha256) and then foo, matching the fixtures', () => {
    const bar = blank();
    const hash = nixHash('sha256', fromHex('08813cbee9903c62be4c5027726a418a300da4500b2d369d3af9286f4815ceba'));
    bar.env.set('name', 'bar');
    bar.env.set('out', '');
    bar.env.set('outputHash', toHex(hash.digest));
    bar.env.set('outputHashAlgo', 'sha256');
    bar.env.set('outputHashMode', 'recursive');
    bar.outputs.set('out', { path: '', ca: contentAddress('nar', hash) });
    validateDerivation(bar, { requireOutputPaths: false });
    const barDone = computeOutputPaths(bar, 'bar', () => {
      throw new Error('no inputs');
    });
    const barBytes = readBytes(new URL('0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv', SNIX));
    assert.deepEqual(writeDerivation(barDone), barBytes);
    const barPath = derivationPath(barDone, 'bar').toAbsolute();
    assert.equal(barPath, '/nix/store/0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv');

    const foo = blank();
    foo.env.set('bar', barDone.outputs.get('out')?.path as string);
    foo.env.set('name', 'foo');
    foo.outputs.set('out', { path: '' });
    foo.inputDrvs.set(barPath, new Set(['out']));
    const barHash = hashDerivationModulo(barDone, () => new Uint8Array(0));
    const fooDone = computeOutputPaths(foo, 'foo', (path) => {
      assert.equal(path, barPath);
      return barHash;
    });
    assert.deepEqual(writeDerivation(fooDone), readBytes(new URL('4wvvbi4jwn0prsdxb7vs673qa5h9gr7x-foo.drv', SNIX)));
    assert.equal(derivationPath(fooDone, 'foo').toAbsolute(), '/nix/store/4wvvbi4jwn0prsdxb7vs673qa5h9gr7x-foo.drv');
  });

  it('computes flat and text fixed-output paths', () => {
    const drv = blank();
    const hash = nixHash('sha256', fromHex('08813cbee9903c62be4c5027726a418a300da4500b2d369d3af9286f4815ceba'));
    drv.outputs.set('out', { path: '', ca: contentAddress('flat', hash) });
    const flat = computeOutputPaths(drv, 'bar', () => new Uint8Array(32));
    drv.outputs.set('out', { path: '', ca: contentAddress('text', hash) });
    const text = computeOutputPaths(drv, 'bar', () => new Uint8Array(32));
    drv.outputs.set('out', { path: '', ca: contentAddress('nar', hash) });
    const nar = computeOutputPaths(drv, 'bar', () => new Uint8Array(32));
    const paths = [flat, text, nar].map((d) => d.outputs.get('out')?.path);
    assert.equal(paths[2], '/nix/store/4q0pg5zpfmznxscq3avycvf9xdvx50n3-bar');
    assert.equal(new Set(paths).size, 3);
    for (const d of [flat, text, nar]) {
      const reparsed = parseDerivation(writeDerivation(d));
      assert.deepEqual(reparsed, d);
      assert.deepEqual(derivationFromJson(derivationToJson(d)), d);
    }
    assert.match(new TextDecoder().decode(writeDerivation(text)), /"text:sha256","08813cbe/);
  });
});

describe('derivations: bad input', () => {
  const barBytes = readBytes(new URL('0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv', SNIX));
  const fooText = readFileSync(new URL('4wvvbi4jwn0prsdxb7vs673qa5h9gr7x-foo.drv', SNIX), 'latin1');
  const parseText = (text: string) => parseDerivation(new Uint8Array(Buffer.from(text, 'latin1')));

  it('rejects duplicate.drv naming the key', () => {
    assert.throws(
      () => parseDerivation(readBytes(new URL('duplicate.drv', SNIX))),
      (e) => invalidDerivation(e) && /duplicate env key "name"/.test(e.message) && typeof e.details.offset === 'number',
    );
  });

  it('rejects every truncation of a fixture', () => {
    for (let n = 0; n < barBytes.length; n++) {
      assert.throws(() => parseDerivation(barBytes.subarray(0, n)), invalidDerivation, `prefix of ${n} bytes`);
    }
  });

  it('rejects trailing bytes (snix from_aterm_bytes_trailer)', () => {
    const withNul = new Uint8Array([...barBytes, 0]);
    assert.throws(
      () => parseDerivation(withNul),
      (e) => invalidDerivation(e) && e.details.offset === barBytes.length,
    );
    assert.throws(() => parseDerivation(new Uint8Array([...barBytes, 0x0a])), invalidDerivation);
  });

  const cases: [string, string, RegExp][] = [
    ['bad escape', fooText.replace('"builder",":"', '"builder","\\a"'), /invalid escape "\\a"/],
    ['unterminated string', fooText.replace('("system",":")])', '("system",":)])'), /expected|unterminated/],
    ['whitespace', fooText.replace('],[', '], ['), /expected/],
    [
      'duplicate output',
      fooText.replace('[("out","/nix/store/5vyvcwah9l9kf07d52rcgdk70g2f4y13-foo","","")]', '[("out","","",""),("out","","","")]'),
      /duplicate output "out"/,
    ],
    [
      'duplicate input derivation',
      fooText.replace(/\[\("(\/nix\/store\/[^"]*)",\["out"\]\)\]/, '[("$1",["out"]),("$1",["out"])]'),
      /duplicate input derivation/,
    ],
    ['duplicate input derivation output', fooText.replace('["out"]', '["out","out"]'), /duplicate output name "out"/],
    [
      'duplicate input source',
      fooText.replace(
        '],[],":"',
        '],["/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox","/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndz-busybox"],":"',
      ),
      /duplicate input source/,
    ],
    [
      'bad hash part in an output path',
      fooText.replace('5vyvcwah9l9kf07d52rcgdk70g2f4y13-foo","",""', '5vyvcwah9l9kf07d52rcgdk70g2f4y1e-foo","",""'),
      /outputs\.out\.path/,
    ],
    [
      'bad hash part in an input source',
      fooText.replace('],[],":"', '],["/nix/store/71fc7s32zl20dc955bhghy5dvalm7ndu-busybox"],":"'),
      /inputSrcs/,
    ],
    ['input derivation not a .drv', fooText.replace('-bar.drv"', '-bar"'), /not a \.drv path/],
    [
      'store path outside the store',
      fooText.replace('"/nix/store/0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv"', '"/gnu/store/0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv"'),
      /not in \/nix\/store/,
    ],
    ['missing output path', fooText.replace('"/nix/store/5vyvcwah9l9kf07d52rcgdk70g2f4y13-foo","",""', '"","",""'), /missing output path/],
    ['output named drv', fooText.replace('("out","/nix/store/5vy', '("drv","/nix/store/5vy'), /invalid output name "drv"/],
    ['no outputs', fooText.replace('[("out","/nix/store/5vyvcwah9l9kf07d52rcgdk70g2f4y13-foo","","")]', '[]'), /no outputs/],
    ['empty builder', fooText.replace('":",":",[]', '":","",[]'), /builder: empty/],
    ['empty system', fooText.replace('":",":",[]', '"",":",[]'), /system: empty/],
    ['empty env key', fooText.replace('("builder",":")', '("",":")'), /empty key/],
    [
      'upper-case output hash',
      new TextDecoder().decode(barBytes).replace('"r:sha256","08813cbee', '"r:sha256","08813CBEE'),
      /lower-case hex/,
    ],
    ['short output hash', new TextDecoder().decode(barBytes).replace('"r:sha256","08813cbee', '"r:sha256","8813cbee'), /lower-case hex/],
    ['unknown hash algorithm', new TextDecoder().decode(barBytes).replace('"r:sha256"', '"r:sha1024"'), /hash algorithm/],
    ['floating output', new TextDecoder().decode(barBytes).replace(/"r:sha256","[0-9a-f]+"/, '"r:sha256",""'), /floating/],
    [
      'fixed output not alone',
      new TextDecoder().decode(barBytes).replace('[("out"', '[("dev","/nix/store/4q0pg5zpfmznxscq3avycvf9xdvx50n3-bar","",""),("out"'),
      /only output/,
    ],
    ['not a derivation', 'Derivation([],[],[],"","",[],[])', /expected "Derive\("/],
  ];
  for (const [what, text, message] of cases) {
    it(`rejects ${what}`, () => {
      assert.notEqual(text, fooText, 'the case must change the fixture');
      assert.throws(
        () => parseText(text),
        (e) => invalidDerivation(e) && message.test(e.message),
      );
    });
  }

  it('names the byte offset of syntax errors', () => {
    const text = fooText.replace('"builder",":"', '"builder","\\a"');
    assert.throws(
      () => parseText(text),
      (e) => invalidDerivation(e) && e.details.offset === text.indexOf('\\a') && /at byte \d+/.test(e.message),
    );
  });

  it('accepts the blanked form when asked', () => {
    const text = fooText.replace('"/nix/store/5vyvcwah9l9kf07d52rcgdk70g2f4y13-foo","",""', '"","",""');
    assert.throws(() => parseText(text), invalidDerivation);
    assert.equal(parseDerivation(new Uint8Array(Buffer.from(text, 'latin1')), { requireOutputPaths: false }).outputs.get('out')?.path, '');
  });

  it('honours another store directory', () => {
    const text = fooText.replaceAll('/nix/store/', '/gnu/store/');
    assert.throws(() => parseText(text), invalidDerivation);
    const drv = parseDerivation(new Uint8Array(Buffer.from(text, 'latin1')), { storeDir: '/gnu/store' });
    assert.equal(derivationPath(drv, 'foo', { storeDir: '/gnu/store' }).toAbsolute('/gnu/store').startsWith('/gnu/store/'), true);
  });

  const badJson: [string, (json: Record<string, unknown>) => void, RegExp][] = [
    ['hash without hashAlgo', (j) => delete (j.outputs as Record<string, Record<string, unknown>>).out.hashAlgo, /both present/],
    ['unknown algorithm', (j) => ((j.outputs as Record<string, Record<string, unknown>>).out.hashAlgo = 'r:sha1024'), /hash algorithm/],
    ['bad hash', (j) => ((j.outputs as Record<string, Record<string, unknown>>).out.hash = 'IAMNOTVALIDNIXBASE32'), /invalid sha256 hash/],
    [
      'missing path',
      (j) => delete (j.outputs as Record<string, Record<string, unknown>>).out.path,
      /outputs\.out\.path: expected a string/,
    ],
    ['args not strings', (j) => (j.args = [1]), /args\[0\]/],
    ['missing env', (j) => delete j.env, /env: expected an object/],
    ['lone surrogate', (j) => ((j.env as Record<string, string>).x = '\ud800'), /env\["x"\]/],
  ];
  for (const [what, change, message] of badJson) {
    it(`rejects derivation JSON with ${what}`, () => {
      const json = JSON.parse(readFileSync(new URL('0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv.json', SNIX), 'utf8')) as Record<
        string,
        unknown
      >;
      change(json);
      assert.throws(
        () => derivationFromJson(json),
        (e) => invalidDerivation(e) && message.test(e.message),
      );
    });
  }

  it('reads fixed-output hashes in nixbase32 and base64, and the newer JSON shapes', () => {
    const drv = load('/nix/store/0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv');
    const json = JSON.parse(JSON.stringify(derivationToJson(drv)));
    json.outputs.out.hash = '1fnf2m46ya7r7afkcb8ba2j0sc4a85m749sh9jz64g4hx6z3r088';
    assert.deepEqual(derivationFromJson(json), drv);
    json.outputs.out.hash = Buffer.from('08813cbee9903c62be4c5027726a418a300da4500b2d369d3af9286f4815ceba', 'hex').toString('base64');
    assert.deepEqual(derivationFromJson(json), drv);
    json.outputs.out.method = 'nar';
    json.outputs.out.hashAlgo = 'sha256';
    assert.deepEqual(derivationFromJson(json), drv);
    const foo = load('/nix/store/4wvvbi4jwn0prsdxb7vs673qa5h9gr7x-foo.drv');
    const fooJson = JSON.parse(JSON.stringify(derivationToJson(foo)));
    fooJson.inputDrvs['/nix/store/0hm2f1psjpcwg8fijsmr4wwxrx59s092-bar.drv'] = { outputs: ['out'], dynamicOutputs: {} };
    assert.deepEqual(derivationFromJson(fooJson), foo);
  });
});
